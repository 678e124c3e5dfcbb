#include "bench/pg_disk.h"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <libpq-fe.h>

#include "e2e/harness.h"

extern char** environ;

namespace af::bench {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";
constexpr long kTmpfsMagic = 0x01021994;

bool IsRoot() { return ::geteuid() == 0; }

std::vector<std::string> AsServerUser(std::vector<std::string> argv) {
  if (!IsRoot()) return argv;
  std::vector<std::string> out = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// Runs argv to completion (bounded); output to `log`. Returns the exit code.
Result<int> Run(const std::vector<std::string>& argv, const std::string& log, std::chrono::milliseconds timeout) {
  auto proc = e2e::Process::Spawn(argv, log);
  if (!proc->WaitExit(timeout)) {
    proc->Kill();
    return Status::DeadlineExceeded(argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms");
  }
  return proc->exit_code().value_or(-1);
}

std::string Tail(const std::string& path) { return e2e::Tail(path, 2000); }

// "ext4 on /dev/vda" for the mount holding `path`.
std::string DescribeFilesystem(const std::string& path) {
  std::ifstream mounts("/proc/mounts");
  std::string dev, mnt, type, rest, best_dev, best_type;
  size_t best_len = 0;
  std::string canon = fs::weakly_canonical(path).string();
  while (mounts >> dev >> mnt >> type && std::getline(mounts, rest)) {
    if (canon.rfind(mnt, 0) == 0 && mnt.size() >= best_len) {
      best_len = mnt.size();
      best_dev = dev;
      best_type = type;
    }
  }
  return best_type + " on " + best_dev;
}

}  // namespace

Result<std::unique_ptr<DiskPg>> DiskPg::Start(const Options& options) {
  if (::access((std::string(kBinDir) + "/pg_ctl").c_str(), X_OK) != 0) {
    return Status::FailedPrecondition(std::string("PostgreSQL 15 is not installed (") + kBinDir +
                                      "/pg_ctl). Hint: scripts/install-deps.sh --test");
  }
  struct statfs sfs {};
  if (::statfs(options.base_dir.c_str(), &sfs) != 0) {
    return Status::InvalidArgument("cannot stat " + options.base_dir + ": " + std::strerror(errno));
  }
  if (static_cast<long>(sfs.f_type) == kTmpfsMagic) {
    return Status::InvalidArgument(options.base_dir +
                                   " is a tmpfs: fsync would cost nothing there. Hint: pass a directory on disk");
  }
  std::unique_ptr<DiskPg> pg(new DiskPg());
  std::string tmpl = options.base_dir + "/af-bench-pg-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return Status::Internal("mkdtemp " + tmpl + ": " + std::strerror(errno));
  pg->dir_ = tmpl;
  ::chmod(pg->dir_.c_str(), 0755);
  if (IsRoot()) {
    struct passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) return Status::FailedPrecondition("no 'postgres' user to run the server as");
    if (::chown(pg->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Internal("chown " + pg->dir_ + ": " + std::strerror(errno));
    }
  }
  pg->filesystem_ = DescribeFilesystem(pg->dir_);

  // The watchdog: blocks reading a pipe whose only writer is this process.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::Internal(std::string("pipe: ") + std::strerror(errno));
  const std::string script =
      "trap '' INT TERM HUP; cat >/dev/null; "
      "if [ -f \"$1/data/postmaster.pid\" ]; then $2 \"$3/pg_ctl\" -D \"$1/data\" stop -m immediate -t 20 "
      ">/dev/null 2>&1; fi; rm -rf \"$1\"";
  std::string prefix = IsRoot() ? "/usr/sbin/runuser -u postgres --" : "";
  std::vector<std::string> wargv = {"/bin/sh", "-c", script, "af-bench-pg-watchdog", pg->dir_, prefix, kBinDir};
  std::vector<char*> cargv;
  for (auto& a : wargv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  pid_t wpid = 0;
  int rc = posix_spawn(&wpid, "/bin/sh", &fa, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    return Status::Internal(std::string("watchdog spawn: ") + std::strerror(rc));
  }
  pg->watchdog_fd_ = fds[1];
  pg->watchdog_pid_ = wpid;

  const std::string cmdlog = pg->dir_ + "/commands.log";
  auto init = Run(AsServerUser({std::string(kBinDir) + "/initdb", "-D", pg->dir_ + "/data", "-U", "postgres", "-A",
                                "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"}),
                  cmdlog, 180s);
  if (!init.ok()) return init.status();
  if (*init != 0) return Status::Internal("initdb failed:\n" + Tail(cmdlog));

  std::string settings = "fsync=on synchronous_commit=on full_page_writes=on wal_sync_method=fdatasync "
                         "max_connections=200 shared_buffers=128MB";
  for (const auto& s : options.settings) settings += " " + s;
  pg->settings_text_ = settings;
  for (int attempt = 0; attempt < 5; ++attempt) {
    pg->port_ = e2e::PickFreePort();
    std::string o = "-p " + std::to_string(pg->port_) + " -k " + pg->dir_ +
                    " -c listen_addresses=127.0.0.1 -c log_min_messages=warning";
    std::istringstream in(settings);
    for (std::string kv; in >> kv;) o += " -c " + kv;
    auto started = Run(AsServerUser({std::string(kBinDir) + "/pg_ctl", "-D", pg->dir_ + "/data", "-l",
                                     pg->log_path(), "-w", "-t", "60", "-o", o, "start"}),
                       cmdlog, 90s);
    if (!started.ok()) return started.status();
    if (*started == 0) {
      pg->running_ = true;
      return pg;
    }
    if (Tail(pg->log_path()).find("could not bind") == std::string::npos) {
      return Status::Unavailable("pg_ctl start failed:\n" + Tail(cmdlog) + "\n" + Tail(pg->log_path()));
    }
  }
  return Status::Unavailable("PostgreSQL found no free port:\n" + Tail(pg->log_path()));
}

std::string DiskPg::UrlFor(const std::string& db) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

pid_t DiskPg::postmaster_pid() const {
  std::ifstream f(dir_ + "/data/postmaster.pid");
  long pid = 0;
  if (f >> pid) return static_cast<pid_t>(pid);
  return 0;
}

void DiskPg::Stop() {
  if (running_) {
    auto r = Run(AsServerUser({std::string(kBinDir) + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-t", "30",
                               "stop"}),
                 "/dev/null", 45s);
    (void)r;
    running_ = false;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  if (watchdog_fd_ >= 0) {
    ::close(watchdog_fd_);  // the watchdog finds nothing left and exits
    watchdog_fd_ = -1;
    int status = 0;
    ::waitpid(watchdog_pid_, &status, 0);
  }
}

DiskPg::~DiskPg() { Stop(); }

namespace {

struct Conn {
  PGconn* c = nullptr;
  ~Conn() {
    if (c) PQfinish(c);
  }
};

}  // namespace

Result<std::vector<std::vector<std::string>>> PgQuery(const std::string& url, const std::string& sql) {
  Conn conn;
  conn.c = PQconnectdb(url.c_str());
  if (PQstatus(conn.c) != CONNECTION_OK) return Status::Unavailable(std::string("connect: ") + PQerrorMessage(conn.c));
  PGresult* r = PQexec(conn.c, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string err = PQresultErrorMessage(r);
    PQclear(r);
    return Status::Internal(sql + ": " + err);
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < PQntuples(r); ++i) {
    std::vector<std::string> row;
    for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetvalue(r, i, j));
    rows.push_back(std::move(row));
  }
  PQclear(r);
  return rows;
}

Status PgExec(const std::string& url, const std::string& sql) {
  auto r = PgQuery(url, sql);
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace af::bench
