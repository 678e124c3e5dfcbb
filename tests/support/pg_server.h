// PgServer: a throw-away PostgreSQL 15 server for tests, on a free loopback
// port, in a private temporary directory.
//
//   auto pg = PgServer::Shared();            // one server per test process
//   ASSERT_TRUE(pg.ok()) << pg.status().ToString();
//   auto url = (*pg)->NewDatabase();          // an empty database of its own
//   ... OpenPostgresStore({.url = *url}) ...
//
// - Starting takes ~0.5 s: the initdb'd data directory is cached per user
//   (<base>/agentflow-pg15-template-v2-u<uid>, base: TMPDIR for non-root
//   users who set it, else /dev/shm if roomy, else /tmp) and copied; the
//   first start on a machine also runs initdb (~1 s). The server runs with fsync=off: fast, and
//   still durable across a server crash or an immediate shutdown (not
//   across a power loss, which tests do not need).
// - As root, initdb and pg_ctl run as the `postgres` user (runuser), since
//   PostgreSQL refuses to run as root; the directory is made reachable.
// - Every wait is bounded; errors say what failed and end with a hint, with
//   the tail of the server log.
// - No server outlives its test process: the destructor stops it and
//   removes the directory, and a watchdog process (detached, ignoring
//   SIGINT/SIGTERM/SIGHUP) does the same if the process dies without
//   running destructors (crash, abort, SIGKILL from a ctest timeout).
//
// Thread-safety: the database helpers (CreateDatabase, NewDatabase,
// CleanDatabase, Exec, Query) and the accessors may be called from any
// thread; Start, Stop and Restart from one thread at a time, with no other
// call in flight on the same server.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace af::test {

class PgServer {
 public:
  struct Options {
    // url() points at it; created at start unless it is "postgres" (which
    // initdb made; using it saves ~0.15 s per start).
    std::string database = "postgres";
    // Extra server settings, "name=value" each (passed as -c name=value).
    std::vector<std::string> settings;
    // Bound on one start, stop or restart.
    std::chrono::seconds timeout{60};
  };

  // Starts a new server. FailedPrecondition if PostgreSQL 15 is not
  // installed (or, as root, there is no postgres user); Unavailable if it
  // did not come up in time (with the log's tail).
  static Result<std::unique_ptr<PgServer>> Launch(const Options& options);
  static Result<std::unique_ptr<PgServer>> Launch() { return Launch(Options{}); }

  // The process-wide server, started on first use and stopped at exit. A
  // failed start is remembered (and returned again) rather than retried for
  // every test. Do not Stop or Restart it: tests that need to, Launch
  // their own.
  static Result<PgServer*> Shared();

  // Stops the server (immediate shutdown) and removes its directory; does
  // nothing in a forked child of the process that started it.
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  int port() const { return port_; }
  // The database created at start (Options::database).
  const std::string& database() const { return options_.database; }
  // postgresql://postgres@127.0.0.1:PORT/<options.database>
  const std::string& url() const { return url_; }
  // The URL of another database on this server.
  std::string UrlFor(const std::string& database) const;
  // The temporary directory (data/, server.log, the Unix socket).
  const std::string& dir() const { return dir_; }
  std::string log_path() const { return dir_ + "/server.log"; }
  bool running() const { return running_; }
  // The last `max_bytes` of the server log, for failure messages.
  std::string LogTail(size_t max_bytes = 4000) const;

  // Creates an empty database. `name` must be an identifier
  // ([a-z_][a-z0-9_]*).
  Status CreateDatabase(const std::string& name);
  // Creates an empty database with a fresh name ("t1", "t2", ...) and
  // returns its URL.
  Result<std::string> NewDatabase();
  // A database to reuse between tests: created (empty) on the first call;
  // on later calls every table in schema public except schema_migrations
  // is truncated (identities restarted), which is much faster than a new
  // database (~5 ms against ~100 ms). Returns its URL. No connection may hold
  // locks on its tables (close the previous test's store first).
  Result<std::string> CleanDatabase(const std::string& name);
  // Runs SQL (one or more statements, no parameters) in `database`.
  Status Exec(const std::string& database, const std::string& sql);
  // Runs one query and returns its rows as text (NULL as "").
  Result<std::vector<std::vector<std::string>>> Query(const std::string& database, const std::string& sql);

  // Starts a stopped server again, on the same port and data.
  Status Start();
  // fast: clients are disconnected, and the server checkpoints and exits;
  // immediate: the server processes quit at once, as in a crash (recovery
  // runs at the next start).
  Status Stop(bool immediate = false);
  // Stop then start, same port and data; immediate by default,
  // which is what a crash or failover looks like to clients.
  Status Restart(bool immediate = true);

 private:
  PgServer() = default;
  Status Prepare();          // directory, watchdog, data directory
  Status StartOnFreePort();  // picks ports until one works
  std::string ServerOptions() const;
  Status RunPgCtl(const std::vector<std::string>& args, const std::string& what);
  // Signals the postmaster and waits until it has exited.
  Status SignalAndWait(int sig);

  Options options_;
  std::string bin_dir_;
  std::string dir_;
  int port_ = 0;
  std::string url_;
  bool running_ = false;
  int watchdog_fd_ = -1;  // write end of the watchdog's pipe
  int owner_pid_ = 0;     // the process that started the server

  std::mutex mu_;  // guards databases_ and next_db_
  std::set<std::string> databases_;
  int next_db_ = 0;
};

}  // namespace af::test
