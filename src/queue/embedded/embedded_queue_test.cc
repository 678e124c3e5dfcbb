#include "queue/embedded/embedded_queue.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/ids.h"
#include "queue/queue_conformance.h"

namespace af {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("af-queue-test-" + NewUuid())) {}
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

class FileEnv final : public QueueTestEnv {
 public:
  Result<std::unique_ptr<Queue>> Open() override { return OpenEmbeddedQueue({dir_.path().string()}); }

 private:
  TempDir dir_;
};

class MemoryEnv final : public QueueTestEnv {
 public:
  Result<std::unique_ptr<Queue>> Open() override { return OpenEmbeddedQueue({""}); }
};

QueueBackend FileBackend() {
  return QueueBackend{"File", [] { return std::make_unique<FileEnv>(); }, QueueCapabilities{}};
}

QueueBackend MemoryBackend() {
  QueueCapabilities caps;
  caps.durable = false;
  return QueueBackend{"Memory", [] { return std::make_unique<MemoryEnv>(); }, caps};
}

INSTANTIATE_TEST_SUITE_P(Embedded, QueueConformanceTest, ::testing::Values(FileBackend(), MemoryBackend()),
                         QueueBackendName);

// --- Behaviour specific to the embedded backend ------------------------------

constexpr auto kForever = std::chrono::hours(1);  // a Poll that only Close/shutdown may end

class EmbeddedQueueTest : public ::testing::Test {
 protected:
  std::unique_ptr<Queue> Open() {
    auto q = OpenEmbeddedQueue({dir_.path().string()});
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? std::move(q).value() : nullptr;
  }
  static std::unique_ptr<QueueConsumer> Sub(Queue& q, const std::vector<std::string>& topics,
                                            const std::string& group) {
    auto c = q.Subscribe(topics, group);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  static std::vector<QueueMessage> PollAll(QueueConsumer& c, size_t n) {
    std::vector<QueueMessage> got;
    while (got.size() < n) {
      auto r = c.Poll(n - got.size(), std::chrono::seconds(10));
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok() || r->empty()) break;
      for (auto& m : *r) got.push_back(std::move(m));
    }
    return got;
  }
  static std::vector<std::string> Payloads(const std::vector<QueueMessage>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m.payload);
    return out;
  }
  // Counts rows of `table` in queue.db; the queue must be closed (it holds
  // an exclusive lock while open).
  int64_t CountRows(const std::string& table) {
    sqlite3* db = nullptr;
    std::string file = (dir_.path() / "queue.db").string();
    int64_t n = -1;
    if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_stmt* s = nullptr;
      std::string sql = "SELECT count(*) FROM " + table;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        n = sqlite3_column_int64(s, 0);
      }
      sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return n;
  }

  TempDir dir_;
};

TEST_F(EmbeddedQueueTest, DestroyingTheQueueWakesBlockedPollAndDisablesConsumers) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->Publish("t", "k", "m0").ok());
  auto c = Sub(*q, {"t"}, "g");
  auto w = Sub(*q, {"other"}, "g2");
  ASSERT_NE(c, nullptr);
  ASSERT_NE(w, nullptr);
  auto got = PollAll(*c, 1);
  ASSERT_EQ(got.size(), 1u);
  std::atomic<bool> returned_ok{false};
  std::thread poller([&] {
    auto r = w->Poll(10, kForever);
    returned_ok = r.ok() && r->empty();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  q.reset();
  poller.join();
  EXPECT_TRUE(returned_ok);
  EXPECT_EQ(c->Ack(got[0]).code(), Code::kUnavailable);
  EXPECT_EQ(c->Poll(1, std::chrono::milliseconds(0)).status().code(), Code::kUnavailable);
  c->Close();  // harmless after the queue is gone

  // The unacked message is there for the next process; the old consumers,
  // still alive, do not disturb the re-opened queue.
  q = Open();
  ASSERT_NE(q, nullptr);
  auto d = Sub(*q, {"t"}, "g");
  ASSERT_NE(d, nullptr);
  auto again = PollAll(*d, 1);
  ASSERT_EQ(Payloads(again), std::vector<std::string>{"m0"});
  c.reset();
  w.reset();
  EXPECT_TRUE(d->Ack(again[0]).ok());
}

TEST_F(EmbeddedQueueTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  auto second = OpenEmbeddedQueue({dir_.path().string()});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable) << second.status().ToString();
  EXPECT_NE(second.status().message().find("Hint:"), std::string::npos);
  q.reset();
  EXPECT_NE(Open(), nullptr);  // the lock goes with the queue
}

// A restarting server may overlap the old one for a moment: the new open
// waits (up to 500 ms) for the old one to let go instead of failing.
TEST_F(EmbeddedQueueTest, OpenWaitsBrieflyForAnOpenThatIsClosing) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    q.reset();
  });
  auto second = OpenEmbeddedQueue({dir_.path().string()});
  closer.join();
  EXPECT_TRUE(second.ok()) << second.status().ToString();
}

TEST_F(EmbeddedQueueTest, DirectoryThatIsAFileIsRefused) {
  fs::create_directories(dir_.path());
  std::ofstream(dir_.path() / "file") << "x";
  auto q = OpenEmbeddedQueue({(dir_.path() / "file").string()});
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), Code::kInvalidArgument) << q.status().ToString();
}

TEST_F(EmbeddedQueueTest, NewerSchemaIsRefused) {
  { ASSERT_NE(Open(), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_.path() / "queue.db").string().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto q = OpenEmbeddedQueue({dir_.path().string()});
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), Code::kFailedPrecondition) << q.status().ToString();
}

TEST_F(EmbeddedQueueTest, RowIsDeletedOnlyOnceEveryGroupAcked) {
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    auto g1 = Sub(*q, {"t"}, "g1");
    auto g2 = Sub(*q, {"t"}, "g2");
    ASSERT_TRUE(q->Publish("t", "k", "m0").ok());
    auto got = PollAll(*g1, 1);
    ASSERT_EQ(got.size(), 1u);
    ASSERT_TRUE(g1->Ack(got[0]).ok());
  }
  EXPECT_EQ(CountRows("messages"), 1);
  EXPECT_EQ(CountRows("acks"), 1);
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    auto g1 = Sub(*q, {"t"}, "g1");
    auto g2 = Sub(*q, {"t"}, "g2");
    auto got = PollAll(*g2, 1);
    ASSERT_EQ(Payloads(got), std::vector<std::string>{"m0"});
    auto none = g1->Poll(10, std::chrono::milliseconds(0));  // g1's ack survived the restart
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
    ASSERT_TRUE(g2->Ack(got[0]).ok());
  }
  EXPECT_EQ(CountRows("messages"), 0);
  EXPECT_EQ(CountRows("acks"), 0);
}

// The acks rows go with the message in the session that wrote them too (the
// queue deletes them itself; no foreign key cascades).
TEST_F(EmbeddedQueueTest, AcksRowsGoWithTheMessageInOneSession) {
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    auto g1 = Sub(*q, {"t"}, "g1");
    auto g2 = Sub(*q, {"t"}, "g2");
    auto g3 = Sub(*q, {"t"}, "g3");
    for (const char* p : {"m0", "m1"}) ASSERT_TRUE(q->Publish("t", "k", p).ok());
    for (QueueConsumer* c : {g1.get(), g2.get(), g3.get()}) {
      auto got = PollAll(*c, 2);
      ASSERT_EQ(got.size(), 2u);
      ASSERT_TRUE(c->Ack(got[0]).ok());
      if (c != g3.get()) {
        ASSERT_TRUE(c->Ack(got[1]).ok());  // m1 stays: g3 has not acked it
      }
    }
  }
  EXPECT_EQ(CountRows("messages"), 1);
  EXPECT_EQ(CountRows("acks"), 2);  // m1's, by g1 and g2
}

// A queue.db written before the acks table lost its cascading foreign key
// (schema version 1 has both forms) is read and cleaned up the same way, and
// acks rows of messages no longer stored go at open.
TEST_F(EmbeddedQueueTest, AFileWithTheCascadingForeignKeyOfBeforeWorksTheSame) {
  {
    std::filesystem::create_directories(dir_.path());
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() / "queue.db").string().c_str(), &db), SQLITE_OK);
    const char* old_layout = R"sql(
      PRAGMA journal_mode=WAL;
      CREATE TABLE messages (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB NOT NULL,
                             published_at INTEGER NOT NULL, payload BLOB NOT NULL);
      CREATE TABLE subscriptions (grp TEXT NOT NULL, topic TEXT NOT NULL, created_at INTEGER NOT NULL,
                                  PRIMARY KEY (grp, topic)) WITHOUT ROWID;
      CREATE TABLE acks (seq INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE, grp TEXT NOT NULL,
                         PRIMARY KEY (seq, grp)) WITHOUT ROWID;
      INSERT INTO subscriptions VALUES ('g1', 't', 0), ('g2', 't', 0);
      INSERT INTO messages VALUES (1, 't', 'k', 0, 'm1'), (2, 't', 'k', 0, 'm2');
      INSERT INTO acks VALUES (1, 'g1'), (7, 'g1');  -- 7: a message no longer stored
      PRAGMA user_version=1;)sql";
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, old_layout, nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
    sqlite3_close(db);
  }
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    auto g1 = Sub(*q, {"t"}, "g1");
    auto g2 = Sub(*q, {"t"}, "g2");
    EXPECT_EQ(Payloads(PollAll(*g1, 1)), std::vector<std::string>{"m2"});  // g1 acked m1 before
    auto got = PollAll(*g2, 2);
    ASSERT_EQ(Payloads(got), (std::vector<std::string>{"m1", "m2"}));
    ASSERT_TRUE(g2->Ack(got[0]).ok());  // m1: every group has acked it now
  }
  EXPECT_EQ(CountRows("messages"), 1);  // m2
  EXPECT_EQ(CountRows("acks"), 0);
}

TEST_F(EmbeddedQueueTest, MessagesOnATopicWithoutGroupsAreKeptUntilAGroupAcks) {
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(q->Publish("t", "k", "m0").ok());
  }
  EXPECT_EQ(CountRows("messages"), 1);
  {
    auto q = Open();
    ASSERT_NE(q, nullptr);
    auto c = Sub(*q, {"t"}, "late-group");
    auto got = PollAll(*c, 1);
    ASSERT_EQ(Payloads(got), std::vector<std::string>{"m0"});
    ASSERT_TRUE(c->Ack(got[0]).ok());
  }
  EXPECT_EQ(CountRows("messages"), 0);
  EXPECT_EQ(CountRows("subscriptions"), 1);
}

// The process is killed (no destructors, no close) right after Publish/Ack
// returned: what they reported done is on disk, the rest comes back.
TEST_F(EmbeddedQueueTest, PublishedAndAckedStateSurvivesSigkill) {
  const std::string dir = dir_.path().string();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto q = OpenEmbeddedQueue({dir});
    if (!q.ok()) _exit(2);
    for (int i = 0; i < 5; ++i) {
      if (!(*q)->Publish("t", "k", "m" + std::to_string(i)).ok()) _exit(3);
    }
    auto c = (*q)->Subscribe({"t"}, "g");
    if (!c.ok()) _exit(4);
    auto r = (*c)->Poll(5, std::chrono::seconds(5));
    if (!r.ok() || r->size() != 5) _exit(5);
    if (!(*c)->Ack((*r)[0]).ok() || !(*c)->Ack((*r)[2]).ok()) _exit(6);
    kill(getpid(), SIGKILL);
    _exit(7);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "child exited with " << (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  auto q = Open();
  ASSERT_NE(q, nullptr);
  auto c = Sub(*q, {"t"}, "g");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Payloads(PollAll(*c, 3)), (std::vector<std::string>{"m1", "m3", "m4"}));
  auto more = c->Poll(10, std::chrono::milliseconds(0));
  ASSERT_TRUE(more.ok());
  EXPECT_TRUE(more->empty());
}

// Several publishers and a group of consumers on their own threads (run it
// under TSan): every message arrives exactly once while nobody closes.
TEST_F(EmbeddedQueueTest, ConcurrentPublishersAndConsumers) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  const int publishers = 4, per_publisher = 500, total = publishers * per_publisher;
  std::vector<std::unique_ptr<QueueConsumer>> consumers;
  for (int i = 0; i < 3; ++i) consumers.push_back(Sub(*q, {"t1", "t2"}, "g"));
  std::mutex mu;
  std::multiset<std::string> got;
  std::atomic<int> received{0};
  std::vector<std::thread> threads;
  for (auto& c : consumers) {
    threads.emplace_back([&, c = c.get()] {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (received < total && std::chrono::steady_clock::now() < deadline) {
        auto r = c->Poll(16, std::chrono::milliseconds(50));
        if (!r.ok()) return;
        for (const auto& m : *r) {
          {
            std::lock_guard lk(mu);
            got.insert(m.topic + "/" + m.payload);
          }
          EXPECT_TRUE(c->Ack(m).ok());
          ++received;
        }
      }
    });
  }
  for (int p = 0; p < publishers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_publisher; ++i) {
        std::string topic = i % 2 ? "t1" : "t2";
        EXPECT_TRUE(q->Publish(topic, "k", std::to_string(p) + ":" + std::to_string(i)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(got.size(), static_cast<size_t>(total));
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), static_cast<size_t>(total));
}

}  // namespace
}  // namespace af
