// DiskPg: a throw-away PostgreSQL 15 for the benchmarks, with its data
// directory (and so its WAL) on a disk filesystem and the durability
// settings of a production server: fsync=on, synchronous_commit=on,
// full_page_writes=on.
//
// Why not tests/support PgServer: as root it puts the data directory in
// /dev/shm (tmpfs), where fsync costs nothing, and it runs with fsync=off.
// Both are right for tests and wrong for commit-latency figures.
//
// - As root, initdb/pg_ctl run as the `postgres` user (runuser).
// - Binds 127.0.0.1 on a free port; the Unix socket is in the private dir.
// - Every command is bounded in time; Stop() (and the destructor) stop the
//   server (fast) and remove the directory. A watchdog shell (own process
//   group, ignoring INT/TERM/HUP) does the same if this process dies first:
//   it waits for EOF on a pipe only this process holds.
//
// Thread-safety: none; one thread starts and stops it.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace af::bench {

class DiskPg {
 public:
  struct Options {
    std::string base_dir = "/var/tmp";  // must be on a disk filesystem (checked: not tmpfs)
    std::vector<std::string> settings;  // extra -c name=value
  };
  static Result<std::unique_ptr<DiskPg>> Start(const Options& options);
  ~DiskPg();
  DiskPg(const DiskPg&) = delete;
  DiskPg& operator=(const DiskPg&) = delete;

  void Stop();
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string log_path() const { return dir_ + "/server.log"; }
  // postgresql://postgres@127.0.0.1:PORT/<db>
  std::string UrlFor(const std::string& db) const;
  // The postmaster's pid (from postmaster.pid), 0 if unknown.
  pid_t postmaster_pid() const;
  // "ext4 on /dev/vda" — where the WAL lives, for the report.
  const std::string& filesystem() const { return filesystem_; }
  // The settings the server runs with ("fsync=on synchronous_commit=on ...").
  const std::string& settings_text() const { return settings_text_; }

 private:
  DiskPg() = default;
  std::string dir_;
  int port_ = 0;
  int watchdog_fd_ = -1;
  pid_t watchdog_pid_ = 0;
  bool running_ = false;
  std::string filesystem_;
  std::string settings_text_;
};

// Runs one SQL command (no result rows wanted) on `url`.
Status PgExec(const std::string& url, const std::string& sql);
// One query; rows as text.
Result<std::vector<std::vector<std::string>>> PgQuery(const std::string& url, const std::string& sql);

}  // namespace af::bench
