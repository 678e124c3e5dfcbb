#include "support/pg_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace af::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr char kDefaultBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr char kInstallHint[] = "Hint: run scripts/install-deps.sh --test";

std::string BinDir() {
  const char* env = std::getenv("AF_TEST_PG_BINDIR");  // another PostgreSQL build
  return env && *env ? env : kDefaultBinDir;
}

bool IsRoot() { return ::geteuid() == 0; }

struct ServerUser {
  uid_t uid;
  gid_t gid;
};

// As root the server runs as `postgres`; otherwise as ourselves.
Result<ServerUser> TheServerUser() {
  if (!IsRoot()) return ServerUser{::geteuid(), ::getegid()};
  struct passwd* pw = ::getpwnam("postgres");
  if (!pw) {
    return Status::FailedPrecondition(
        "running as root, but there is no 'postgres' user to run PostgreSQL as (it refuses to run as root). "
        "Hint: install postgresql-15 (scripts/install-deps.sh --test), or run the tests as a normal user");
  }
  return ServerUser{pw->pw_uid, pw->pw_gid};
}

Status ChownToServer(const std::string& path) {
  if (!IsRoot()) return Status::Ok();
  auto user = TheServerUser();
  if (!user.ok()) return user.status();
  if (::chown(path.c_str(), user->uid, user->gid) != 0) {
    return Status::Internal("chown " + path + " to postgres: " + std::strerror(errno));
  }
  return Status::Ok();
}

// The bytes of `path` from `offset` on.
std::string ReadFrom(const std::string& path, std::uintmax_t offset) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string ReadTail(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff from =
      size > static_cast<std::streamoff>(max_bytes) ? size - static_cast<std::streamoff>(max_bytes) : 0;
  in.seekg(from);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The environment of our children, without PG* variables (PGDATA, PGPORT,
// PGOPTIONS, ...) that would point the tools elsewhere.
std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, "PG", 2) == 0) continue;
    out.emplace_back(*e);
  }
  return out;
}

// Runs argv[0] (a path) with stdin from /dev/null and stdout/stderr appended
// to `output_path`; kills it after `timeout`. Returns its exit code.
Result<int> RunCommand(const std::vector<std::string>& argv, const std::string& output_path,
                       std::chrono::milliseconds timeout) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // Nothing else of ours: the postmaster (started through pg_ctl) would keep
  // any inherited descriptor open, e.g. the pipe ctest reads our output from.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
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
  std::vector<std::string> env = ChildEnvironment();
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::Internal("cannot run " + argv[0] + ": " + std::strerror(rc));

  auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
    if (r < 0 && errno != EINTR) return Status::Internal("waitpid " + argv[0] + ": " + std::strerror(errno));
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      return Status::DeadlineExceeded(argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(5ms);
  }
}

// Runs a PostgreSQL tool as the server user.
std::vector<std::string> AsServerUser(std::vector<std::string> argv) {
  if (!IsRoot()) return argv;
  std::string runuser = fs::exists("/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser";
  std::vector<std::string> out = {runuser, "-u", "postgres", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// A port nobody listens on right now (another process may still take it
// before the server binds; StartOnFreePort retries).
Result<int> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Internal(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    return Status::Internal(std::string("finding a free port: ") + std::strerror(e));
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

// The directory temporary servers (and the template) live in: TMPDIR if the
// user set one (and it is short enough for the Unix socket path, ~100 bytes),
// else /dev/shm when it is a roomy tmpfs (copying and writing the data
// directory there costs half as much as on disk), else /tmp. As root it must
// be reachable by `postgres`, so never TMPDIR.
std::string TempBase() {
  const char* env = std::getenv("TMPDIR");
  if (!IsRoot() && env && *env && std::strlen(env) < 60) return env;
  struct statvfs vfs {};
  if (::access("/dev/shm", W_OK | X_OK) == 0 && ::statvfs("/dev/shm", &vfs) == 0 &&
      static_cast<unsigned long long>(vfs.f_bavail) * vfs.f_frsize >= (1ull << 30)) {
    return "/dev/shm";
  }
  return "/tmp";
}

Result<std::string> MakeTempDir(const std::string& prefix) {
  std::string tmpl = prefix + "XXXXXX";
  if (!::mkdtemp(tmpl.data())) return Status::Internal("mkdtemp " + tmpl + ": " + std::strerror(errno));
  if (::chmod(tmpl.c_str(), 0755) != 0) return Status::Internal("chmod " + tmpl + ": " + std::strerror(errno));
  return tmpl;
}

// A safe token for the shell command line pg_ctl builds from -o.
bool IsShellSafe(const std::string& s) {
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && !std::strchr("/_.=,:-", c)) return false;
  }
  return !s.empty();
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 63 || !(std::islower(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s) {
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

// ---- the cached initdb result

// Bump the version when the initdb arguments change.
std::string TemplateDir() { return TempBase() + "/agentflow-pg15-template-v2-u" + std::to_string(::geteuid()); }

// Ours (not planted by another user), not writable by others, complete.
bool TemplateUsable(const std::string& dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) return false;
  std::ifstream version(dir + "/data/PG_VERSION");
  std::string v;
  return version && std::getline(version, v) && v == "15";
}

Status InitDb(const std::string& bin_dir, const std::string& data, const std::string& log) {
  auto rc = RunCommand(AsServerUser({bin_dir + "/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                                     "--locale=C.UTF-8", "--no-sync", "--no-instructions", "--wal-segsize=1"}),
                       log, 120s);
  if (!rc.ok()) return rc.status();
  if (*rc != 0) {
    return Status::Internal("initdb failed (exit " + std::to_string(*rc) + "):\n" + ReadTail(log, 3000) +
                            "\nHint: check that the directory is writable by the server user");
  }
  return Status::Ok();
}

// Makes `data` an empty directory owned by the server user, for initdb.
Status MakeDataDir(const std::string& data) {
  if (::mkdir(data.c_str(), 0700) != 0) return Status::Internal("mkdir " + data + ": " + std::strerror(errno));
  return ChownToServer(data);
}

// Returns a directory holding a freshly initdb'd data/, building it (once
// per user; concurrent builders race harmlessly through rename) if needed.
Result<std::string> EnsureTemplate(const std::string& bin_dir) {
  std::string dir = TemplateDir();
  if (TemplateUsable(dir)) return dir;
  auto tmp = MakeTempDir(dir + ".tmp-");
  if (!tmp.ok()) return tmp.status();
  Status s = MakeDataDir(*tmp + "/data");
  if (s.ok()) s = InitDb(bin_dir, *tmp + "/data", *tmp + "/initdb.log");
  if (s.ok() && ::rename(tmp->c_str(), dir.c_str()) == 0) return dir;
  std::error_code ec;
  fs::remove_all(*tmp, ec);
  if (!s.ok()) return s;
  if (TemplateUsable(dir)) return dir;  // another process won the race
  return Status::Internal("cannot create the PostgreSQL template directory " + dir +
                          ". Hint: remove it if it is stale or not yours");
}

// ---- the watchdog

// Reads its stdin (fd 3 here) until EOF: if the line "done" did not come
// first, the test process died without cleaning up, so it stops the
// server (SIGQUIT = immediate shutdown, then SIGKILL) and removes the
// directory. The subshell is detached (its parent exits at once) so a
// process-tree kill of the test does not take it along, and it ignores the
// terminal's signals.
constexpr char kWatchdogScript[] =
    "trap '' INT TERM HUP QUIT PIPE\n"
    "(\n"
    "  read -r line <&3\n"
    "  if [ \"$line\" != done ]; then\n"
    "    pid=$(head -n 1 \"$1/postmaster.pid\" 2>/dev/null)\n"
    "    if [ -n \"$pid\" ] && [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = postgres ]; then\n"
    "      kill -QUIT \"$pid\" 2>/dev/null\n"
    "      i=0\n"
    "      while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n"
    "      kill -KILL \"$pid\" 2>/dev/null\n"
    "    fi\n"
    "    rm -rf \"$2\"\n"
    "  fi\n"
    ") &\n";

Result<int> StartWatchdog(const std::string& data, const std::string& dir) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Internal(std::string("pipe2: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 3);
  posix_spawn_file_actions_addclosefrom_np(&actions, 4);
  std::vector<std::string> argv = {"/bin/sh", "-c", kWatchdogScript, "pg-watchdog", data, dir};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    return Status::Internal(std::string("cannot start the watchdog shell: ") + std::strerror(rc));
  }
  int st = 0;  // the outer shell exits as soon as the subshell is detached
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return fds[1];
}

// ---- libpq

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;
struct ResultCloser {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultCloser>;

void DropNotice(void*, const char*) {}

Result<ConnPtr> ConnectTo(int port, const std::string& database) {
  std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port) + " user=postgres dbname=" + database +
                         " connect_timeout=10 application_name=pg_server";
  ConnPtr conn(PQconnectdb(conninfo.c_str()));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect to the test server (" + conninfo +
                               "): " + (conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  PQsetNoticeProcessor(conn.get(), DropNotice, nullptr);
  return conn;
}

}  // namespace

// ---------------------------------------------------------------- lifecycle

Result<std::unique_ptr<PgServer>> PgServer::Launch(const Options& options) {
  std::unique_ptr<PgServer> server(new PgServer());
  server->owner_pid_ = ::getpid();
  server->options_ = options;
  server->bin_dir_ = BinDir();
  for (const std::string& s : options.settings) {
    if (!IsShellSafe(s) || s.find('=') == std::string::npos) {
      return Status::InvalidArgument("PgServer setting '" + s + "' is not name=value of [A-Za-z0-9/_.,:-]");
    }
  }
  if (!IsIdentifier(options.database)) {
    return Status::InvalidArgument("PgServer database name '" + options.database + "' is not an identifier");
  }
  AF_RETURN_IF_ERROR(server->Prepare());
  AF_RETURN_IF_ERROR(server->StartOnFreePort());
  if (options.database == "postgres") {  // exists already
    std::lock_guard<std::mutex> lock(server->mu_);
    server->databases_.insert(options.database);
  } else {
    AF_RETURN_IF_ERROR(server->CreateDatabase(options.database));
  }
  return server;
}

Result<PgServer*> PgServer::Shared() {
  static std::mutex mu;
  static std::unique_ptr<PgServer> server;  // destroyed (stopped) at exit
  static Status failure;
  std::lock_guard<std::mutex> lock(mu);
  if (server) return server.get();
  if (!failure.ok()) return failure;
  auto started = Launch();
  if (!started.ok()) {
    failure = started.status();
    return failure;
  }
  server = std::move(started).value();
  return server.get();
}

Status PgServer::Prepare() {
  for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
    std::string path = bin_dir_ + "/" + tool;
    if (::access(path.c_str(), X_OK) != 0) {
      return Status::FailedPrecondition("PostgreSQL 15 is not installed: " + path + " is missing. " + kInstallHint);
    }
  }
  if (IsRoot()) {
    auto user = TheServerUser();
    if (!user.ok()) return user.status();
  }
  auto dir = MakeTempDir(TempBase() + "/af-pg-");
  if (!dir.ok()) return dir.status();
  dir_ = *dir;
  if (!IsShellSafe(dir_)) {
    return Status::FailedPrecondition("temporary directory " + dir_ +
                                      " has characters pg_ctl cannot pass. "
                                      "Hint: set TMPDIR to a plain path");
  }
  AF_RETURN_IF_ERROR(ChownToServer(dir_));  // the log and the socket go here
  auto watchdog = StartWatchdog(dir_ + "/data", dir_);
  if (!watchdog.ok()) return watchdog.status();
  watchdog_fd_ = *watchdog;

  auto tmpl = EnsureTemplate(bin_dir_);
  if (tmpl.ok()) {
    auto rc = RunCommand({"/bin/cp", "-a", *tmpl + "/data", dir_ + "/data"}, dir_ + "/commands.log", 60s);
    if (rc.ok() && *rc == 0) return Status::Ok();
    std::error_code ec;
    fs::remove_all(dir_ + "/data", ec);  // fall back to initdb below
  }
  AF_RETURN_IF_ERROR(MakeDataDir(dir_ + "/data"));
  return InitDb(bin_dir_, dir_ + "/data", dir_ + "/commands.log");
}

std::string PgServer::ServerOptions() const {
  std::string o = "-p " + std::to_string(port_) + " -k " + dir_ +
                  " -c listen_addresses=127.0.0.1"
                  " -c fsync=off -c full_page_writes=off"  // durable across server crashes, not power loss
                  " -c max_connections=200 -c shared_buffers=32MB"
                  " -c log_min_messages=warning -c log_min_error_statement=error";
  for (const std::string& s : options_.settings) o += " -c " + s;
  return o;
}

Status PgServer::RunPgCtl(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> argv = {bin_dir_ + "/pg_ctl", "-D", dir_ + "/data"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out = dir_ + "/commands.log";
  auto rc = RunCommand(AsServerUser(argv), out,
                       std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout) + 10s);
  if (!rc.ok()) return Status::Unavailable("pg_ctl " + what + ": " + rc.status().message() + "\n" + LogTail());
  if (*rc != 0) {
    return Status::Unavailable("pg_ctl " + what + " failed (exit " + std::to_string(*rc) + "):\n" +
                               ReadTail(out, 1500) + "\nserver log:\n" + LogTail() + "\nHint: see " + log_path());
  }
  return Status::Ok();
}

Status PgServer::StartOnFreePort() {
  Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto port = FreePort();
    if (!port.ok()) return port.status();
    port_ = *port;
    url_ = UrlFor(options_.database);
    last = Start();
    if (last.ok()) return last;
    // Someone took the port between our probe and the server's bind: retry.
    if (LogTail().find("could not bind") == std::string::npos) return last;
  }
  return last;
}

Status PgServer::Start() {
  std::string log = log_path();
  std::error_code ec;
  auto log_offset = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
  // -W: pg_ctl waits by polling every 100 ms; pinging every 10 ms is faster.
  AF_RETURN_IF_ERROR(RunPgCtl({"start", "-W", "-l", log, "-o", ServerOptions()}, "start"));
  std::string conninfo =
      "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=postgres connect_timeout=2";
  auto deadline = Clock::now() + options_.timeout;
  for (;;) {
    if (PQping(conninfo.c_str()) == PQPING_OK) {
      running_ = true;
      return Status::Ok();
    }
    // A FATAL or PANIC line other than "starting up" (our own pings) means
    // the server gave up, e.g. on a port someone else took.
    std::string fresh = ReadFrom(log, log_offset);
    std::istringstream lines(fresh);
    for (std::string line; std::getline(lines, line);) {
      bool fatal = line.find("FATAL:") != std::string::npos || line.find("PANIC:") != std::string::npos;
      if (fatal && line.find("starting up") == std::string::npos &&
          line.find("not yet accepting connections") == std::string::npos) {
        (void)SignalAndWait(SIGQUIT);
        return Status::Unavailable("PostgreSQL did not start:\n" + fresh + "\nHint: see " + log);
      }
    }
    if (Clock::now() >= deadline) {
      (void)SignalAndWait(SIGQUIT);
      return Status::Unavailable("PostgreSQL did not accept connections within " +
                                 std::to_string(options_.timeout.count()) + " s:\n" + LogTail() + "\nHint: see " + log);
    }
    std::this_thread::sleep_for(10ms);
  }
}

Status PgServer::SignalAndWait(int sig) {
  std::string pidfile = dir_ + "/data/postmaster.pid";
  pid_t pid = 0;
  {
    std::ifstream in(pidfile);
    if (!(in >> pid) || pid <= 0) return Status::Ok();  // not running
  }
  if (::kill(pid, sig) != 0) return Status::Ok();  // already gone
  // The postmaster removes its pid file last, after all its children exited
  // (what pg_ctl stop waits for, too).
  auto deadline = Clock::now() + options_.timeout;
  while (fs::exists(pidfile)) {
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      return Status::Unavailable("PostgreSQL (pid " + std::to_string(pid) + ") did not stop within " +
                                 std::to_string(options_.timeout.count()) + " s; killed it. Hint: see " + log_path());
    }
    std::this_thread::sleep_for(5ms);
  }
  return Status::Ok();
}

Status PgServer::Stop(bool immediate) {
  if (!running_) return Status::Ok();
  running_ = false;
  // SIGQUIT: immediate shutdown; SIGINT: fast shutdown (as pg_ctl -m sends).
  return SignalAndWait(immediate ? SIGQUIT : SIGINT);
}

Status PgServer::Restart(bool immediate) {
  AF_RETURN_IF_ERROR(Stop(immediate));
  return Start();
}

PgServer::~PgServer() {
  // A forked child that exits normally runs this destructor too: the server
  // is its parent's to stop.
  if (::getpid() != owner_pid_) return;
  if (running_) (void)Stop(/*immediate=*/true);
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  if (watchdog_fd_ >= 0) {
    // Tell the watchdog all is clean; it exits on the following EOF.
    ssize_t n = ::write(watchdog_fd_, "done\n", 5);
    (void)n;
    ::close(watchdog_fd_);
  }
}

std::string PgServer::LogTail(size_t max_bytes) const { return ReadTail(log_path(), max_bytes); }

std::string PgServer::UrlFor(const std::string& database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database;
}

// ---------------------------------------------------------------- databases

Status PgServer::Exec(const std::string& database, const std::string& sql) {
  auto conn = ConnectTo(port_, database);
  if (!conn.ok()) return conn.status();
  ResultPtr r(PQexec(conn->get(), sql.c_str()));
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return Status::Internal("SQL failed in database " + database + ": " + PQerrorMessage(conn->get()) + "\n" + sql);
  }
  return Status::Ok();
}

Result<std::vector<std::vector<std::string>>> PgServer::Query(const std::string& database, const std::string& sql) {
  auto conn = ConnectTo(port_, database);
  if (!conn.ok()) return conn.status();
  ResultPtr r(PQexec(conn->get(), sql.c_str()));
  if (!r || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
    return Status::Internal("query failed in database " + database + ": " + PQerrorMessage(conn->get()) + "\n" + sql);
  }
  std::vector<std::vector<std::string>> rows(static_cast<size_t>(PQntuples(r.get())));
  for (int i = 0; i < PQntuples(r.get()); ++i) {
    for (int j = 0; j < PQnfields(r.get()); ++j) {
      rows[i].emplace_back(PQgetvalue(r.get(), i, j), static_cast<size_t>(PQgetlength(r.get(), i, j)));
    }
  }
  return rows;
}

Status PgServer::CreateDatabase(const std::string& name) {
  if (!IsIdentifier(name)) return Status::InvalidArgument("database name '" + name + "' is not an identifier");
  AF_RETURN_IF_ERROR(Exec("postgres", "CREATE DATABASE " + name));
  std::lock_guard<std::mutex> lock(mu_);
  databases_.insert(name);
  return Status::Ok();
}

Result<std::string> PgServer::NewDatabase() {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    name = "t" + std::to_string(++next_db_);
  }
  AF_RETURN_IF_ERROR(CreateDatabase(name));
  return UrlFor(name);
}

Result<std::string> PgServer::CleanDatabase(const std::string& name) {
  bool exists;
  {
    std::lock_guard<std::mutex> lock(mu_);
    exists = databases_.count(name) > 0;
  }
  if (!exists) {
    AF_RETURN_IF_ERROR(CreateDatabase(name));
    return UrlFor(name);
  }
  AF_RETURN_IF_ERROR(Exec(name,
                          "SET lock_timeout = '10s';\n"
                          "DO $$DECLARE t text; BEGIN\n"
                          "  SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO t\n"
                          "    FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations';\n"
                          "  IF t IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' RESTART IDENTITY CASCADE'; END IF;\n"
                          "END$$;"));
  return UrlFor(name);
}

}  // namespace af::test
