// Prints the cost of the store calls the executor makes per run and per step,
// on PostgreSQL: a throw-away local server (tests/support/pg_server.h, with
// fsync on unless --no-fsync) or the database at --url.
//   postgres_store_benchmark [--runs N] [--steps N] [--threads N] [--no-fsync] [--url URL]
// With several threads each drives its own runs through one shared store
// (pool size = threads), and the figures are per call as seen by a thread.
// Figures, not assertions: tests never assert on time.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/time.h"
#include "storage/postgres/postgres_store.h"
#include "support/pg_server.h"

namespace {

double WallUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double CpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

struct Timer {
  double wall = 0, cpu = 0;
  double w0 = 0, c0 = 0;
  void Start() {
    w0 = WallUs();
    c0 = CpuUs();
  }
  void Stop() {
    cpu += CpuUs() - c0;
    wall += WallUs() - w0;
  }
  void Add(const Timer& o) {
    wall += o.wall;
    cpu += o.cpu;
  }
  void Print(const char* what, int ops) const {
    std::printf("  %-30s %8.1f us wall %8.1f us cpu\n", what, wall / ops, cpu / ops);
  }
};

template <typename T>
T Must(af::Result<T> r) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

void MustOk(const af::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 1000;
  int steps_per_run = 5;
  int threads = 1;
  bool fsync = true;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
      steps_per_run = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--no-fsync")) {
      fsync = false;
    } else if (!std::strcmp(argv[i], "--url") && i + 1 < argc) {
      url = argv[++i];
    }
  }
  std::unique_ptr<af::test::PgServer> server;
  if (url.empty()) {
    af::test::PgServer::Options o;
    if (fsync) o.settings = {"fsync=on", "full_page_writes=on"};  // later settings win
    server = Must(af::test::PgServer::Launch(o));
    url = server->url();
  }
  af::PostgresOptions po;
  po.url = url;
  po.pool_size = threads;
  auto store = Must(af::OpenPostgresStore(po));
  auto wf =
      Must(store->CreateWorkflow({"bench-" + std::to_string(af::NowMs()), "", af::json{{"steps", af::json::array()}}}));
  af::json input{{"question", "what is the answer?"}, {"n", 42}};
  af::json output{{"answer", "forty-two"}, {"tokens", {1, 2, 3, 4, 5}}};

  std::mutex mu;
  Timer create, start, step, finish, read, chain;
  double w0 = WallUs();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      Timer c, s, st, f, r, ch;
      for (int i = 0; i < runs; ++i) {
        c.Start();
        auto run = Must(store->CreateRun({"", wf.id, 1, input, ""})).run;
        c.Stop();
        s.Start();
        Must(store->TransitionRun({run.id, af::RunStatus::kPending, af::RunStatus::kRunning}));
        s.Stop();
        st.Start();
        for (int k = 0; k < steps_per_run; ++k) {
          af::StepExecution e;
          e.run_id = run.id;
          e.step_id = "step-" + std::to_string(k);
          e.agent_name = "echo";
          e.input = input;
          int64_t id = Must(store->InsertStep(e));
          MustOk(store->FinishStep({run.id, id, af::StepStatus::kCompleted, output, ""}));
        }
        st.Stop();
        f.Start();
        af::RunTransition done{run.id, af::RunStatus::kRunning, af::RunStatus::kCompleted};
        done.output = output;
        Must(store->TransitionRun(done));
        f.Stop();
        r.Start();
        Must(store->GetRun(run.id));
        Must(store->ListSteps(run.id));
        r.Stop();
        // As the executor writes a sequential run: under its lease, each
        // step's result with the next step's RUNNING row in one commit.
        auto fenced = Must(store->CreateRun({"", wf.id, 1, input, ""})).run;
        auto lease = Must(store->AcquireRunLease(fenced.id, "bench", 60000));
        auto insert = [&](int k) {
          af::StepExecution e;
          e.run_id = fenced.id;
          e.step_id = "step-" + std::to_string(k);
          e.agent_name = "echo";
          e.input = input;
          return af::RunWrite::Insert(e);
        };
        af::RunWrites first{fenced.id, lease.token, {insert(0)}};
        int64_t prev = Must(store->ApplyRunWrites(first)).step_ids[0];
        ch.Start();
        for (int k = 1; k <= steps_per_run; ++k) {
          af::RunWrites w{fenced.id, lease.token, {}};
          w.ops.push_back(af::RunWrite::Finish({fenced.id, prev, af::StepStatus::kCompleted, output, ""}));
          w.ops.push_back(insert(k));
          prev = Must(store->ApplyRunWrites(w)).step_ids[1];
        }
        ch.Stop();
      }
      std::lock_guard<std::mutex> lock(mu);
      create.Add(c);
      start.Add(s);
      step.Add(st);
      finish.Add(f);
      read.Add(r);
      chain.Add(ch);
    });
  }
  for (auto& w : workers) w.join();
  double total_s = (WallUs() - w0) / 1e6;
  int n = runs * threads;
  std::printf("PostgreSQL %s, fsync %s, %d thread(s) x %d runs x %d steps\n",
              server ? "local throw-away server" : url.c_str(), server ? (fsync ? "on" : "off") : "as configured",
              threads, runs, steps_per_run);
  create.Print("CreateRun", n);
  start.Print("TransitionRun PENDING->RUNNING", n);
  step.Print("InsertStep + FinishStep (pair)", n * std::max(steps_per_run, 1));
  finish.Print("TransitionRun RUNNING->COMPLETED", n);
  read.Print("GetRun + ListSteps", n);
  chain.Print("step result + next RUNNING row", n * std::max(steps_per_run, 1));
  std::printf("  %.0f runs/s, %.0f store writes/s overall\n", n / total_s, n * (3.0 + 2.0 * steps_per_run) / total_s);
  return 0;
}
