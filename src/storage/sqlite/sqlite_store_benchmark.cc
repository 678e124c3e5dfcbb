// Prints the cost of the store calls the executor makes per run and per step,
// on a SQLite file in WAL mode (synchronous NORMAL, or FULL with --full-sync).
//   sqlite_store_benchmark [--runs N] [--steps N] [--full-sync] [--memory]
// Figures, not assertions: tests never assert on time. Both wall time and
// this thread's CPU time are shown: on a busy machine the CPU time is the
// steadier figure.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "storage/sqlite/sqlite_store.h"

namespace {

double WallUs() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double CpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// Accumulates wall and CPU time of one kind of call.
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
  int runs = 2000;
  int steps_per_run = 5;
  bool full_sync = false;
  bool memory = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--steps") && i + 1 < argc) {
      steps_per_run = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--full-sync")) {
      full_sync = true;
    } else if (!std::strcmp(argv[i], "--memory")) {
      memory = true;
    }
  }
  std::string dir = (std::filesystem::temp_directory_path() / "af-store-bench-XXXXXX").string();
  if (!mkdtemp(dir.data())) return 1;
  std::string path = memory ? ":memory:" : dir + "/bench.sqlite";
  {
    auto store = Must(af::OpenSqliteStore(path, full_sync));
    auto wf = Must(store->CreateWorkflow({"bench", "", af::json{{"steps", af::json::array()}}}));
    af::json input{{"question", "what is the answer?"}, {"n", 42}};
    af::json output{{"answer", "forty-two"}, {"tokens", {1, 2, 3, 4, 5}}};

    Timer create, start, step, finish, read;
    for (int r = 0; r < runs; ++r) {
      create.Start();
      auto run = Must(store->CreateRun({"", wf.id, 1, input, ""})).run;
      create.Stop();
      start.Start();
      Must(store->TransitionRun({run.id, af::RunStatus::kPending, af::RunStatus::kRunning}));
      start.Stop();
      step.Start();
      for (int s = 0; s < steps_per_run; ++s) {
        af::StepExecution e;
        e.run_id = run.id;
        e.step_id = "step-" + std::to_string(s);
        e.agent_name = "echo";
        e.input = input;
        int64_t id = Must(store->InsertStep(e));
        MustOk(store->FinishStep({run.id, id, af::StepStatus::kCompleted, output, ""}));
      }
      step.Stop();
      finish.Start();
      af::RunTransition done{run.id, af::RunStatus::kRunning, af::RunStatus::kCompleted};
      done.output = output;
      Must(store->TransitionRun(done));
      finish.Stop();
      read.Start();
      Must(store->GetRun(run.id));
      Must(store->ListSteps(run.id));
      read.Stop();
    }
    std::printf("SQLite %s, synchronous=%s, %d runs x %d steps\n", memory ? ":memory:" : "file (WAL)",
                full_sync ? "FULL" : "NORMAL", runs, steps_per_run);
    create.Print("CreateRun", runs);
    start.Print("TransitionRun -> RUNNING", runs);
    step.Print("InsertStep + FinishStep (step)", runs * steps_per_run);
    finish.Print("TransitionRun -> COMPLETED", runs);
    read.Print("GetRun + ListSteps", runs);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return 0;
}
