#include "storage/sqlite/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace af::sqlite {
namespace {

namespace fs = std::filesystem;

// Holds the checkpointer's thread before its checkpoints until Release.
class Gate {
 public:
  void Wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return open_; });
  }
  void Release() {
    {
      std::lock_guard lk(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class WalCheckpointerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "af-wal-test-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "db.sqlite").string();
    ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr), SQLITE_OK);
    // As the store's writer: the checkpointer's connection can hold the
    // WAL's write lock for an instant (wal_checkpointer.h).
    sqlite3_busy_timeout(db_, 5000);
    Exec("PRAGMA journal_mode=WAL");
    Exec("PRAGMA synchronous=NORMAL");
    Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB)");
    // Everything so far in the database file, the WAL empty.
    Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  void TearDown() override {
    gate_.Release();  // a held thread would keep the checkpointer's destructor waiting
    checkpointer_.reset();
    if (db_) sqlite3_close_v2(db_);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void Exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << sql << ": " << (err ? err : "");
  }
  // Starts the checkpointer on db_; `held`: its thread waits before each
  // checkpoint until gate_ is released.
  void Start(int background_pages, int inline_pages, bool held = false) {
    WalCheckpointerOptions o;
    o.background_pages = background_pages;
    o.inline_pages = inline_pages;
    if (held) o.before_checkpoint = [this] { gate_.Wait(); };
    auto started = WalCheckpointer::Start(db_, o);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    checkpointer_ = std::move(started).value();
  }
  // `n` commits of one 4 kB row each (two pages a commit: the row and the table's page).
  void Commit(int n) {
    for (int i = 0; i < n; ++i) Exec("INSERT INTO t(body) VALUES (zeroblob(4000))");
  }
  uintmax_t DbBytes() const { return fs::file_size(path_); }
  uintmax_t WalBytes() const { return fs::file_size(path_ + "-wal"); }
  int64_t Rows() {
    sqlite3* reader = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &st, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close_v2(reader);
    return n;
  }
  // Waits (bounded) until the thread has run `n` checkpoints.
  bool WaitForBackground(uint64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (checkpointer_->stats().background < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  fs::path dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
  Gate gate_;  // before checkpointer_: outlives it
  std::unique_ptr<WalCheckpointer> checkpointer_;
};

TEST_F(WalCheckpointerTest, ACommitPastTheThresholdLeavesTheCheckpointToTheThread) {
  ASSERT_NO_FATAL_FAILURE(Start(/*background_pages=*/10, /*inline_pages=*/100000, /*held=*/true));

  const uintmax_t before = DbBytes();
  Commit(50);  // ~100 pages: ten times the threshold
  // No commit copied anything into the database file: the thread is held.
  EXPECT_EQ(DbBytes(), before);
  EXPECT_EQ(checkpointer_->stats().in_commit, 0u);
  EXPECT_EQ(Rows(), 50);

  gate_.Release();
  ASSERT_TRUE(WaitForBackground(1));
  EXPECT_GE(DbBytes(), before + 50 * 4000);  // the rows are in the file now
  EXPECT_EQ(checkpointer_->stats().in_commit, 0u);
}

TEST_F(WalCheckpointerTest, ACommitPastTheInlineLimitCheckpointsItselfWhenTheThreadLagsBehind) {
  ASSERT_NO_FATAL_FAILURE(Start(/*background_pages=*/10, /*inline_pages=*/40, /*held=*/true));

  const uintmax_t before = DbBytes();
  Commit(50);
  EXPECT_GE(checkpointer_->stats().in_commit, 1u);
  EXPECT_GT(DbBytes(), before);
  EXPECT_EQ(checkpointer_->stats().background, 0u);
  gate_.Release();
  EXPECT_EQ(Rows(), 50);
}

TEST_F(WalCheckpointerTest, TheWalStaysBoundedUnderCommitsThatNeverPause) {
  const int inline_pages = 200;
  ASSERT_NO_FATAL_FAILURE(Start(/*background_pages=*/20, inline_pages));

  Commit(3000);  // ~6,000 pages in all, thirty times the limit
  // A frame is a page plus its 24-byte header; the WAL's header is 32 bytes.
  // A commit is 2 frames. The limit plus a few commits: a commit that begins
  // while the thread's checkpoint holds the WAL's locks cannot start the WAL
  // over and appends (seen: the limit + 4 frames under ASan); unbounded, the
  // WAL would hold all ~6,000 pages.
  const uintmax_t frame = 4096 + 24;
  const int slack_commits = 8;
  EXPECT_LE(WalBytes(), 32 + (inline_pages + 2 + 2 * slack_commits) * frame);
  EXPECT_EQ(Rows(), 3000);
  checkpointer_.reset();
  sqlite3_close_v2(db_);
  db_ = nullptr;
  EXPECT_EQ(Rows(), 3000);  // reopened from the files alone
}

TEST_F(WalCheckpointerTest, AnInMemoryDatabaseIsRefused) {
  sqlite3* mem = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &mem), SQLITE_OK);
  auto started = WalCheckpointer::Start(mem, {});
  EXPECT_FALSE(started.ok());
  sqlite3_close_v2(mem);
}

}  // namespace
}  // namespace af::sqlite
