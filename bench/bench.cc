// af-bench: the benchmarks of issue 7 (docs/benchmarks.md).
//
// Starts everything it measures as child processes on 127.0.0.1 — the
// no-op agent (af-bench-agent), `agentflow serve` (embedded) or PostgreSQL
// (fsync=on, on disk: bench/pg_disk.h) + the Kafka test broker +
// `agentflow api` + `agentflow consumer` (distributed) — and prints one
// JSON line per figure plus a table. Every count and wait is bounded.
//
//   af-bench [--modes embedded,embedded-fullsync,distributed] [--only rtt,chain10,...]
//            [--out FILE] [--quick] [--perf DIR] [--pg-setting k=v]... [--revision R]
//
// Benchmarks (per mode): rtt (raw agent round trip, no engine), chain10
// (latency: 50 runs one at a time; throughput: 1,000 runs, 64 in flight),
// fanout40 (20 runs one at a time), trigger (POST /runs with no consumer,
// N keep-alive connections), slow (10,000 runs of one 2-second step).
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include "bench/pg_disk.h"
#include "bench/post_loop.h"
#include "common/time.h"
#include "e2e/harness.h"
#include "http/http.h"
#include "support/kafka_mock.h"

#ifndef AF_BENCH_AGENT_BIN
#error "AF_BENCH_AGENT_BIN must name the af-bench-agent binary"
#endif

namespace af::bench {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using e2e::HarnessError;
using e2e::Require;

double MsSince(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Nearest-rank percentile (p in 0..100); NaN when empty.
double Pct(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  k = std::clamp<size_t>(k, 1, v.size());
  return v[k - 1];
}
double Mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// ---------------------------------------------------------------- options

struct Options {
  std::vector<std::string> modes = {"embedded", "embedded-fullsync", "distributed"};
  std::set<std::string> only;  // empty: all
  std::string out = "bench/results/latest.jsonl";
  std::string data_base = "/var/tmp";  // SQLite and PostgreSQL data (disk, not tmpfs)
  std::string revision;
  std::string perf_dir;                 // perf record -a -g during chain10 throughput
  std::vector<std::string> pg_settings; // extra -c for PostgreSQL (diagnostics)
  // Diagnostics: PostgreSQL's own statement statistics (pg_stat_statements)
  // of each distributed window, the top statements by execution time
  // written to DIR/<bench>-<phase>.txt. Empty: off.
  std::string pg_statements_dir;
  std::string attach;                   // command run during one phase; {pid} = the executor's pid (trigger: the api's)
  std::string attach_phase = "throughput";  // that phase: "throughput" or "latency" (chain10), or "trigger"
  std::string keep_logs_dir;            // copy the PostgreSQL log and the services' logs here
  // Distributed: see a run's end through the api's ?wait (as a user would),
  // not by polling PostgreSQL every poll_ms_single / poll_ms_many.
  bool wait_through_api = false;
  std::vector<std::string> api_args;    // extra arguments of `agentflow api` (diagnostics)
  std::vector<std::string> consumer_args;  // extra arguments of every `agentflow consumer` (diagnostics)
  std::vector<std::string> serve_args;  // extra arguments of `agentflow serve` (diagnostics)
  // serve / api with --auth required; every request of the driver carries
  // an admin key made with `agentflow apikey create` (the agent calls do not).
  bool auth = false;
  bool quick = false;                   // 1/10 of every count: a smoke run
  // Counts of the issue.
  int rtt_n = 2000;
  int latency_runs = 50;
  int throughput_runs = 1000;
  int throughput_in_flight = 64;
  int fanout_runs = 20;
  int trigger_connections = 64;
  int trigger_seconds = 10;
  int slow_runs = 10000;
  int slow_ms = 2000;
  int poll_ms_single = 1;  // distributed completion poll, one run in flight
  // ... many in flight. Each poll reads every waiting run (64 in chain10
  // throughput) from PostgreSQL: at 5 ms that observer took ~0.25 ms of
  // PostgreSQL CPU per run from the system it measures; 20 ms quantises
  // completion times more coarsely (throughput's window by < 1 %).
  int poll_ms_many = 20;
  // The Kafka mock answers a fetch only when fetch.wait.max.ms expires (a
  // real broker answers as soon as data arrives, fetch.min.bytes=1); 1 ms
  // makes the mock's hop ~0.4 ms, the nearest it comes to a real broker.
  int kafka_fetch_wait_ms = 1;
  double disturbed_cores = 0.15;  // other processes' CPU above this: the figure is marked disturbed
  int attempts = 3;               // a disturbed section is run again up to this often
  int wait_quiet_s = 180;         // before each section, wait up to this long for other processes to calm down
  bool Want(const std::string& b) const { return only.empty() || only.count(b) > 0; }
};

// ---------------------------------------------------------------- machine

std::string MachineText() {
  std::string model;
  std::ifstream cpu("/proc/cpuinfo");
  for (std::string line; std::getline(cpu, line);) {
    if (line.rfind("model name", 0) == 0) {
      model = Trim(line.substr(line.find(':') + 1));
      break;
    }
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  long long mem_kb = 0;
  std::ifstream mem("/proc/meminfo");
  for (std::string key; mem >> key;) {
    if (key == "MemTotal:") {
      mem >> mem_kb;
      break;
    }
  }
  struct utsname u {};
  uname(&u);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s, %ld cores, %.1f GiB RAM, Linux %s", model.c_str(), cores,
                static_cast<double>(mem_kb) / 1048576.0, u.release);
  return buf;
}

double LoadAvg1() {
  std::ifstream f("/proc/loadavg");
  double l = 0;
  f >> l;
  return l;
}

// ---------------------------------------------------------------- disk

// fdatasync latency of 8 KiB appends in `dir` (what a WAL commit waits for).
std::pair<double, double> FsyncProbe(const std::string& dir, int n) {
  std::string path = dir + "/af-bench-fsync-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return {std::nan(""), std::nan("")};
  std::vector<double> lat;
  std::string block(8192, 'x');
  for (int i = 0; i < n; ++i) {
    if (::pwrite(fd, block.data(), block.size(), static_cast<off_t>(i) * 8192) < 0) break;
    auto t0 = Clock::now();
    ::fdatasync(fd);
    lat.push_back(MsSince(t0));
  }
  ::close(fd);
  ::unlink(path.c_str());
  return {Pct(lat, 50), Pct(lat, 99)};
}

// ---------------------------------------------------------------- CPU accounting

struct ProcInfo {
  pid_t ppid = 0;
  uint64_t ticks = 0;      // utime + stime
  uint64_t starttime = 0;  // identifies the process across snapshots (pids are reused)
  std::string comm;
};
using ProcTable = std::map<pid_t, ProcInfo>;

ProcTable ReadProcs() {
  ProcTable t;
  DIR* d = opendir("/proc");
  if (!d) return t;
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    pid_t pid = std::atoi(e->d_name);
    std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
    std::string s;
    if (!std::getline(f, s)) continue;
    size_t l = s.find('('), r = s.rfind(')');
    if (l == std::string::npos || r == std::string::npos) continue;
    ProcInfo p;
    p.comm = s.substr(l + 1, r - l - 1);
    std::istringstream in(s.substr(r + 2));
    std::string state;
    long long ppid, x;
    in >> state >> ppid;
    for (int i = 0; i < 9; ++i) in >> x;  // pgrp .. cmajflt
    unsigned long long ut = 0, st = 0, start = 0;
    in >> ut >> st;
    for (int i = 0; i < 6; ++i) in >> x;  // cutime .. itrealvalue
    in >> start;
    p.ppid = static_cast<pid_t>(ppid);
    p.ticks = ut + st;
    p.starttime = start;
    t[pid] = std::move(p);
  }
  closedir(d);
  return t;
}

// The threads of one process (utime + stime of each).
std::map<pid_t, ProcInfo> ReadThreads(pid_t pid) {
  std::map<pid_t, ProcInfo> out;
  std::string base = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(base.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::ifstream f(base + "/" + e->d_name + "/stat");
    std::string s;
    if (!std::getline(f, s)) continue;
    size_t r = s.rfind(')');
    if (r == std::string::npos) continue;
    std::istringstream in(s.substr(r + 2));
    std::string state;
    long long x;
    in >> state;
    for (int i = 0; i < 10; ++i) in >> x;  // ppid .. cmajflt
    unsigned long long ut = 0, st = 0;
    in >> ut >> st;
    ProcInfo p;
    p.ticks = ut + st;
    out[std::atoi(e->d_name)] = p;
  }
  closedir(d);
  return out;
}

// Named processes of a measurement: CPU time is attributed to the first
// named ancestor; PostgreSQL's processes to "postgres".
struct Roles {
  std::vector<std::pair<std::string, pid_t>> named;
  pid_t postmaster = 0;
};

std::string RoleOf(pid_t pid, const ProcTable& t, const Roles& roles) {
  const pid_t self = ::getpid();
  pid_t n = pid;
  for (int depth = 0; depth < 64 && n > 0; ++depth) {
    for (const auto& [name, p] : roles.named) {
      if (p == n) return name;
    }
    if (roles.postmaster != 0 && n == roles.postmaster) return "postgres";
    if (n == self) return pid == self ? "driver" : "bench-aux";
    if (n == 2) return "kernel";
    auto it = t.find(n);
    if (it == t.end()) break;
    if (n == 1) break;
    n = it->second.ppid;
  }
  return pid == 2 ? "kernel" : "other";
}

struct CpuWindow {
  ProcTable start;
  Clock::time_point t0;
  double load_start = 0;
  void Begin() {
    start = ReadProcs();
    t0 = Clock::now();
    load_start = LoadAvg1();
  }
  // CPU seconds per role since Begin(); "wall" is the window.
  std::map<std::string, double> End(const Roles& roles) const {
    ProcTable end = ReadProcs();
    static const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    std::map<std::string, double> out;
    for (const auto& [pid, p] : end) {
      auto it = start.find(pid);
      uint64_t before = (it != start.end() && it->second.starttime == p.starttime) ? it->second.ticks : 0;
      if (p.ticks < before) continue;
      double s = static_cast<double>(p.ticks - before) / hz;
      if (s > 0) out[RoleOf(pid, end, roles)] += s;
    }
    out["wall"] = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
  }
};

// ---------------------------------------------------------------- results

struct Figure {
  std::string bench, mode, metric;
  double value = 0;
  std::string unit;
  json extra = json::object();
};

class Results {
 public:
  explicit Results(std::string machine, std::string revision) : machine_(std::move(machine)), revision_(std::move(revision)) {}
  void Add(Figure f) {
    std::printf("  %-10s %-18s %-32s %12.3f %s%s\n", f.bench.c_str(), f.mode.c_str(), f.metric.c_str(), f.value,
                f.unit.c_str(), f.extra.value("disturbed", false) ? "  (disturbed)" : "");
    std::fflush(stdout);
    figures_.push_back(std::move(f));
  }
  void Write(const std::string& path) const {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream out(path, std::ios::trunc);
    for (const Figure& f : figures_) {
      json j = {{"bench", f.bench}, {"mode", f.mode}, {"metric", f.metric},
                {"value", std::isfinite(f.value) ? json(std::round(f.value * 1000.0) / 1000.0) : json(nullptr)},
                {"unit", f.unit}, {"machine", machine_}};
      if (!revision_.empty()) j["revision"] = revision_;
      for (auto& [k, v] : f.extra.items()) j[k] = v;
      out << j.dump() << "\n";
    }
  }
  // Rows bench/metric, one column per mode.
  void PrintTable(const std::vector<std::string>& modes) const {
    std::vector<std::pair<std::string, std::string>> rows;
    std::map<std::pair<std::string, std::string>, std::string> units;
    std::map<std::tuple<std::string, std::string, std::string>, std::string> cells;
    for (const Figure& f : figures_) {
      auto key = std::make_pair(f.bench, f.metric);
      if (std::find(rows.begin(), rows.end(), key) == rows.end()) rows.push_back(key);
      units[key] = f.unit;
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.3g%s", f.value, f.extra.value("disturbed", false) ? "*" : "");
      if (std::fabs(f.value) >= 1000) std::snprintf(buf, sizeof buf, "%.0f%s", f.value, f.extra.value("disturbed", false) ? "*" : "");
      cells[{f.bench, f.metric, f.mode}] = buf;
    }
    std::printf("\n%-10s %-30s", "bench", "metric");
    for (const auto& m : modes) std::printf(" %18s", m.c_str());
    std::printf("  unit\n");
    for (const auto& key : rows) {
      std::printf("%-10s %-30s", key.first.c_str(), key.second.c_str());
      for (const auto& m : modes) {
        auto it = cells.find({key.first, key.second, m});
        std::printf(" %18s", it == cells.end() ? "-" : it->second.c_str());
      }
      std::printf("  %s\n", units[key].c_str());
    }
    std::printf("(* = other processes used more CPU than the threshold during the figure)\n");
    std::fflush(stdout);
  }

 private:
  std::string machine_, revision_;
  std::vector<Figure> figures_;
};

// ---------------------------------------------------------------- io thread

class Io {
 public:
  Io() : work_(ioc_.get_executor()) {
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~Io() {
    work_.reset();
    ioc_.stop();
    thread_.join();
  }
  asio::any_io_executor executor() { return ioc_.get_executor(); }
  // Runs fn() (a coroutine) on the io thread and waits for it; rethrows.
  void Run(std::function<asio::awaitable<void>()> fn) {
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    asio::co_spawn(ioc_, std::move(fn), [p](std::exception_ptr e) {
      if (e) p->set_exception(e);
      else p->set_value();
    });
    f.get();
  }

 private:
  asio::io_context ioc_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

// Counts down; Wait() returns at zero. Io thread only.
struct Latch {
  explicit Latch(asio::any_io_executor ex, int n) : timer(ex), left(n) {}
  asio::steady_timer timer;
  int left;
  void Done() {
    if (--left == 0) timer.cancel();
  }
  asio::awaitable<void> Wait() {
    while (left > 0) {
      timer.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
};

// `authorization`: the Authorization header's value, "" for none.
http::ClientRequest PostRequest(const std::string& url, const std::string& body, std::chrono::milliseconds timeout,
                                const std::string& authorization = "") {
  http::ClientRequest req;
  req.method = "POST";
  req.url = url;
  req.body = body;
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  if (!authorization.empty()) req.headers.push_back({"Authorization", authorization});
  req.timeout = timeout;
  return req;
}

// ---------------------------------------------------------------- the agent

class Agent {
 public:
  explicit Agent(const std::string& log_dir) {
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = e2e::PickFreePort();
      proc_ = e2e::Process::Spawn({AF_BENCH_AGENT_BIN, "--port", std::to_string(port_)},
                                  log_dir + "/agent." + std::to_string(attempt) + ".log");
      bool up = e2e::WaitUntil(
          [&] { return !proc_->Running() || e2e::Fetch("GET", url() + "/healthz", "", {}, 1s).status == 200; }, 10s,
          10ms);
      if (up && proc_->Running()) return;
      proc_->Kill();
    }
    throw HarnessError("af-bench-agent did not start");
  }
  ~Agent() {
    if (proc_) proc_->Terminate(5s);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return proc_->pid(); }

 private:
  uint16_t port_ = 0;
  std::unique_ptr<e2e::Process> proc_;
};

// ---------------------------------------------------------------- stacks

struct RunEnd {
  bool ok = false;
  std::string id, status, error;
  int64_t created = 0, started = 0, completed = 0;  // ms since the epoch (server clock)
};

class Stack {
 public:
  virtual ~Stack() = default;
  virtual std::string mode() const = 0;
  virtual std::string api() const = 0;          // http://127.0.0.1:P/api/v1
  virtual pid_t executor_pid() = 0;             // serve / consumer
  virtual pid_t api_pid() = 0;                  // serve / api: the process that accepts triggers
  virtual std::string executor_url() const = 0; // its /metrics is at + "/metrics"
  virtual Roles roles() const = 0;
  // Triggers a run of `workflow` and waits until it is terminal.
  virtual asio::awaitable<void> TriggerAndWait(http::Client& c, std::string workflow, std::string body, RunEnd* out) = 0;
  virtual json settings() const { return json::object(); }
  virtual std::string Logs() const = 0;

  // With --auth: "Bearer <an admin key>", for every request to the API;
  // "" without.
  const std::string& authorization() const { return authorization_; }

  // Setup through the API (blocking; main thread).
  void RegisterAgent(const std::string& name, const std::string& url) {
    json a = {{"name", name}, {"url", url}, {"timeout_ms", 30000}};
    auto r = e2e::Fetch("POST", api() + "/agents", a.dump(), AuthHeaders());
    Require(r.status == 201 || r.status == 200, "register agent " + name + ": " + r.Describe());
  }
  void CreateWorkflow(const json& plan) {
    auto r = e2e::Fetch("POST", api() + "/workflows", plan.dump(), AuthHeaders());
    Require(r.status == 201 || r.status == 200, "create workflow: " + r.Describe());
  }

 protected:
  // `agentflow apikey create --role admin` on the stack's database (`where`:
  // --data-dir D or --database-url U); sets authorization().
  void MakeAdminKey(const std::vector<std::string>& where, const e2e::TempDir& dir) {
    std::vector<std::string> args = {"--json", "apikey"};
    args.insert(args.end(), where.begin(), where.end());
    args.insert(args.end(), {"create", "--role", "admin", "--name", "af-bench"});
    e2e::CliResult r = e2e::RunCli(args, dir);
    json j = json::parse(r.out, nullptr, false);
    Require(r.exit_code == 0 && j.is_object() && j.contains("key"), "apikey create: " + r.Describe());
    authorization_ = "Bearer " + j["key"].get<std::string>();
  }

 private:
  e2e::Headers AuthHeaders() const {
    if (authorization_.empty()) return {};
    return {{"Authorization", authorization_}};
  }
  std::string authorization_;
};

// POST /workflows/{w}/runs?wait=120: the run's end as the api's long-poll
// answers it, as a user waiting for a run sees it.
asio::awaitable<void> TriggerAndWaitThroughApi(http::Client& c, std::string api, std::string authorization,
                                               std::string workflow, std::string body, RunEnd* out) {
  http::ClientRequest req = PostRequest(api + "/workflows/" + workflow + "/runs?wait=120", body, 130s, authorization);
  Result<http::ClientResponse> r = co_await c.Send(std::move(req));
  if (!r.ok()) {
    out->error = r.status().ToString();
    co_return;
  }
  json j = json::parse(r->body, nullptr, false);
  if (r->status != 200 || !j.is_object()) {
    out->error = "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 300);
    co_return;
  }
  out->id = j.value("run_id", "");
  out->status = j.value("status", "");
  out->ok = out->status == "COMPLETED";
  auto ts = [&](const char* f) -> int64_t {
    if (!j.contains(f) || !j[f].is_string()) return 0;
    auto t = ParseIso8601(j[f].get<std::string>());
    return t ? *t : 0;
  };
  out->created = ts("created_at");
  out->started = ts("started_at");
  out->completed = ts("completed_at");
}

// `agentflow serve --data-dir <disk dir>`; its long-poll (?wait) is fed by
// the in-process change feed, so POST ...?wait returns when the run ends.
class EmbeddedStack final : public Stack {
 public:
  EmbeddedStack(const Options& o, std::string mode, std::vector<std::string> extra_args) : mode_(std::move(mode)) {
    std::string tmpl = o.data_base + "/af-bench-serve-XXXXXX";
    Require(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp " + tmpl);
    data_dir_ = tmpl;
    e2e::Server::Options so;
    so.log_dir = logs_.path().string();
    so.data_dir = data_dir_;
    so.command = {"serve", "--data-dir", data_dir_};
    if (o.auth) extra_args.insert(extra_args.end(), {"--auth", "required"});
    so.command.insert(so.command.end(), extra_args.begin(), extra_args.end());
    args_ = extra_args;
    keep_logs_dir_ = o.keep_logs_dir;
    so.name = "serve";
    server_ = std::make_unique<e2e::Server>(so);
    server_->Start();
    if (o.auth) MakeAdminKey({"--data-dir", data_dir_}, logs_);
  }
  ~EmbeddedStack() override {
    if (server_ && server_->running()) server_->Stop();
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
    if (!keep_logs_dir_.empty()) {  // the server's logs, named by mode
      fs::create_directories(keep_logs_dir_, ec);
      for (const auto& entry : fs::directory_iterator(logs_.path(), ec)) {
        fs::copy_file(entry.path(), keep_logs_dir_ + "/" + mode_ + "-" + entry.path().filename().string(),
                      fs::copy_options::overwrite_existing, ec);
      }
    }
  }
  std::string mode() const override { return mode_; }
  std::string api() const override { return server_->api(); }
  pid_t executor_pid() override { return server_->pid(); }
  pid_t api_pid() override { return server_->pid(); }
  std::string executor_url() const override { return server_->url(); }
  Roles roles() const override { return Roles{{{"serve", server_->pid()}}, 0}; }
  json settings() const override {
    std::string a;
    for (const auto& s : args_) a += (a.empty() ? "" : " ") + s;
    return {{"serve_args", a}};
  }
  std::string Logs() const override {
    return e2e::Tail(server_->stdout_path(), 3000) + e2e::Tail(server_->stderr_path(), 3000);
  }

  asio::awaitable<void> TriggerAndWait(http::Client& c, std::string workflow, std::string body, RunEnd* out) override {
    co_await TriggerAndWaitThroughApi(c, api(), authorization(), std::move(workflow), std::move(body), out);
  }

 private:
  std::string mode_;
  e2e::TempDir logs_;
  std::string data_dir_;
  std::vector<std::string> args_;
  std::string keep_logs_dir_;
  std::unique_ptr<e2e::Server> server_;
};

// Completion of runs in the distributed topology, read from PostgreSQL.
// (The api's ?wait hears of an end the consumer wrote through its run
// watcher, a read every 10 ms, or sooner with the consumers'
// --notify-run-ends, which costs throughput: docs/benchmarks.md item 35.
// Polling the table every poll_ms_* is the observer that adds least;
// --wait-through-api measures what a waiting user sees.) One libpq
// connection on a thread of its own; completions are posted to the io
// thread.
class Poller {
 public:
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    bool done = false;
    RunEnd end;
  };

  Poller(std::string url, asio::any_io_executor ex, const Options& o)
      : url_(std::move(url)), ex_(ex), single_(o.poll_ms_single), many_(o.poll_ms_many) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~Poller() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::shared_ptr<Waiter> Add(const std::string& id) {
    auto w = std::make_shared<Waiter>(ex_);
    {
      std::lock_guard<std::mutex> l(mu_);
      waiting_[id] = w;
    }
    cv_.notify_all();
    return w;
  }
  void Remove(const std::string& id) {
    std::lock_guard<std::mutex> l(mu_);
    waiting_.erase(id);
  }
  uint64_t queries() const { return queries_.load(); }

 private:
  void Loop() {
    PGconn* conn = nullptr;
    while (true) {
      std::vector<std::string> ids;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait_for(l, 100ms, [&] { return stop_ || !waiting_.empty(); });
        if (stop_) break;
        for (const auto& [id, w] : waiting_) ids.push_back(id);
      }
      if (ids.empty()) continue;
      if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
        if (conn) PQfinish(conn);
        conn = PQconnectdb(url_.c_str());
        if (PQstatus(conn) != CONNECTION_OK) {
          std::this_thread::sleep_for(100ms);
          continue;
        }
        PGresult* p = PQprepare(conn, "done",
                                "SELECT id, status, created_at, coalesce(started_at, 0), coalesce(completed_at, 0) "
                                "FROM workflow_runs WHERE id = ANY($1::text[]) "
                                "AND status IN ('COMPLETED', 'FAILED', 'CANCELLED')",
                                1, nullptr);
        PQclear(p);
      }
      std::string arr = "{";
      for (size_t i = 0; i < ids.size(); ++i) arr += (i ? "," : "") + ids[i];
      arr += "}";
      const char* params[1] = {arr.c_str()};
      PGresult* r = PQexecPrepared(conn, "done", 1, params, nullptr, nullptr, 0);
      ++queries_;
      if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); ++i) {
          RunEnd e;
          e.id = PQgetvalue(r, i, 0);
          e.status = PQgetvalue(r, i, 1);
          e.created = std::atoll(PQgetvalue(r, i, 2));
          e.started = std::atoll(PQgetvalue(r, i, 3));
          e.completed = std::atoll(PQgetvalue(r, i, 4));
          e.ok = e.status == "COMPLETED";
          std::shared_ptr<Waiter> w;
          {
            std::lock_guard<std::mutex> l(mu_);
            auto it = waiting_.find(e.id);
            if (it == waiting_.end()) continue;
            w = it->second;
            waiting_.erase(it);
          }
          asio::post(ex_, [w, e] {
            w->end = e;
            w->done = true;
            w->timer.cancel();
          });
        }
      }
      PQclear(r);
      std::this_thread::sleep_for(std::chrono::milliseconds(ids.size() <= 1 ? single_ : many_));
    }
    if (conn) PQfinish(conn);
  }

  std::string url_;
  asio::any_io_executor ex_;
  int single_, many_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Waiter>> waiting_;
  bool stop_ = false;
  std::atomic<uint64_t> queries_{0};
  std::thread thread_;
};

// PostgreSQL (shared, one database per stack) + a fresh Kafka mock +
// `agentflow api` + (optionally) one `agentflow consumer`.
class DistributedStack final : public Stack {
 public:
  DistributedStack(const Options& o, DiskPg* pg, asio::any_io_executor ex, bool consumer,
                   std::vector<std::string> consumer_args)
      : pg_(pg) {
    static int n = 0;
    db_ = "bench" + std::to_string(::getpid()) + "_" + std::to_string(++n);
    Status made = PgExec(pg_->UrlFor("postgres"), "CREATE DATABASE " + db_);
    Require(made.ok(), made.ToString());
    db_url_ = pg_->UrlFor(db_);
    auto kafka = KafkaMock::Start();
    Require(kafka.ok(), "kafka mock: " + kafka.status().ToString());
    kafka_ = std::move(kafka).value();
    kafka_props_ = {"--kafka-property", "fetch.wait.max.ms=" + std::to_string(o.kafka_fetch_wait_ms),
                    "--kafka-property", "session.timeout.ms=6000",
                    "--kafka-property", "heartbeat.interval.ms=500",
                    "--kafka-property", "linger.ms=0"};
    e2e::EnvOverrides env = {{"DATABASE_URL", db_url_},
                             {"KAFKA_BROKERS", kafka_->brokers()},
                             {"KAFKA_GROUP_ID", "bench-" + db_}};
    e2e::Server::Options ao;
    ao.log_dir = logs_.path().string();
    ao.name = "api";
    ao.command = {"api"};
    ao.command.insert(ao.command.end(), kafka_props_.begin(), kafka_props_.end());
    ao.command.insert(ao.command.end(), o.api_args.begin(), o.api_args.end());
    if (o.auth) ao.command.insert(ao.command.end(), {"--auth", "required"});
    for (const auto& a : o.api_args) api_args_ += (api_args_.empty() ? "" : " ") + a;
    if (o.auth) api_args_ += std::string(api_args_.empty() ? "" : " ") + "--auth required";
    ao.env = env;
    api_ = std::make_unique<e2e::Server>(ao);
    api_->Start();
    if (o.auth) MakeAdminKey({"--database-url", db_url_}, logs_);
    if (consumer) {
      e2e::Server::Options co;
      co.log_dir = logs_.path().string();
      co.name = "consumer";
      co.command = {"consumer"};
      co.command.insert(co.command.end(), kafka_props_.begin(), kafka_props_.end());
      co.command.insert(co.command.end(), consumer_args.begin(), consumer_args.end());
      co.command.insert(co.command.end(), o.consumer_args.begin(), o.consumer_args.end());
      consumer_args_ = consumer_args;
      consumer_args_.insert(consumer_args_.end(), o.consumer_args.begin(), o.consumer_args.end());
      co.env = env;
      consumer_ = std::make_unique<e2e::Server>(co);
      consumer_->Start();
    }
    poller_ = std::make_unique<Poller>(db_url_, ex, o);
    keep_logs_dir_ = o.keep_logs_dir;
    wait_through_api_ = o.wait_through_api;
  }
  ~DistributedStack() override {
    poller_.reset();
    if (consumer_ && consumer_->running()) consumer_->Stop();
    if (api_ && api_->running()) api_->Stop();
    kafka_.reset();
    if (!keep_logs_dir_.empty()) {  // the services' logs, named by database (one per stack)
      std::error_code ec;
      fs::create_directories(keep_logs_dir_, ec);
      for (const auto& entry : fs::directory_iterator(logs_.path(), ec)) {
        fs::copy_file(entry.path(), keep_logs_dir_ + "/" + db_ + "-" + entry.path().filename().string(),
                      fs::copy_options::overwrite_existing, ec);
      }
    }
    (void)PgExec(pg_->UrlFor("postgres"), "DROP DATABASE IF EXISTS " + db_ + " WITH (FORCE)");
  }
  std::string mode() const override { return "distributed"; }
  std::string api() const override { return api_->api(); }
  pid_t executor_pid() override { return consumer_ ? consumer_->pid() : 0; }
  pid_t api_pid() override { return api_->pid(); }
  std::string executor_url() const override { return consumer_ ? consumer_->url() : ""; }
  Roles roles() const override {
    Roles r;
    r.named = {{"api", api_->pid()}, {"kafka-mock", kafka_->pid()}};
    if (consumer_) r.named.push_back({"consumer", consumer_->pid()});
    r.postmaster = pg_->postmaster_pid();
    return r;
  }
  json settings() const override {
    std::string k, c;
    for (size_t i = 1; i < kafka_props_.size(); i += 2) k += (k.empty() ? "" : " ") + kafka_props_[i];
    for (const auto& s : consumer_args_) c += (c.empty() ? "" : " ") + s;
    json j = {{"pg_settings", pg_->settings_text()}, {"pg_wal_fs", pg_->filesystem()}, {"kafka", k},
              {"consumer_args", c}};
    if (!api_args_.empty()) j["api_args"] = api_args_;
    return j;
  }
  const std::string& db() const { return db_; }
  const std::string& db_url() const { return db_url_; }
  Poller& poller() { return *poller_; }
  std::string Logs() const override {
    std::string out;
    for (const auto& entry : fs::directory_iterator(logs_.path())) {
      out += "---- " + entry.path().filename().string() + "\n" + e2e::Tail(entry.path().string(), 2500);
    }
    return out;
  }

  asio::awaitable<void> TriggerAndWait(http::Client& c, std::string workflow, std::string body, RunEnd* out) override {
    if (wait_through_api_) {
      co_await TriggerAndWaitThroughApi(c, api(), authorization(), std::move(workflow), std::move(body), out);
      co_return;
    }
    http::ClientRequest req = PostRequest(api() + "/workflows/" + workflow + "/runs", body, 30s, authorization());
    Result<http::ClientResponse> r = co_await c.Send(std::move(req));
    if (!r.ok()) {
      out->error = r.status().ToString();
      co_return;
    }
    json j = json::parse(r->body, nullptr, false);
    if (r->status != 202 || !j.is_object()) {
      out->error = "HTTP " + std::to_string(r->status) + ": " + r->body.substr(0, 300);
      co_return;
    }
    const std::string id = j.value("run_id", "");
    if (id.empty()) {
      out->error = "no run_id in " + r->body.substr(0, 300);
      co_return;
    }
    std::shared_ptr<Poller::Waiter> w = poller_->Add(id);
    const auto deadline = Clock::now() + 120s;
    while (!w->done && Clock::now() < deadline) {
      w->timer.expires_at(deadline);
      boost::system::error_code ec;
      co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!w->done) {
      poller_->Remove(id);
      out->id = id;
      out->error = "run " + id + " not terminal after 120 s";
      co_return;
    }
    *out = w->end;
  }

 private:
  DiskPg* pg_;
  e2e::TempDir logs_;
  std::string db_, db_url_;
  std::unique_ptr<KafkaMock> kafka_;
  std::vector<std::string> kafka_props_, consumer_args_;
  std::string keep_logs_dir_;
  bool wait_through_api_ = false;  // --wait-through-api
  std::string api_args_;
  std::unique_ptr<e2e::Server> api_, consumer_;
  std::unique_ptr<Poller> poller_;
};

// ---------------------------------------------------------------- PostgreSQL counters

// Server-wide and per-database counters, read from the `postgres` database
// (so these reads do not count in the benchmark database's row).
struct PgCounters {
  double xacts = 0;        // pg_stat_database xact_commit + xact_rollback of the db: ~ statements (autocommit)
  double writes = 0;       // transaction ids assigned: transactions that wrote
  double wal_sync = 0;     // pg_stat_wal.wal_sync: WAL fsyncs (fdatasync)
  double wal_bytes = 0;
  double wal_records = 0;
  double tup_ins = 0, tup_upd = 0, tup_del = 0;
};

PgCounters ReadPgCounters(DiskPg* pg, const std::string& db) {
  PgCounters c;
  auto rows = PgQuery(pg->UrlFor("postgres"),
                      "SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '" + db +
                          "'), pg_snapshot_xmax(pg_current_snapshot())::text::bigint, wal_sync, wal_bytes, "
                          "wal_records, (SELECT tup_inserted FROM pg_stat_database WHERE datname = '" + db +
                          "'), (SELECT tup_updated FROM pg_stat_database WHERE datname = '" + db +
                          "'), (SELECT tup_deleted FROM pg_stat_database WHERE datname = '" + db +
                          "') FROM pg_stat_wal");
  if (!rows.ok() || rows->empty()) return c;
  const auto& r = (*rows)[0];
  auto d = [](const std::string& s) { return s.empty() ? 0.0 : std::atof(s.c_str()); };
  c.xacts = d(r[0]);
  c.writes = d(r[1]);
  c.wal_sync = d(r[2]);
  c.wal_bytes = d(r[3]);
  c.wal_records = d(r[4]);
  c.tup_ins = d(r[5]);
  c.tup_upd = d(r[6]);
  c.tup_del = d(r[7]);
  return c;
}

// ---------------------------------------------------------------- plans

json Chain10Plan() {
  json steps = json::array();
  for (int i = 1; i <= 10; ++i) {
    steps.push_back({{"id", "s" + std::to_string(i)}, {"agent", "noop"}, {"input", {{"i", i}}}});
  }
  return {{"name", "chain10"}, {"steps", steps}};
}
json Fanout40Plan() {
  return {{"name", "fanout40"},
          {"steps",
           {{{"id", "fan"}, {"agent", "noop"}, {"for_each", "${input.items}"}, {"input", {{"item", "${item}"}}}},
            {{"id", "join"}, {"agent", "noop"}, {"input", {{"n", "${steps.fan.output}"}}}}}}};
}
json OnePlan() { return {{"name", "one"}, {"steps", {{{"id", "s"}, {"agent", "noop"}}}}}; }
json SlowPlan() { return {{"name", "slow"}, {"steps", {{{"id", "s"}, {"agent", "slow"}}}}}; }

std::string Fanout40Body() {
  json items = json::array();
  for (int i = 0; i < 40; ++i) items.push_back(i);
  return json{{"input", {{"items", items}}}}.dump();
}

// ---------------------------------------------------------------- runner

class Runner {
 public:
  Runner(Options o, Results* results) : o_(std::move(o)), results_(results) {}

  void RunMode(const std::string& mode) {
    std::printf("\n== %s ==\n", mode.c_str());
    std::fflush(stdout);
    logs_ = std::make_unique<e2e::TempDir>();
    agent_ = std::make_unique<Agent>(logs_->path().string());
    if (mode == "distributed") {
      DiskPg::Options po;
      po.base_dir = o_.data_base;
      po.settings = o_.pg_settings;
      if (!o_.pg_statements_dir.empty()) {
        po.settings.push_back("shared_preload_libraries=pg_stat_statements");
        po.settings.push_back("pg_stat_statements.track=all");
      }
      auto pg = DiskPg::Start(po);
      Require(pg.ok(), "PostgreSQL: " + pg.status().ToString());
      pg_ = std::move(pg).value();
      std::printf("PostgreSQL 15 on %s, %s\n", pg_->filesystem().c_str(), pg_->settings_text().c_str());
    }
    const bool full = mode != "embedded-fullsync";  // --full-sync: chain10 only
    if (mode != "embedded" && o_.Want("disk")) {
      // What one durable commit costs here at least: fdatasync of an 8 KiB append.
      Attempt("disk", [&] {
        CpuWindow w;
        w.Begin();
        auto [p50, p99] = FsyncProbe(o_.data_base, 300);
        json ctx = Context(w, w.End(Roles{{}, pg_ ? pg_->postmaster_pid() : 0}), nullptr, 300);
        ctx["dir"] = o_.data_base;
        return std::vector<Figure>{{"disk", mode, "fdatasync_8k_p50", p50, "ms", ctx},
                                   {"disk", mode, "fdatasync_8k_p99", p99, "ms", ctx}};
      });
    }
    if (full && o_.Want("rtt")) Rtt(mode);
    if (o_.Want("chain10") || o_.Want("fanout40")) {
      auto stack = NewStack(mode, true, {});
      Prepare(*stack);
      if (o_.Want("chain10")) Chain10Latency(*stack);
      if (full && o_.Want("fanout40")) Fanout40(*stack);
      if (o_.Want("chain10")) Chain10Throughput(*stack);
    }
    if (full && o_.Want("trigger")) Trigger(mode);
    if (full && o_.Want("slow")) {
      Slow(mode, {});
      if (mode == "distributed") Slow(mode, {"--max-runs", std::to_string(o_.slow_runs)});
    }
    agent_.reset();
    if (pg_ && !o_.keep_logs_dir.empty()) {
      fs::create_directories(o_.keep_logs_dir);
      std::error_code ec;
      fs::copy_file(pg_->log_path(), o_.keep_logs_dir + "/postgresql.log", fs::copy_options::overwrite_existing, ec);
    }
    pg_.reset();
  }

 private:
  std::unique_ptr<Stack> NewStack(const std::string& mode, bool consumer, std::vector<std::string> args) {
    if (mode != "distributed") {
      args.insert(args.end(), o_.serve_args.begin(), o_.serve_args.end());
      // serve's executor is its consumer: the trigger figure runs without it.
      if (!consumer) args.push_back("--accept-only");
    }
    if (mode == "embedded") return std::make_unique<EmbeddedStack>(o_, mode, args);
    if (mode == "embedded-fullsync") {
      args.push_back("--full-sync");
      return std::make_unique<EmbeddedStack>(o_, mode, args);
    }
    return std::make_unique<DistributedStack>(o_, pg_.get(), io_.executor(), consumer, args);
  }

  void Prepare(Stack& s) {
    s.RegisterAgent("noop", agent_->url() + "/noop");
    s.RegisterAgent("slow", agent_->url() + "/sleep?ms=" + std::to_string(o_.slow_ms));
    s.CreateWorkflow(Chain10Plan());
    s.CreateWorkflow(Fanout40Plan());
    s.CreateWorkflow(OnePlan());
    s.CreateWorkflow(SlowPlan());
  }

  // The disk's flush latency right after the figure: commits wait for it.
  void ctx_fsync_probe(json& j) {
    auto [p50, p99] = FsyncProbe(o_.data_base, 50);
    j["fdatasync_p50_ms"] = std::round(p50 * 1000) / 1000;
    j["fdatasync_p99_ms"] = std::round(p99 * 1000) / 1000;
  }

  Roles RolesOf(const Stack& s) const {
    Roles r = s.roles();
    r.named.push_back({"agent", agent_->pid()});
    return r;
  }

  // The figure's common fields: load and other processes' CPU.
  json Context(const CpuWindow& w, const std::map<std::string, double>& cpu, const Stack* s, int n) {
    double other = cpu.count("other") ? cpu.at("other") : 0.0;
    double wall = cpu.at("wall");
    json j = {{"n", n},
              {"load1", w.load_start},
              {"other_cores", std::round(other / wall * 1000) / 1000},
              {"disturbed", other / wall > o_.disturbed_cores},
              {"ts", FormatIso8601(NowMs())}};
    // Where the CPU went: each role's cores over the window, and its CPU per
    // unit of work (run or request) in ms.
    json roles = json::object();
    for (const auto& [role, secs] : cpu) {
      if (role == "wall" || role == "other") continue;
      roles[role] = {{"cores", std::round(secs / wall * 1000) / 1000},
                     {"ms_per_n", n > 0 ? std::round(secs * 1e6 / n) / 1000 : 0.0}};
    }
    j["cpu"] = roles;
    if (s && s->mode() != "embedded") {
      ctx_fsync_probe(j);
    }
    if (s) {
      const json settings = s->settings();  // named: items() must not outlive a temporary
      for (auto& [k, v] : settings.items()) j[k] = v;
    }
    return j;
  }

  // Runs `section` up to o_.attempts times while other processes disturb it;
  // the figures of the least disturbed attempt are kept. `section` returns
  // its figures and the window's other-process cores.
  std::vector<Figure> Attempt(const std::string& name, const std::function<std::vector<Figure>()>& section) {
    std::vector<Figure> best;
    double best_other = 1e9;
    for (int a = 1; a <= o_.attempts; ++a) {
      WaitQuiet(name);
      std::vector<Figure> figs = section();
      double other = figs.empty() ? 0 : figs[0].extra.value("other_cores", 0.0);
      if (other < best_other) {
        best = figs;
        best_other = other;
      }
      if (other <= o_.disturbed_cores) break;
      std::printf("  %s: other processes used %.2f cores; %s\n", name.c_str(), other,
                  a < o_.attempts ? "waiting 20 s and measuring again" : "keeping the least disturbed attempt");
      std::fflush(stdout);
      if (a < o_.attempts) std::this_thread::sleep_for(20s);
    }
    for (auto& f : best) {
      f.extra["attempts"] = o_.attempts;
      results_->Add(f);
    }
    return best;
  }

  // Waits (bounded) for a 2-second window in which other processes use
  // less than the threshold of CPU.
  void WaitQuiet(const std::string& name) {
    const auto deadline = Clock::now() + std::chrono::seconds(o_.wait_quiet_s);
    bool said = false;
    while (true) {
      CpuWindow w;
      w.Begin();
      std::this_thread::sleep_for(2s);
      auto cpu = w.End(Roles{{}, pg_ ? pg_->postmaster_pid() : 0});
      double other = (cpu.count("other") ? cpu["other"] : 0.0) / cpu["wall"];
      if (other <= o_.disturbed_cores) return;
      if (Clock::now() >= deadline) {
        std::printf("  %s: still %.2f cores used by other processes; measuring anyway\n", name.c_str(), other);
        return;
      }
      if (!said) {
        std::printf("  %s: other processes use %.2f cores; waiting (up to %d s) for a quieter machine\n", name.c_str(),
                    other, o_.wait_quiet_s);
        said = true;
      }
      std::fflush(stdout);
    }
  }

  // ---- rtt: the agent alone, from this client, on one keep-alive connection
  // What the executor sends the no-op agent for a step (its body and
  // idempotency key), for the raw round trips.
  static constexpr const char* kRawAgentBody =
      R"({"attempt":1,"input":{"i":1},"run_id":"run-00000000-0000-4000-8000-000000000000","step_id":"s1"})";
  http::ClientRequest RawAgentRequest() {
    http::ClientRequest req = PostRequest(agent_->url() + "/noop", kRawAgentBody, 10s);
    req.headers.push_back({"Idempotency-Key", "run-00000000-0000-4000-8000-000000000000/s1"});
    return req;
  }

  void Rtt(const std::string& mode) {
    auto kept = Attempt("rtt", [&] {
      std::vector<double> lat;
      double per_s = 0;
      CpuWindow w;
      w.Begin();
      const int n = o_.rtt_n;
      const std::string url = agent_->url() + "/noop";
      io_.Run([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::unique_ptr<http::Client> client = http::NewClient(ex);
        const std::string body = kRawAgentBody;
        for (int i = 0; i < n + 200; ++i) {
          http::ClientRequest req = RawAgentRequest();
          auto t0 = Clock::now();
          Result<http::ClientResponse> r = co_await client->Send(std::move(req));
          double ms = MsSince(t0);
          if (!r.ok() || r->status != 200) throw HarnessError("agent call failed");
          if (i >= 200) lat.push_back(ms);
        }
        // 64 connections for 2 s: the agent's capacity, for context.
        const auto end = Clock::now() + 2s;
        uint64_t done = 0;
        Latch latch(ex, 64);
        auto t0 = Clock::now();
        for (int k = 0; k < 64; ++k) {
          auto worker = [&, end]() -> asio::awaitable<void> {
            while (Clock::now() < end) {
              http::ClientRequest req = PostRequest(url, body, 10s);
              Result<http::ClientResponse> r = co_await client->Send(std::move(req));
              if (r.ok() && r->status == 200) ++done;
            }
          };
          asio::co_spawn(ex, worker, [&latch](std::exception_ptr) { latch.Done(); });
        }
        co_await latch.Wait();
        per_s = static_cast<double>(done) / (MsSince(t0) / 1000.0);
      });
      Roles roles{{{"agent", agent_->pid()}}, 0};
      json ctx = Context(w, w.End(roles), nullptr, n);
      return std::vector<Figure>{
          {"rtt", mode, "p50", Pct(lat, 50), "ms", ctx},
          {"rtt", mode, "p99", Pct(lat, 99), "ms", ctx},
          {"rtt", mode, "requests_per_s_64conn", per_s, "req/s", ctx},
      };
    });
    rtt_p50_[mode] = kept.at(0).value;
  }

  double RttP50(const std::string& mode) {
    if (!rtt_p50_.count(mode)) {
      // embedded-fullsync: measured with embedded; otherwise measure now.
      if (rtt_p50_.count("embedded")) return rtt_p50_["embedded"];
      Rtt(mode);
    }
    return rtt_p50_[mode];
  }

  // Runs `runs` runs one at a time (after `warmup`); returns latencies (ms)
  // and the runs' ends. With `rtt`: before each measured run, kRttAlongside
  // raw calls of the agent (as Rtt makes them), whose times go to *rtt, so
  // the round trip an overhead subtracts comes from the same minutes as the
  // runs (the machine's speed drifts from minute to minute).
  static constexpr int kRttAlongside = 10;
  void Sequential(Stack& s, const std::string& wf, const std::string& body, int warmup, int runs,
                  std::vector<double>* lat, std::vector<RunEnd>* ends, std::vector<double>* rtt = nullptr) {
    io_.Run([&]() -> asio::awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      std::unique_ptr<http::Client> client = http::NewClient(ex);
      std::unique_ptr<http::Client> agent_client = http::NewClient(ex);
      for (int i = 0; i < warmup + runs; ++i) {
        if (rtt && i >= warmup) {
          for (int k = 0; k < kRttAlongside; ++k) {
            http::ClientRequest req = RawAgentRequest();
            auto t0 = Clock::now();
            Result<http::ClientResponse> r = co_await agent_client->Send(std::move(req));
            double ms = MsSince(t0);
            if (!r.ok() || r->status != 200) throw HarnessError("agent call failed");
            rtt->push_back(ms);
          }
        }
        RunEnd end;
        std::string workflow = wf;  // named: no temporaries in a co_await expression (g++ 12)
        std::string input = body;
        auto t0 = Clock::now();
        co_await s.TriggerAndWait(*client, std::move(workflow), std::move(input), &end);
        double ms = MsSince(t0);
        if (!end.ok) throw HarnessError(wf + " run failed: " + end.status + " " + end.error);
        if (i >= warmup) {
          lat->push_back(ms);
          ends->push_back(end);
        }
      }
    });
  }

  void Warm(Stack& s) {
    // The first run of a distributed stack waits for the consumer group's
    // assignment (~3 s); a few more warm the connections.
    std::vector<double> lat;
    std::vector<RunEnd> ends;
    Sequential(s, "one", R"({"input":{}})", 0, 1, &lat, &ends);
    Sequential(s, "chain10", R"({"input":{}})", 0, 5, &lat, &ends);
  }

  // --attach's command, started if `phase` is the one it is for. {pid} is
  // the executor's pid, or in the trigger phase the api's (serve's).
  std::unique_ptr<e2e::Process> Attach(Stack& s, const std::string& phase) {
    if (o_.attach.empty() || o_.attach_phase != phase) return nullptr;
    std::vector<std::string> argv;
    std::istringstream in(o_.attach);
    for (std::string a; in >> a;) {
      size_t at = a.find("{pid}");
      if (at != std::string::npos) a.replace(at, 5, std::to_string(phase == "trigger" ? s.api_pid() : s.executor_pid()));
      argv.push_back(a);
    }
    const std::string dir = o_.keep_logs_dir.empty() ? logs_->path().string() : o_.keep_logs_dir;
    fs::create_directories(dir);
    auto p = e2e::Process::Spawn(argv, dir + "/attach-" + s.mode() + "-" + phase + ".log");
    std::this_thread::sleep_for(1s);
    return p;
  }

  void Chain10Latency(Stack& s) {
    const std::string mode = s.mode();
    const double rtt_separate = RttP50(mode);
    Warm(s);
    auto* dist = dynamic_cast<DistributedStack*>(&s);
    Attempt("chain10 latency", [&] {
      std::vector<double> lat;
      std::vector<RunEnd> ends;
      PgCounters before, after;
      uint64_t polls_before = dist ? dist->poller().queries() : 0;
      if (dist) {
        std::this_thread::sleep_for(2500ms);  // the previous phase's statistics are flushed first
        before = ReadPgCounters(pg_.get(), dist->db());
      }
      std::unique_ptr<e2e::Process> attached = Attach(s, "latency");
      StatementsBegin(s);
      CpuWindow w;
      w.Begin();
      std::vector<double> rtt_alongside;
      Sequential(s, "chain10", R"({"input":{}})", 0, o_.latency_runs, &lat, &ends, &rtt_alongside);
      StatementsEnd(s, "chain10-latency-" + mode);
      json ctx = Context(w, w.End(RolesOf(s)), &s, o_.latency_runs);
      if (attached) attached->Terminate(60s);
      std::vector<double> queue, exec;
      for (const RunEnd& e : ends) {
        if (e.started && e.created) queue.push_back(static_cast<double>(e.started - e.created));
        if (e.completed && e.started) exec.push_back(static_cast<double>(e.completed - e.started));
      }
      double p50 = Pct(lat, 50);
      // The overhead subtracts the round trip measured between these runs;
      // the rtt phase's own figure (minutes earlier) is kept for comparison.
      const double rtt = Pct(rtt_alongside, 50);
      ctx["rtt_p50_ms"] = rtt;
      ctx["rtt_phase_p50_ms"] = rtt_separate;
      std::vector<Figure> f = {
          {"chain10", mode, "latency_p50", p50, "ms", ctx},
          {"chain10", mode, "latency_p99", Pct(lat, 99), "ms", ctx},
          {"chain10", mode, "latency_mean", Mean(lat), "ms", ctx},
          {"chain10", mode, "rtt_alongside_p50", rtt, "ms", ctx},
          {"chain10", mode, "overhead_per_step_p50", (p50 - 10 * rtt) / 10, "ms", ctx},
          {"chain10", mode, "server_pending_p50", Pct(queue, 50), "ms", ctx},
          {"chain10", mode, "server_running_p50", Pct(exec, 50), "ms", ctx},
      };
      if (dist) {
        std::this_thread::sleep_for(2500ms);  // backends flush their statistics within ~1 s of going idle
        after = ReadPgCounters(pg_.get(), dist->db());
        AddPgFigures(f, "chain10", mode, "latency", before, after,
                     static_cast<double>(dist->poller().queries() - polls_before), o_.latency_runs, ctx);
      }
      return f;
    });
  }

  void AddPgFigures(std::vector<Figure>& f, const std::string& bench, const std::string& mode,
                    const std::string& phase, const PgCounters& a, const PgCounters& b, double poller_queries,
                    int runs, const json& ctx) {
    double n = runs;
    // (Statements per run are not derived from xact_commit: the completion
    // poller's reads dominate it and are flushed late. docs/benchmarks.md
    // counts them from a log_min_duration_statement=0 run instead.)
    (void)poller_queries;
    f.push_back({bench, mode, phase + "_pg_write_xacts_per_run", (b.writes - a.writes) / n, "commits", ctx});
    f.push_back({bench, mode, phase + "_pg_wal_fsyncs_per_run", (b.wal_sync - a.wal_sync) / n, "fsyncs", ctx});
    f.push_back({bench, mode, phase + "_pg_wal_kb_per_run", (b.wal_bytes - a.wal_bytes) / n / 1024.0, "KiB", ctx});
    f.push_back({bench, mode, phase + "_pg_rows_written_per_run",
                 (b.tup_ins - a.tup_ins + b.tup_upd - a.tup_upd + b.tup_del - a.tup_del) / n, "rows", ctx});
  }

  void Fanout40(Stack& s) {
    const std::string mode = s.mode();
    auto* dist = dynamic_cast<DistributedStack*>(&s);
    Attempt("fanout40", [&] {
      std::vector<double> lat;
      std::vector<RunEnd> ends;
      PgCounters before, after;
      if (dist) {
        std::this_thread::sleep_for(2500ms);  // the previous phase's statistics are flushed first
        before = ReadPgCounters(pg_.get(), dist->db());
      }
      StatementsBegin(s);
      CpuWindow w;
      w.Begin();
      const int warm = 2;
      Sequential(s, "fanout40", Fanout40Body(), warm, o_.fanout_runs, &lat, &ends);
      StatementsEnd(s, "fanout40-" + mode);
      json ctx = Context(w, w.End(RolesOf(s)), &s, o_.fanout_runs);
      std::vector<Figure> f = {
          {"fanout40", mode, "latency_p50", Pct(lat, 50), "ms", ctx},
          {"fanout40", mode, "latency_p99", Pct(lat, 99), "ms", ctx},
      };
      if (dist) {
        // Commits in series are what a lone run's latency is made of: the
        // warm-up runs are counted too (they are the same runs).
        std::this_thread::sleep_for(2500ms);
        after = ReadPgCounters(pg_.get(), dist->db());
        AddPgFigures(f, "fanout40", mode, "latency", before, after, 0, warm + o_.fanout_runs, ctx);
      }
      return f;
    });
  }

  void Chain10Throughput(Stack& s) {
    const std::string mode = s.mode();
    auto* dist = dynamic_cast<DistributedStack*>(&s);
    Attempt("chain10 throughput", [&] {
      const int total = o_.throughput_runs, inflight = o_.throughput_in_flight;
      std::vector<double> lat;
      int ok = 0, failed = 0;
      std::string first_error;
      PgCounters before, after;
      uint64_t polls_before = dist ? dist->poller().queries() : 0;
      if (dist) {
        std::this_thread::sleep_for(2500ms);  // the previous phase's statistics are flushed first
        before = ReadPgCounters(pg_.get(), dist->db());
      }
      std::unique_ptr<e2e::Process> perf;
      if (!o_.perf_dir.empty()) {
        fs::create_directories(o_.perf_dir);
        perf = e2e::Process::Spawn({"/usr/bin/perf", "record", "-a", "-g", "-F", "499", "-o",
                                    o_.perf_dir + "/perf-" + mode + ".data"},
                                   o_.perf_dir + "/perf-" + mode + ".log");
        std::this_thread::sleep_for(1s);
      }
      std::unique_ptr<e2e::Process> attached = Attach(s, "throughput");
      CpuWindow w;
      w.Begin();
      const pid_t exec_pid = s.executor_pid();
      std::map<pid_t, ProcInfo> threads_before = ReadThreads(exec_pid);
      double wall_ms = 0;
      io_.Run([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::unique_ptr<http::Client> client = http::NewClient(ex);
        int next = 0;
        Latch latch(ex, inflight);
        auto t0 = Clock::now();
        for (int k = 0; k < inflight; ++k) {
          auto worker = [&]() -> asio::awaitable<void> {
            while (next < total) {
              ++next;
              RunEnd end;
              std::string workflow = "chain10";
              std::string input = R"({"input":{}})";
              auto t1 = Clock::now();
              co_await s.TriggerAndWait(*client, std::move(workflow), std::move(input), &end);
              lat.push_back(MsSince(t1));
              if (end.ok) {
                ++ok;
              } else {
                ++failed;
                if (first_error.empty()) first_error = end.status + " " + end.error;
              }
            }
          };
          asio::co_spawn(ex, worker, [&latch](std::exception_ptr) { latch.Done(); });
        }
        co_await latch.Wait();
        wall_ms = MsSince(t0);
      });
      auto cpu = w.End(RolesOf(s));
      // The executor's busiest thread: its share of the wall time (1.0 = a
      // whole core). Far below 1 while throughput is capped means that
      // thread mostly waits (on the database), not computes.
      double busiest = 0;
      int busy_threads = 0;
      {
        static const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
        for (const auto& [tid, t] : ReadThreads(exec_pid)) {
          auto it = threads_before.find(tid);
          double secs = static_cast<double>(t.ticks - (it == threads_before.end() ? 0 : it->second.ticks)) / hz;
          double util = secs / (wall_ms / 1000.0);
          busiest = std::max(busiest, util);
          if (util > 0.05) ++busy_threads;
        }
      }
      if (perf) perf->Terminate(60s);
      if (attached) attached->Terminate(60s);
      json ctx = Context(w, cpu, &s, total);
      ctx["in_flight"] = inflight;
      if (failed) {
        ctx["failed"] = failed;
        ctx["first_error"] = first_error;
      }
      double runs_s = ok / (wall_ms / 1000.0);
      std::vector<Figure> f = {
          {"chain10", mode, "throughput_runs_per_s", runs_s, "runs/s", ctx},
          {"chain10", mode, "throughput_steps_per_s", runs_s * 10, "steps/s", ctx},
          {"chain10", mode, "throughput_latency_p50", Pct(lat, 50), "ms", ctx},
          {"chain10", mode, "throughput_failed_runs", static_cast<double>(failed), "runs", ctx},
          {"chain10", mode, "executor_busiest_thread_util", busiest, "cores", ctx},
          {"chain10", mode, "executor_threads_over_5pct", static_cast<double>(busy_threads), "threads", ctx},
      };
      // CPU per run, by process: where the cores went.
      for (const auto& [role, secs] : cpu) {
        if (role == "wall") continue;
        f.push_back({"chain10", mode, "cpu_ms_per_run_" + role, secs * 1000.0 / std::max(ok, 1), "ms", ctx});
      }
      if (dist) {
        std::this_thread::sleep_for(2500ms);
        after = ReadPgCounters(pg_.get(), dist->db());
        AddPgFigures(f, "chain10", mode, "throughput", before, after,
                     static_cast<double>(dist->poller().queries() - polls_before), total, ctx);
      }
      return f;
    });
  }

  // ---- --pg-statements: pg_stat_statements is reset when a window begins
  // and its top statements (by execution time) written when it ends.
  void StatementsBegin(Stack& s) {
    if (o_.pg_statements_dir.empty() || !pg_ || dynamic_cast<DistributedStack*>(&s) == nullptr) return;
    (void)PgQuery(pg_->UrlFor("postgres"), "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    (void)PgQuery(pg_->UrlFor("postgres"), "SELECT pg_stat_statements_reset()");
  }
  void StatementsEnd(Stack& s, const std::string& name) {
    auto* dist = dynamic_cast<DistributedStack*>(&s);
    if (o_.pg_statements_dir.empty() || !pg_ || dist == nullptr) return;
    auto rows = PgQuery(pg_->UrlFor("postgres"),
                        "SELECT calls, round(total_exec_time::numeric, 1), "
                        "round((total_exec_time / greatest(calls, 1))::numeric, 3), "
                        "round(max_exec_time::numeric, 2), rows, "
                        "shared_blks_hit + shared_blks_read, left(regexp_replace(query, '\\s+', ' ', 'g'), 200) "
                        "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '" +
                            dist->db() + "') ORDER BY total_exec_time DESC LIMIT 30");
    fs::create_directories(o_.pg_statements_dir);
    std::ofstream out(o_.pg_statements_dir + "/" + name + ".txt");
    if (!rows.ok()) {
      out << "pg_stat_statements: " << rows.status().ToString() << "\n";
      return;
    }
    out << "calls\ttotal_ms\tmean_ms\tmax_ms\trows\tblocks\tquery\n";
    for (const auto& r : *rows) {
      for (size_t i = 0; i < r.size(); ++i) out << r[i] << (i + 1 < r.size() ? "\t" : "\n");
    }
  }

  // ---- trigger: POST /runs on N keep-alive connections, no consumer
  void Trigger(const std::string& mode) {
    Attempt("trigger", [&] {
      auto stack = NewStack(mode, /*consumer=*/false, {});
      Prepare(*stack);
      Stack& s = *stack;
      std::vector<double> lat;
      std::vector<std::vector<double>> by_second;  // latencies by the second they were sent in
      uint64_t accepted = 0, errors = 0;
      std::string first_error;
      double measured_s = 0;
      const int conns = o_.trigger_connections;
      const std::string url = s.api() + "/workflows/one/runs";
      std::unique_ptr<e2e::Process> attached = Attach(s, "trigger");  // from before the warm-up
      CpuWindow w;
      w.Begin();  // again when the warm-up ends
      io_.Run([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        // 1 s of warm-up, then the measured window.
        const auto warm_end = Clock::now() + 1s;
        const auto end = warm_end + std::chrono::seconds(o_.trigger_seconds);
        const uint64_t cap = o_.quick ? 20000 : 200000;  // bound on runs created
        uint64_t sent = 0;
        bool began = false;
        std::vector<std::unique_ptr<PostConnection>> connections;
        for (int k = 0; k < conns; ++k) {
          connections.push_back(std::make_unique<PostConnection>(url, R"({"input":{}})", s.authorization()));
        }
        // One watchdog for all connections: a POST unanswered for 30 s is
        // aborted (an error), so the figure ends by itself.
        bool done = false;
        asio::steady_timer watchdog(ex);
        Latch watchdog_ended(ex, 1);
        asio::co_spawn(
            ex,
            [&]() -> asio::awaitable<void> {
              while (!done) {
                watchdog.expires_after(200ms);
                boost::system::error_code ignored;
                co_await watchdog.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
                const auto now = Clock::now();
                for (auto& c : connections) {
                  if (auto since = c->busy_since(); since && now - *since > 30s) c->Abort();
                }
              }
            },
            [&watchdog_ended](std::exception_ptr) { watchdog_ended.Done(); });
        Latch latch(ex, conns);
        for (int k = 0; k < conns; ++k) {
          auto worker = [&, k]() -> asio::awaitable<void> {
            PostConnection& connection = *connections[static_cast<size_t>(k)];
            while (Clock::now() < end && sent < cap) {
              ++sent;
              auto t0 = Clock::now();
              PostAnswer r = co_await connection.Post();
              double ms = MsSince(t0);
              if (t0 < warm_end) continue;
              if (!began) {
                began = true;
                w.Begin();
                StatementsBegin(s);
              }
              if (r.status == 202) {
                ++accepted;
                lat.push_back(ms);
                const auto second = static_cast<size_t>(std::chrono::duration<double>(t0 - warm_end).count());
                if (by_second.size() <= second) by_second.resize(second + 1);
                by_second[second].push_back(ms);
              } else {
                ++errors;
                if (first_error.empty()) first_error = r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
              }
            }
          };
          asio::co_spawn(ex, worker, [&latch](std::exception_ptr) { latch.Done(); });
        }
        co_await latch.Wait();
        measured_s = std::chrono::duration<double>(Clock::now() - warm_end).count();
        done = true;
        watchdog.cancel();
        co_await watchdog_ended.Wait();  // it uses this frame's locals
      });
      if (attached) attached->Terminate(60s);
      StatementsEnd(s, "trigger-" + mode);
      json ctx = Context(w, w.End(RolesOf(s)), &s, static_cast<int>(accepted));
      ctx["connections"] = conns;
      ctx["errors"] = errors;
      // Whether the tail is spread out or a few bad seconds.
      json p99s = json::array();
      for (auto& v : by_second) p99s.push_back(v.empty() ? 0.0 : std::round(Pct(v, 99) * 10) / 10);
      ctx["p99_by_second_ms"] = p99s;
      if (!first_error.empty()) ctx["first_error"] = first_error;
      if (mode != "distributed") ctx["note"] = "serve --accept-only: no executor, the runs are stored and queued";
      return std::vector<Figure>{
          {"trigger", mode, "accepted_per_s", static_cast<double>(accepted) / measured_s, "runs/s", ctx},
          {"trigger", mode, "latency_p50", Pct(lat, 50), "ms", ctx},
          {"trigger", mode, "latency_p99", Pct(lat, 99), "ms", ctx},
      };
    });
  }

  // ---- slow: N runs of one step calling an agent that answers after 2 s
  static double MetricSum(const std::string& text, const std::string& name, const std::string& label) {
    double sum = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name, 0) != 0) continue;
      if (!label.empty() && line.find(label) == std::string::npos) continue;
      size_t sp = line.rfind(' ');
      if (sp != std::string::npos) sum += std::atof(line.c_str() + sp + 1);
    }
    return sum;
  }
  static long StatusField(pid_t pid, const std::string& key) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(f, line);) {
      if (line.rfind(key + ":", 0) == 0) return std::atol(line.c_str() + key.size() + 1);
    }
    return -1;
  }

  void Slow(const std::string& mode, std::vector<std::string> consumer_args) {
    std::string variant = consumer_args.empty() ? "" : "_max_runs_" + consumer_args.back();
    Attempt("slow" + variant, [&] {
      auto stack = NewStack(mode, true, consumer_args);
      Prepare(*stack);
      Stack& s = *stack;
      Warm(s);
      const pid_t pid = s.executor_pid();
      const std::string metrics = s.executor_url() + "/metrics";
      auto finished = [&](const char* status) {
        auto r = e2e::Fetch("GET", metrics, "", {}, 5s);
        return MetricSum(r.body, "agentflow_runs_finished_total", status);
      };
      const double base_completed = finished("COMPLETED");
      const double base_all = finished("");
      const long rss_before = StatusField(pid, "VmRSS");
      std::atomic<bool> sampling{true};
      long max_threads = 0, max_rss = 0;
      std::thread sampler([&] {
        while (sampling) {
          max_threads = std::max(max_threads, StatusField(pid, "Threads"));
          max_rss = std::max(max_rss, StatusField(pid, "VmRSS"));
          std::this_thread::sleep_for(100ms);
        }
      });
      const int total = o_.slow_runs;
      uint64_t accepted = 0;
      std::string first_error;
      CpuWindow w;
      w.Begin();
      StatementsBegin(s);
      const auto t0 = Clock::now();
      double trigger_s = 0;
      io_.Run([&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        std::unique_ptr<http::Client> client = http::NewClient(ex);
        int next = 0;
        Latch latch(ex, 64);
        const std::string url = s.api() + "/workflows/slow/runs";
        for (int k = 0; k < 64; ++k) {
          auto worker = [&]() -> asio::awaitable<void> {
            while (next < total) {
              ++next;
              http::ClientRequest req = PostRequest(url, R"({"input":{}})", 30s, s.authorization());
              Result<http::ClientResponse> r = co_await client->Send(std::move(req));
              if (r.ok() && r->status == 202) {
                ++accepted;
              } else if (first_error.empty()) {
                first_error = r.ok() ? "HTTP " + std::to_string(r->status) + " " + r->body.substr(0, 200)
                                     : r.status().ToString();
              }
            }
          };
          asio::co_spawn(ex, worker, [&latch](std::exception_ptr) { latch.Done(); });
        }
        co_await latch.Wait();
        trigger_s = std::chrono::duration<double>(Clock::now() - t0).count();
      });
      double completed = 0, all = 0;
      const auto deadline = t0 + 300s;
      while (Clock::now() < deadline) {
        all = finished("") - base_all;
        if (all >= static_cast<double>(accepted)) break;
        std::this_thread::sleep_for(100ms);
      }
      const double done_s = std::chrono::duration<double>(Clock::now() - t0).count();
      StatementsEnd(s, "slow" + variant + "-" + mode);
      completed = finished("COMPLETED") - base_completed;
      sampling = false;
      sampler.join();
      const long hwm = StatusField(pid, "VmHWM");
      json ctx = Context(w, w.End(RolesOf(s)), &s, total);
      ctx["accepted"] = accepted;
      ctx["rss_before_kb"] = rss_before;
      ctx["agent_ms"] = o_.slow_ms;
      if (!first_error.empty()) ctx["first_error"] = first_error;
      if (all < static_cast<double>(accepted)) ctx["timed_out"] = true;
      const std::string b = "slow" + variant;
      return std::vector<Figure>{
          {b, mode, "time_to_all_completed", done_s, "s", ctx},
          {b, mode, "trigger_phase", trigger_s, "s", ctx},
          {b, mode, "completed_runs", completed, "runs", ctx},
          {b, mode, "executor_peak_rss", static_cast<double>(hwm) / 1024.0, "MiB", ctx},
          {b, mode, "executor_max_rss_sampled", static_cast<double>(max_rss) / 1024.0, "MiB", ctx},
          {b, mode, "executor_max_threads", static_cast<double>(max_threads), "threads", ctx},
      };
    });
  }

  Options o_;
  Results* results_;
  Io io_;
  std::unique_ptr<e2e::TempDir> logs_;
  std::unique_ptr<Agent> agent_;
  std::unique_ptr<DiskPg> pg_;
  std::map<std::string, double> rtt_p50_;
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');) {
    if (!x.empty()) out.push_back(x);
  }
  return out;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      Require(i + 1 < argc, a + " needs a value");
      return argv[++i];
    };
    if (a == "--modes") o.modes = Split(next());
    else if (a == "--only") for (auto& b : Split(next())) o.only.insert(b);
    else if (a == "--out") o.out = next();
    else if (a == "--data-base") o.data_base = next();
    else if (a == "--revision") o.revision = next();
    else if (a == "--perf") o.perf_dir = next();
    else if (a == "--pg-setting") o.pg_settings.push_back(next());
    else if (a == "--pg-statements") o.pg_statements_dir = next();
    else if (a == "--attach") o.attach = next();
    else if (a == "--attach-phase") o.attach_phase = next();
    else if (a == "--api-arg") o.api_args.push_back(next());
    else if (a == "--consumer-arg") o.consumer_args.push_back(next());
    else if (a == "--serve-arg") o.serve_args.push_back(next());
    else if (a == "--wait-through-api") o.wait_through_api = true;
    else if (a == "--auth") o.auth = true;
    else if (a == "--keep-logs") o.keep_logs_dir = next();
    else if (a == "--attempts") o.attempts = std::stoi(next());
    else if (a == "--wait-quiet") o.wait_quiet_s = std::stoi(next());
    else if (a == "--trigger-connections") o.trigger_connections = std::stoi(next());
    else if (a == "--kafka-fetch-wait-ms") o.kafka_fetch_wait_ms = std::stoi(next());
    else if (a == "--poll-ms-many") o.poll_ms_many = std::stoi(next());
    else if (a == "--latency-runs") o.latency_runs = std::stoi(next());
    else if (a == "--quick") o.quick = true;
    else {
      std::fprintf(
          stderr,
          "usage: af-bench [--modes embedded,embedded-fullsync,distributed] "
          "[--only rtt,chain10,fanout40,trigger,slow] [--out FILE] [--data-base DIR] [--quick] [--pg-statements DIR] "
          "[--perf DIR] [--attach 'CMD {pid}'] [--attach-phase throughput|latency|trigger] [--keep-logs DIR] "
          "[--wait-through-api] [--auth] [--api-arg A]... [--consumer-arg A]... [--serve-arg A]... "
          "[--pg-setting k=v]... "
          "[--attempts N] [--wait-quiet S] "
          "[--trigger-connections N] "
          "[--kafka-fetch-wait-ms N] [--poll-ms-many N] [--latency-runs N] [--revision R]\n");
      return 2;
    }
  }
  if (o.quick) {
    o.rtt_n = 500;
    o.latency_runs = 10;
    o.throughput_runs = 200;
    o.fanout_runs = 5;
    o.trigger_seconds = 3;
    o.slow_runs = 1000;
    o.attempts = 1;
    o.wait_quiet_s = 0;
  }
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;  // children inherit it: 10,000 agent connections need the fds
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  const std::string machine = MachineText();
  std::printf("machine: %s\n", machine.c_str());
  Results results(machine, o.revision);
  int rc = 0;
  try {
    Runner runner(o, &results);
    for (const auto& m : o.modes) {
      Require(m == "embedded" || m == "embedded-fullsync" || m == "distributed", "unknown mode " + m);
      runner.RunMode(m);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "af-bench: %s\n", e.what());
    rc = 1;
  }
  results.Write(o.out);
  results.PrintTable(o.modes);
  std::printf("wrote %s\n", o.out.c_str());
  return rc;
}

}  // namespace
}  // namespace af::bench

int main(int argc, char** argv) { return af::bench::Main(argc, argv); }
