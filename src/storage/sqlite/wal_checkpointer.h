// WalCheckpointer: takes a SQLite WAL database's checkpoints out of its
// commits.
//
// SQLite checkpoints in the commit that takes the WAL past
// wal_autocheckpoint pages: that commit also copies the WAL's pages into the
// database file and syncs both files, and every write waiting behind it
// waits too (in serve, the slowest 1 % of triggers were these commits:
// docs/benchmarks.md item 33). With a WalCheckpointer a commit past
// `background_pages` only wakes its thread, which checkpoints PASSIVE on a
// connection of its own while the writer goes on.
//
// The WAL starts over from its first frame only when a write begins while
// every frame is copied; a writer that never pauses may not leave the thread
// such a moment, so a commit that takes the WAL past `inline_pages` still
// checkpoints itself as SQLite would, after the thread's checkpoint if one
// runs (copying only what the thread has not copied). The WAL therefore
// stays under `inline_pages` pages plus a few commits' (one, unless a
// commit begins while the thread's checkpoint holds the WAL's locks: it
// cannot start the WAL over then and appends; and while no other process's
// reader holds an old snapshot, as with SQLite's own).
//
// Durability is SQLite's own: a checkpoint syncs the WAL before it copies
// and the database file after, whichever connection runs it.
//
// The writer needs a busy handler (sqlite3_busy_timeout), as any SQLite
// connection that shares its file: when the thread's connection reads the
// WAL-index header while a commit is rewriting it, SQLite has that
// connection take the WAL's write lock for an instant to read it again, and
// a write beginning in that instant gets SQLITE_BUSY (seen under TSan by a
// test's writer without one: 2 of 3,000 commits failed).
//
// Thread-safety: Start and the destructor on one thread; the hook runs in
// the writer connection's commits, on whatever thread commits.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

struct sqlite3;

namespace af::sqlite {

struct WalCheckpointerOptions {
  int background_pages = 1000;  // SQLite's own wal_autocheckpoint
  int inline_pages = 8000;      // ~32 MB of 4 kB pages
  bool full_sync = false;       // the thread's connection: synchronous=FULL (else NORMAL), as the writer's
  // The thread's connection waits this long for a lock at start (another
  // process may be opening the database: switching it to WAL, migrating
  // it). Its PASSIVE checkpoints never wait.
  int busy_timeout_ms = 5000;
  // Tests: runs on the thread before each of its checkpoints.
  std::function<void()> before_checkpoint;
};

class WalCheckpointer {
 public:
  struct Stats {
    uint64_t background = 0;  // checkpoints the thread ran
    uint64_t in_commit = 0;   // checkpoints a commit ran itself (past inline_pages)
  };

  // `writer` is a connection to a database file in WAL mode; it must outlive
  // the checkpointer. Replaces its wal_autocheckpoint by this.
  static Result<std::unique_ptr<WalCheckpointer>> Start(sqlite3* writer, WalCheckpointerOptions options);
  // Removes the hook (the writer then checkpoints only when it closes) and
  // stops the thread after the checkpoint it may be running.
  ~WalCheckpointer();

  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  Stats stats() const;

 private:
  WalCheckpointer(sqlite3* writer, sqlite3* own, WalCheckpointerOptions options);
  static int OnCommit(void* self, sqlite3* db, const char* name, int pages);
  void Loop();

  sqlite3* const writer_;
  sqlite3* const own_;  // used by the thread only
  const WalCheckpointerOptions options_;
  std::atomic<bool> requested_{false};
  std::atomic<uint64_t> background_{0};
  std::atomic<uint64_t> in_commit_{0};
  std::mutex checkpoint_mu_;  // one checkpoint at a time: the thread's or a commit's
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace af::sqlite
