#include "storage/sqlite/wal_checkpointer.h"

#include <sqlite3.h>

#include <utility>

#include "common/log.h"

namespace af::sqlite {

Result<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(sqlite3* writer, WalCheckpointerOptions options) {
  const char* file = sqlite3_db_filename(writer, "main");
  if (file == nullptr || *file == '\0') {
    return Status::InvalidArgument("WAL checkpointer: the database has no file (in memory or temporary)");
  }
  sqlite3* own = nullptr;
  int rc = sqlite3_open_v2(file, &own, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = own ? sqlite3_errmsg(own) : sqlite3_errstr(rc);
    sqlite3_close_v2(own);
    return Status::Unavailable("WAL checkpointer: cannot open '" + std::string(file) + "': " + msg);
  }
  sqlite3_busy_timeout(own, options.busy_timeout_ms);
  const char* sync = options.full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
  rc = sqlite3_exec(own, sync, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(own);
    sqlite3_close_v2(own);
    return Status::Unavailable("WAL checkpointer: " + msg);
  }
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(writer, own, std::move(options)));
  sqlite3_wal_hook(writer, &WalCheckpointer::OnCommit, c.get());
  c->thread_ = std::thread([p = c.get()] { p->Loop(); });
  return c;
}

WalCheckpointer::WalCheckpointer(sqlite3* writer, sqlite3* own, WalCheckpointerOptions options)
    : writer_(writer), own_(own), options_(std::move(options)) {}

WalCheckpointer::~WalCheckpointer() {
  sqlite3_wal_hook(writer_, nullptr, nullptr);
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  sqlite3_close_v2(own_);
}

WalCheckpointer::Stats WalCheckpointer::stats() const { return Stats{background_.load(), in_commit_.load()}; }

// SQLite calls this after each commit of the writer with the WAL's size in
// pages. It must not fail the commit, so it answers SQLITE_OK whatever happens.
int WalCheckpointer::OnCommit(void* self, sqlite3* db, const char* name, int pages) {
  auto* c = static_cast<WalCheckpointer*>(self);
  if (pages >= c->options_.inline_pages) {
    // After the thread's checkpoint, if one runs: it has copied most frames.
    std::lock_guard ck(c->checkpoint_mu_);
    if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) == SQLITE_OK) {
      c->in_commit_.fetch_add(1, std::memory_order_relaxed);
    }
  } else if (pages >= c->options_.background_pages && !c->requested_.exchange(true)) {
    { std::lock_guard lk(c->mu_); }  // the thread is waiting, or sees requested_ before it waits
    c->cv_.notify_one();
  }
  return SQLITE_OK;
}

void WalCheckpointer::Loop() {
  int last_rc = SQLITE_OK;
  std::unique_lock lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || requested_.load(); });
    if (stop_) return;
    lk.unlock();
    // Cleared before the checkpoint: a commit during it asks for another,
    // which copies what that commit added.
    requested_.store(false);
    if (options_.before_checkpoint) options_.before_checkpoint();
    int rc = SQLITE_OK;
    {
      std::lock_guard ck(checkpoint_mu_);
      rc = sqlite3_wal_checkpoint_v2(own_, "main", SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    }
    if (rc == SQLITE_OK) {
      background_.fetch_add(1, std::memory_order_relaxed);
    } else if (rc != SQLITE_BUSY && rc != last_rc) {
      // SQLITE_BUSY: another process's checkpoint runs.
      log::Warn(std::string("SQLite WAL checkpoint failed: ") + sqlite3_errmsg(own_) +
                " (the writer still checkpoints when the WAL grows past its limit)");
    }
    last_rc = rc;
    lk.lock();
  }
}

}  // namespace af::sqlite
