// End-to-end test harness: runs the real `agentflow` binary (serve,
// demo-agents, CLI commands) as child processes on free loopback ports and
// talks to them over HTTP.
//
// Contracts the tests rely on:
//  - Every child is started with posix_spawn, its stdout/stderr go to a log
//    file in a per-test temporary directory, and it is always reaped: Process
//    kills (SIGKILL) and reaps in its destructor, and a fatal-signal/atexit
//    hook kills whatever is still registered, so a failing or crashing test
//    leaves no process behind.
//  - Every wait is bounded by a deadline; nothing sleeps to synchronise.
//  - Servers bind to 127.0.0.1 only.
//  - Helpers that cannot continue throw HarnessError; GoogleTest reports the
//    exception as a failure of the test that called them.
//
// Thread-safety: none; use from the test thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace af::e2e {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Headers = std::vector<std::pair<std::string, std::string>>;

struct HarnessError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws HarnessError(message) unless `condition`.
void Require(bool condition, const std::string& message);

// Path of the agentflow binary under test (set at build time).
const std::string& AgentflowBinary();

// A fresh directory under $TMPDIR, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  // Writes `text` to File(name) and returns the path.
  std::string Write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

// A loopback TCP port that was free a moment ago (not handed out twice by
// this process).
uint16_t PickFreePort();

// Environment overrides for a child: a value sets the variable, nullopt
// removes it. The harness always removes variables that would change the
// binary's behaviour (AGENTFLOW_SERVER, DATABASE_URL, LOG_FORMAT, ...)
// unless they are given here.
using EnvOverrides = std::map<std::string, std::optional<std::string>>;

// One child process. Not copyable; the destructor SIGKILLs and reaps it if
// it still runs.
class Process {
 public:
  // stdout goes to `stdout_path`; stderr to `stderr_path` (or the same file
  // when empty). stdin is /dev/null.
  static std::unique_ptr<Process> Spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                                        const std::string& stderr_path = "", const EnvOverrides& env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps the child if it has exited; true while it runs.
  bool Running();
  // The exit code once exited (128+signal if killed by a signal).
  std::optional<int> exit_code() const { return exit_code_; }
  // Waits up to `timeout` for the child to exit on its own.
  bool WaitExit(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`; always reaps. Returns the exit code.
  int Terminate(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // SIGKILL and reap (a crash).
  void Kill();

 private:
  explicit Process(pid_t pid) : pid_(pid) {}
  void Reaped(int wait_status);
  pid_t pid_;
  std::optional<int> exit_code_;
};

// Reads a whole file ("" if missing).
std::string ReadFile(const std::string& path);
// The last `max_bytes` of a file, for failure reports.
std::string Tail(const std::string& path, size_t max_bytes = 6000);

struct HttpResponse {
  int status = 0;           // 0 when the exchange failed
  std::string error;        // transport error, if any
  std::string body;
  Headers headers;
  json body_json;           // parsed body; discarded (is_discarded()) if not JSON
  std::string Header(const std::string& name) const;
  std::string Describe() const;  // "HTTP 400: {...}" for messages
};

// One HTTP exchange (af::http::FetchSync). A JSON Content-Type is added when
// `body` is non-empty and `headers` has none.
HttpResponse Fetch(const std::string& method, const std::string& url, const std::string& body = "",
                   Headers headers = {}, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Polls `pred` every few ms until it is true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds poll = std::chrono::milliseconds(20));

// `agentflow serve` (or another service: Options::command) on a free
// loopback port.
class Server {
 public:
  struct Options {
    std::string data_dir;       // required for serve
    std::string log_dir;        // required: <name>.<n>.out / .err go here
    bool demo = false;          // --demo
    EnvOverrides env;           // e.g. {"LOG_FORMAT", "json"}
    // Another service instead of `serve`: its subcommand and arguments
    // (e.g. {"api"} or {"consumer", "--group-id", "g"}); --host and --port
    // are appended, and GET /healthz on that port must answer 200.
    std::vector<std::string> command;
    std::string name = "serve";  // log file stem
  };
  explicit Server(Options options) : options_(std::move(options)) {}
  ~Server() = default;

  // Starts and waits (bounded) until GET /healthz answers 200. `port` 0
  // picks a free one (and retries with another if it was taken meanwhile).
  void Start(uint16_t port = 0);
  // SIGTERM; returns the exit code.
  int Stop();
  // SIGKILL, like a crash.
  void Crash();
  // Crash (if running), then Start again on the same port and data dir.
  void Restart();
  bool running() const { return proc_ != nullptr; }
  // True while the serve process is alive (reaps it if it died).
  bool Alive() { return proc_ && proc_->Running(); }
  // The running process's id (0 when stopped), e.g. to read /proc/PID/status.
  pid_t pid() const { return proc_ ? proc_->pid() : 0; }

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string api() const { return url() + "/api/v1"; }
  // The current (latest) incarnation's log files.
  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  std::vector<std::string> log_files() const { return all_logs_; }

  // Requests relative to /api/v1 (path starts with '/').
  HttpResponse Get(const std::string& path, std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  HttpResponse Post(const std::string& path, const json& body = json::object(), Headers headers = {}) const;
  HttpResponse Put(const std::string& path, const json& body) const;
  HttpResponse Delete(const std::string& path) const;

 private:
  bool TryStart(uint16_t port);
  Options options_;
  std::unique_ptr<Process> proc_;
  uint16_t port_ = 0;
  int incarnation_ = 0;
  std::string stdout_path_, stderr_path_;
  std::vector<std::string> all_logs_;
};

// `agentflow demo-agents --port P --register <server>`; Start waits until
// the agents are registered.
class DemoAgents {
 public:
  explicit DemoAgents(std::string log_dir) : log_dir_(std::move(log_dir)) {}
  // `port` 0 picks a free one; another value reuses it (a restart).
  void Start(const std::string& register_url, uint16_t port = 0);
  void Stop();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  uint16_t port() const { return port_; }
  std::string log_path() const { return log_path_; }

 private:
  std::string log_dir_;
  std::string log_path_;
  std::unique_ptr<Process> proc_;
  uint16_t port_ = 0;
  int starts_ = 0;
};

// A server plus registered demo agents in one temp dir: what most tests need.
class Stack {
 public:
  explicit Stack(EnvOverrides server_env = {});
  ~Stack();
  void Start();
  Server& server() { return *server_; }
  DemoAgents& agents() { return *agents_; }
  TempDir& dir() { return dir_; }
  // The tails of every log, for failure reports.
  std::string Logs() const;

 private:
  TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<DemoAgents> agents_;
};

// One Stack shared by the tests of this program whose state does not
// interfere (each uses its own workflows): started on first use, stopped
// after the last test.
Stack& SharedStack();

// Base fixture: on failure, prints the tails of the logs of `stack()`.
class E2ETest : public ::testing::Test {
 protected:
  virtual Stack& stack() = 0;
  void TearDown() override;
};

// Fixture for tests on the shared stack.
class SharedStackTest : public E2ETest {
 protected:
  Stack& stack() override { return SharedStack(); }
  Server& server() { return SharedStack().server(); }
};

// ---- CLI ----
struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::string Describe() const;  // for assertion messages
};
// Runs `agentflow <args...>` to completion (bounded by `timeout`; killed and
// reported as exit_code -1 beyond it). Output files go to `dir`.
CliResult RunCli(const std::vector<std::string>& args, const TempDir& dir, const EnvOverrides& env = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(60));

// ---- API helpers (throw HarnessError on unexpected answers) ----
// POST /workflows; returns the created workflow.
json CreateWorkflow(const Server& s, const json& plan);
// POST /workflows/{id}/runs; returns the run (202 expected).
json StartRun(const Server& s, const std::string& workflow, const json& input, const std::string& idempotency_key = "");
// Long-polls GET /runs/{id}?wait= until the run is terminal, up to `timeout`.
json WaitRunTerminal(const Server& s, const std::string& run_id,
                     std::chrono::milliseconds timeout = std::chrono::seconds(60));
// GET /runs/{id}/steps → items.
json Steps(const Server& s, const std::string& run_id);
// Polls the steps until one row satisfies `pred`; returns it.
json WaitForStepRow(const Server& s, const std::string& run_id, const std::function<bool(const json&)>& pred,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20));
// The rows of one step (all items and attempts), in the API's order.
json RowsOf(const json& steps, const std::string& step_id);
// Milliseconds since the epoch of an ISO-8601 timestamp field.
int64_t TimeOf(const json& row, const char* field);

// A name unique within this test process run.
std::string UniqueName(const std::string& prefix);

}  // namespace af::e2e
