#include "e2e/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/time.h"
#include "http/http.h"

extern char** environ;

#ifndef AGENTFLOW_BIN
#error "AGENTFLOW_BIN must be defined to the path of the agentflow binary"
#endif

namespace af::e2e {

using namespace std::chrono_literals;

void Require(bool condition, const std::string& message) {
  if (!condition) throw HarnessError(message);
}

const std::string& AgentflowBinary() {
  static const std::string path = [] {
    const char* env = std::getenv("AGENTFLOW_E2E_BINARY");  // override for running against another build
    return std::string(env && *env ? env : AGENTFLOW_BIN);
  }();
  return path;
}

// ---------------------------------------------------------------- children
//
// Every live child pid sits in this table until it is reaped, so that a
// crash of the test program (abort, segfault, SIGTERM from ctest) still
// kills them. Lock-free slots: the signal handler only reads them.
namespace {

constexpr size_t kMaxChildren = 256;
std::array<std::atomic<pid_t>, kMaxChildren> g_children{};

void KillAllChildren() {
  for (auto& slot : g_children) {
    pid_t pid = slot.load();
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      slot.store(0);
    }
  }
}

void OnFatalSignal(int sig) {
  KillAllChildren();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void InstallCleanupHooks() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit(KillAllChildren);
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGALRM,
                    SIGXCPU}) {
      struct sigaction sa;
      std::memset(&sa, 0, sizeof sa);
      sa.sa_handler = OnFatalSignal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESETHAND;
      ::sigaction(sig, &sa, nullptr);
    }
  });
}

void RegisterChild(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = 0;
    if (slot.compare_exchange_strong(expected, pid)) return;
  }
}

void UnregisterChild(pid_t pid) {
  for (auto& slot : g_children) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

// Variables that change what agentflow does; removed unless overridden.
const char* const kScrubbed[] = {"AGENTFLOW_SERVER", "AGENTFLOW_DATA_DIR", "DATABASE_URL", "LOG_FORMAT",
                                 "LOG_LEVEL", "AGENTFLOW_AUTH", "AGENTFLOW_API_KEY", "AGENTFLOW_AGENT_HOSTS"};

std::vector<std::string> ChildEnvironment(const EnvOverrides& overrides) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const char* name : kScrubbed) vars.erase(name);
  for (const auto& [name, value] : overrides) {
    if (value) {
      vars[name] = *value;
    } else {
      vars.erase(name);
    }
  }
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

std::unique_ptr<Process> Process::Spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                                        const std::string& stderr_path, const EnvOverrides& env) {
  InstallCleanupHooks();
  Require(!argv.empty(), "Spawn: empty argv");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (stderr_path.empty() || stderr_path == stdout_path) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  // The child starts with no blocked signals and default dispositions,
  // whatever the test runner set up.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings = ChildEnvironment(env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  Require(rc == 0, "posix_spawn " + argv[0] + " failed: " + std::strerror(rc));
  RegisterChild(pid);
  return std::unique_ptr<Process>(new Process(pid));
}

Process::~Process() {
  if (!exit_code_) Kill();
}

void Process::Reaped(int wait_status) {
  UnregisterChild(pid_);
  if (WIFEXITED(wait_status)) {
    exit_code_ = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    exit_code_ = 128 + WTERMSIG(wait_status);
  } else {
    exit_code_ = -1;
  }
}

bool Process::Running() {
  if (exit_code_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    Reaped(st);
    return false;
  }
  if (r < 0 && errno == ECHILD) {  // reaped elsewhere (should not happen)
    UnregisterChild(pid_);
    exit_code_ = -1;
    return false;
  }
  return true;
}

bool Process::WaitExit(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Running()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

int Process::Terminate(std::chrono::milliseconds grace) {
  if (Running()) {
    ::kill(pid_, SIGTERM);
    if (!WaitExit(grace)) Kill();
  }
  return exit_code_.value_or(-1);
}

void Process::Kill() {
  if (exit_code_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  Reaped(st);
}

// ---------------------------------------------------------------- files

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/agentflow-e2e-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  Require(::mkdtemp(buf.data()) != nullptr, std::string("mkdtemp failed: ") + std::strerror(errno));
  path_ = buf.data();
}

TempDir::~TempDir() {
  // For a post-mortem of a flaky failure: keep the logs.
  const char* keep = std::getenv("AGENTFLOW_TEST_KEEP_DIRS");
  if (keep != nullptr && *keep != '\0' && std::string(keep) != "0") {
    std::fprintf(stderr, "kept %s (AGENTFLOW_TEST_KEEP_DIRS)\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& text) const {
  std::string p = File(name);
  std::ofstream out(p, std::ios::binary);
  out << text;
  Require(static_cast<bool>(out), "cannot write " + p);
  return p;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& path, size_t max_bytes) {
  std::string all = ReadFile(path);
  if (all.size() <= max_bytes) return all;
  return "...\n" + all.substr(all.size() - max_bytes);
}

uint16_t PickFreePort() {
  static std::set<uint16_t> handed_out;
  for (int tries = 0; tries < 50; ++tries) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    Require(fd >= 0, "socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      socklen_t len = sizeof addr;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
    }
    ::close(fd);
    if (port != 0 && handed_out.insert(port).second) return port;
  }
  throw HarnessError("could not find a free loopback port");
}

// ---------------------------------------------------------------- HTTP

std::string HttpResponse::Header(const std::string& name) const { return af::http::FindHeader(headers, name); }

std::string HttpResponse::Describe() const {
  if (status == 0) return "transport error: " + error;
  std::string b = body.size() > 2000 ? body.substr(0, 2000) + "..." : body;
  return "HTTP " + std::to_string(status) + ": " + b;
}

HttpResponse Fetch(const std::string& method, const std::string& url, const std::string& body, Headers headers,
                   std::chrono::milliseconds timeout) {
  af::http::ClientRequest req;
  req.method = method;
  req.url = url;
  req.body = body;
  req.timeout = timeout;
  if (!body.empty() && af::http::FindHeader(headers, "Content-Type").empty()) {
    headers.emplace_back("Content-Type", "application/json");
  }
  req.headers = std::move(headers);
  auto res = af::http::FetchSync(req);
  HttpResponse out;
  if (!res.ok()) {
    out.error = res.status().ToString();
    out.body_json = json(json::value_t::discarded);
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  out.headers = res->headers;
  out.body_json = json::parse(out.body, nullptr, /*allow_exceptions=*/false);
  return out;
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout, std::chrono::milliseconds poll) {
  auto deadline = Clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

// ---------------------------------------------------------------- serve

bool Server::TryStart(uint16_t port) {
  ++incarnation_;
  std::string stem = options_.log_dir + "/" + options_.name + "." + std::to_string(incarnation_);
  stdout_path_ = stem + ".out";
  stderr_path_ = stem + ".err";
  all_logs_.push_back(stdout_path_);
  all_logs_.push_back(stderr_path_);
  std::vector<std::string> argv = {AgentflowBinary()};
  if (options_.command.empty()) {
    argv.insert(argv.end(), {"serve", "--data-dir", options_.data_dir});
  } else {
    argv.insert(argv.end(), options_.command.begin(), options_.command.end());
  }
  argv.insert(argv.end(), {"--host", "127.0.0.1", "--port", std::to_string(port)});
  if (options_.demo) {
    argv.push_back("--demo");
    argv.push_back("--demo-port");
    argv.push_back("0");
  }
  proc_ = Process::Spawn(argv, stdout_path_, stderr_path_, options_.env);
  port_ = port;
  bool healthy = WaitUntil(
      [&] {
        if (!proc_->Running()) return true;
        HttpResponse r = Fetch("GET", url() + "/healthz", "", {}, 1000ms);
        return r.status == 200;
      },
      20s, 10ms);
  if (healthy && proc_->Running()) return true;
  proc_->Kill();
  proc_.reset();
  return false;
}

void Server::Start(uint16_t port) {
  Require(!proc_, "Server::Start: already running");
  if (port != 0) {
    Require(TryStart(port), "agentflow " + options_.name + " did not become healthy on port " + std::to_string(port) +
                                "; log:\n" + Tail(stdout_path_) + Tail(stderr_path_));
    return;
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (TryStart(PickFreePort())) return;
  }
  throw HarnessError("agentflow " + options_.name + " did not start; last log:\n" + Tail(stdout_path_) +
                     Tail(stderr_path_));
}

int Server::Stop() {
  if (!proc_) return -1;
  int code = proc_->Terminate(10s);
  proc_.reset();
  return code;
}

void Server::Crash() {
  if (!proc_) return;
  proc_->Kill();  // no-op if it already died
  proc_.reset();
}

void Server::Restart() {
  Crash();
  Start(port_);
}

HttpResponse Server::Get(const std::string& path, std::chrono::milliseconds timeout) const {
  return Fetch("GET", api() + path, "", {}, timeout);
}
HttpResponse Server::Post(const std::string& path, const json& body, Headers headers) const {
  return Fetch("POST", api() + path, body.dump(), std::move(headers));
}
HttpResponse Server::Put(const std::string& path, const json& body) const {
  return Fetch("PUT", api() + path, body.dump());
}
HttpResponse Server::Delete(const std::string& path) const { return Fetch("DELETE", api() + path); }

// ---------------------------------------------------------------- demo agents

void DemoAgents::Start(const std::string& register_url, uint16_t port) {
  Require(!proc_, "DemoAgents::Start: already running");
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = port != 0 ? port : PickFreePort();
    log_path_ = log_dir_ + "/demo-agents." + std::to_string(port_) + "." + std::to_string(++starts_) + ".log";
    proc_ = Process::Spawn({AgentflowBinary(), "demo-agents", "--host", "127.0.0.1", "--port", std::to_string(port_),
                            "--register", register_url},
                           log_path_);
    bool ready = WaitUntil(
        [&] { return !proc_->Running() || ReadFile(log_path_).find("registered with") != std::string::npos; }, 20s,
        10ms);
    if (ready && proc_->Running()) return;
    proc_->Kill();
    proc_.reset();
  }
  throw HarnessError("agentflow demo-agents did not start; log:\n" + Tail(log_path_));
}

void DemoAgents::Stop() {
  if (!proc_) return;
  proc_->Terminate(5s);
  proc_.reset();
}

// ---------------------------------------------------------------- stack

Stack::Stack(EnvOverrides server_env) {
  Server::Options o;
  o.data_dir = dir_.File("data");
  o.log_dir = dir_.path().string();
  o.env = std::move(server_env);
  server_ = std::make_unique<Server>(o);
  agents_ = std::make_unique<DemoAgents>(dir_.path().string());
}

Stack::~Stack() {
  agents_->Stop();
  server_->Stop();
}

void Stack::Start() {
  server_->Start();
  agents_->Start(server_->url());
}

std::string Stack::Logs() const {
  std::string out;
  for (const auto& f : server_->log_files()) out += "---- " + f + "\n" + Tail(f);
  if (!agents_->log_path().empty()) out += "---- " + agents_->log_path() + "\n" + Tail(agents_->log_path());
  return out;
}

namespace {

std::unique_ptr<Stack>& SharedSlot() {
  static std::unique_ptr<Stack> stack;
  return stack;
}

class SharedStackEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { SharedSlot().reset(); }
};

[[maybe_unused]] ::testing::Environment* const kSharedEnv =
    ::testing::AddGlobalTestEnvironment(new SharedStackEnvironment);

}  // namespace

Stack& SharedStack() {
  auto& slot = SharedSlot();
  if (!slot) {
    auto stack = std::make_unique<Stack>();
    stack->Start();
    slot = std::move(stack);
  }
  return *slot;
}

void E2ETest::TearDown() {
  if (HasFailure()) {
    std::string logs;
    try {
      logs = stack().Logs();
    } catch (const std::exception& e) {
      logs = std::string("(no logs: ") + e.what() + ")";
    }
    std::fprintf(stderr, "\n==== logs of the agentflow processes (tails) ====\n%s\n==== end of logs ====\n",
                 logs.c_str());
  }
}

// ---------------------------------------------------------------- CLI

std::string CliResult::Describe() const {
  return "exit code " + std::to_string(exit_code) + "\n--- stdout:\n" + out + "\n--- stderr:\n" + err;
}

CliResult RunCli(const std::vector<std::string>& args, const TempDir& dir, const EnvOverrides& env,
                 std::chrono::milliseconds timeout) {
  static int counter = 0;
  ++counter;
  std::string stem = dir.File("cli." + std::to_string(counter));
  std::vector<std::string> argv = {AgentflowBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto proc = Process::Spawn(argv, stem + ".out", stem + ".err", env);
  CliResult r;
  if (proc->WaitExit(timeout)) {
    r.exit_code = *proc->exit_code();
  } else {
    proc->Kill();
    r.exit_code = -1;
  }
  r.out = ReadFile(stem + ".out");
  r.err = ReadFile(stem + ".err");
  return r;
}

// ---------------------------------------------------------------- API helpers

json CreateWorkflow(const Server& s, const json& plan) {
  HttpResponse r = s.Post("/workflows", plan);
  Require(r.status == 201, "POST /workflows: " + r.Describe());
  return r.body_json;
}

json StartRun(const Server& s, const std::string& workflow, const json& input, const std::string& idempotency_key) {
  Headers h;
  if (!idempotency_key.empty()) h.emplace_back("Idempotency-Key", idempotency_key);
  HttpResponse r = s.Post("/workflows/" + workflow + "/runs", json{{"input", input}}, h);
  Require(r.status == 202, "POST /workflows/" + workflow + "/runs: " + r.Describe());
  return r.body_json;
}

json WaitRunTerminal(const Server& s, const std::string& run_id, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  json last;
  while (true) {
    HttpResponse r = s.Get("/runs/" + run_id + "?wait=5", 15s);
    Require(r.status == 200, "GET /runs/" + run_id + "?wait=5: " + r.Describe());
    last = r.body_json;
    std::string st = last.value("status", "");
    if (st == "COMPLETED" || st == "FAILED" || st == "CANCELLED") return last;
    Require(Clock::now() < deadline, "run " + run_id + " did not finish in time; last state: " + last.dump());
  }
}

json Steps(const Server& s, const std::string& run_id) {
  HttpResponse r = s.Get("/runs/" + run_id + "/steps");
  Require(r.status == 200, "GET /runs/" + run_id + "/steps: " + r.Describe());
  return r.body_json["items"];
}

json WaitForStepRow(const Server& s, const std::string& run_id, const std::function<bool(const json&)>& pred,
                    std::chrono::milliseconds timeout) {
  json found;
  json last;
  bool ok = WaitUntil(
      [&] {
        last = Steps(s, run_id);
        for (const auto& row : last) {
          if (pred(row)) {
            found = row;
            return true;
          }
        }
        return false;
      },
      timeout, 10ms);
  Require(ok, "no matching step row in run " + run_id + "; rows: " + last.dump());
  return found;
}

json RowsOf(const json& steps, const std::string& step_id) {
  json out = json::array();
  for (const auto& row : steps) {
    if (row.value("step_id", "") == step_id) out.push_back(row);
  }
  return out;
}

int64_t TimeOf(const json& row, const char* field) {
  Require(row.contains(field) && row[field].is_string(), std::string("row has no timestamp ") + field + ": " +
                                                              row.dump());
  auto t = af::ParseIso8601(row[field].get<std::string>());
  Require(t.has_value(), std::string("bad timestamp in ") + field + ": " + row.dump());
  return *t;
}

std::string UniqueName(const std::string& prefix) {
  static int counter = 0;
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

}  // namespace af::e2e
