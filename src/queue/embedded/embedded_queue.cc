#include "queue/embedded/embedded_queue.h"

#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "common/time.h"

namespace af {
namespace embedded_internal {
namespace {

// Version of the file layout below, kept in PRAGMA user_version. Bump it and
// migrate in OpenDb when the layout changes.
constexpr int kSchemaVersion = 1;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS messages (
  seq          INTEGER PRIMARY KEY,  -- publish order (assigned by QueueCore)
  topic        TEXT    NOT NULL,
  key          BLOB    NOT NULL,
  published_at INTEGER NOT NULL,       -- ms since the epoch, for operators
  payload      BLOB    NOT NULL        -- last, so loading seq/topic skips it
);
CREATE TABLE IF NOT EXISTS subscriptions (
  grp        TEXT    NOT NULL,
  topic      TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
-- Acks of messages that another group subscribed to the topic still has to
-- ack; the message row and these rows go together once all groups acked
-- (QueueCore deletes both: a cascading foreign key made SQLite build a
-- temporary table on every message's delete, half of an ack's cost.
-- Files written before keep the clause; the connection runs with foreign
-- keys off).
CREATE TABLE IF NOT EXISTS acks (
  seq INTEGER NOT NULL,  -- messages.seq
  grp TEXT    NOT NULL,
  PRIMARY KEY (seq, grp)
) WITHOUT ROWID;
)sql";

// Longest single wait in Poll; longer timeouts are clamped (and return empty
// after it), which keeps steady_clock arithmetic far from overflow.
constexpr std::chrono::milliseconds kMaxPollWait = std::chrono::hours(24 * 30);

Status SqliteError(sqlite3* db, int rc, const std::string& what) {
  std::string msg = "embedded queue: " + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Unavailable(msg +
                                 ". Hint: another process (or another queue in this process) has the queue "
                                 "directory open; run one agentflow server per queue directory.");
    case SQLITE_FULL:
      return Status::Unavailable(msg + ". Hint: the disk is full; free space and retry.");
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return Status::Unavailable(msg + ". Hint: check that the queue directory is writable and its disk healthy.");
    case SQLITE_TOOBIG:
      return Status::TooLarge(msg + ". Hint: queue payloads are limited to about 1 GB; send a reference instead.");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Internal(msg + ". Hint: queue.db is damaged or not an agentflow queue; move it aside.");
    default:
      return Status::Internal(msg);
  }
}

// Owns one prepared statement.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { Finalize(); }

  Status Prepare(sqlite3* db, const char* sql) {
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr);
    return rc == SQLITE_OK ? Status::Ok() : SqliteError(db, rc, std::string("prepare `") + sql + "`");
  }
  void Finalize() {
    sqlite3_finalize(s_);
    s_ = nullptr;
  }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Resets a statement when the scope ends, so no statement keeps a read
// transaction open or points at a caller's bound buffer.
class ResetOnExit {
 public:
  explicit ResetOnExit(sqlite3_stmt* s) : s_(s) {}
  ~ResetOnExit() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

 private:
  sqlite3_stmt* s_;
};

std::string ColumnBytes(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  int n = sqlite3_column_bytes(s, col);
  return p == nullptr || n == 0 ? std::string() : std::string(static_cast<const char*>(p), static_cast<size_t>(n));
}

}  // namespace

// The state shared by an EmbeddedQueue and its consumers. Consumers hold it
// by shared_ptr so they may outlive the queue (Shutdown makes them inert).
// Thread-safety: every member function locks mu_.
class QueueCore {
 public:
  static Result<std::shared_ptr<QueueCore>> Open(const std::string& dir);
  ~QueueCore() { Shutdown(); }

  void Shutdown();
  Status Publish(const std::string& topic, const std::string& key, const std::string& payload);
  Result<uint64_t> AddConsumer(const std::vector<std::string>& topics, const std::string& group);
  Result<std::vector<QueueMessage>> Poll(uint64_t id, size_t max, std::chrono::milliseconds timeout);
  Status Ack(uint64_t id, const QueueMessage& m);
  void CloseConsumer(uint64_t id);
  void RemoveConsumer(uint64_t id);
  Status Ping();
  std::vector<QueueConsumer::TopicLag> Lag(uint64_t id);

 private:
  struct Message {
    std::string topic;
    int outstanding = 0;  // groups subscribed to the topic that have not acked it
    bool has_acks = false;  // rows in acks (some group acked, another has not)
  };
  struct Group {
    // Deliverable now (neither acked nor in flight), per topic, in seq order.
    std::map<std::string, std::set<int64_t>> pending;
    // Delivered and not acked: seq -> consumer id.
    std::unordered_map<int64_t, uint64_t> in_flight;
  };
  struct Consumer {
    std::string group;
    std::vector<std::string> topics;
    bool closed = false;
  };

  QueueCore() = default;
  Status OpenDb(const std::string& path, bool in_memory);
  Status Load();
  Status Exec(const char* sql, const std::string& what);
  Status ReadMessage(int64_t seq, QueueMessage& m);
  Status DeleteMessage(int64_t seq, const Message& m);
  bool HasPending(const Consumer& c, const Group& g) const;
  Status ClosedError() const;

  std::mutex mu_;
  std::condition_variable cv_;
  sqlite3* db_ = nullptr;
  Stmt insert_message_, select_message_, delete_message_, delete_acks_, insert_ack_, insert_subscription_;
  bool shut_down_ = false;
  std::map<int64_t, Message> messages_;                             // every stored message
  std::map<std::string, std::vector<std::string>> topic_groups_;  // topic -> subscribed groups
  std::map<std::string, Group> groups_;                           // never erased: references stay valid
  std::unordered_map<uint64_t, std::unique_ptr<Consumer>> consumers_;
  uint64_t next_consumer_id_ = 1;
  // Highest seq assigned. Kept here rather than by AUTOINCREMENT (which
  // costs a second page write per publish). Seqs never repeat within one
  // open queue, so a late duplicate Ack cannot hit a newer message; after a
  // restart they may (the old consumers are inert by then).
  int64_t last_seq_ = 0;
};

Result<std::shared_ptr<QueueCore>> QueueCore::Open(const std::string& dir) {
  std::string path = ":memory:";
  if (!dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir, ec)) {
      return Status::InvalidArgument("embedded queue: cannot create directory '" + dir + "': " +
                                     (ec ? ec.message() : std::string("not a directory")) +
                                     ". Hint: point the queue at a writable directory.");
    }
    path = (std::filesystem::path(dir) / "queue.db").string();
  }
  std::shared_ptr<QueueCore> core(new QueueCore());
  AF_RETURN_IF_ERROR(core->OpenDb(path, dir.empty()));
  AF_RETURN_IF_ERROR(core->Load());
  return core;
}

Status QueueCore::Exec(const char* sql, const std::string& what) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status::Ok() : SqliteError(db_, rc, what);
}

Status QueueCore::OpenDb(const std::string& path, bool in_memory) {
  // The core's mutex serialises every use of the connection.
  int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "open " + path);
  sqlite3_extended_result_codes(db_, 1);
  // A restarting server may briefly overlap the old one; wait a little.
  sqlite3_busy_timeout(db_, 500);
  // EXCLUSIVE before the first access: the lock is held for the connection's
  // life (in-flight state lives in this process's memory, so a second process
  // must not consume the same file), and WAL then needs no shared memory.
  AF_RETURN_IF_ERROR(Exec("PRAGMA locking_mode=EXCLUSIVE", "set locking mode"));
  {
    Stmt mode;
    AF_RETURN_IF_ERROR(mode.Prepare(db_, "PRAGMA journal_mode=WAL"));
    ResetOnExit reset(mode.get());
    rc = sqlite3_step(mode.get());
    if (rc != SQLITE_ROW) return SqliteError(db_, rc, "open " + path);
    std::string got = ColumnBytes(mode.get(), 0);
    if (!in_memory && got != "wal") {
      return Status::Unavailable("embedded queue: " + path + " cannot use WAL (journal_mode=" + got +
                                 "). Hint: put the queue directory on a local file system.");
    }
  }
  // A checkpoint (two fsyncs) every 8192 pages rather than SQLite's 1000
  // roughly doubles publish throughput on a VM disk; the WAL stays < 64 MB.
  // Foreign keys off: see the acks table. secure_delete off (Debian builds
  // SQLite with it on): an acked message's payload is a copy of what the
  // store keeps, and zeroing it cost ~1.5 % of a run's instructions
  // (docs/benchmarks.md item 41).
  AF_RETURN_IF_ERROR(Exec(
      "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA secure_delete=OFF; PRAGMA wal_autocheckpoint=8192; "
      "PRAGMA journal_size_limit=67108864;",
      "configure " + path));

  AF_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", "lock " + path));
  int version = 0;
  {
    Stmt v;
    Status st = v.Prepare(db_, "PRAGMA user_version");
    if (st.ok()) {
      ResetOnExit reset(v.get());
      rc = sqlite3_step(v.get());
      if (rc == SQLITE_ROW) {
        version = sqlite3_column_int(v.get(), 0);
      } else {
        st = SqliteError(db_, rc, "read schema version of " + path);
      }
    }
    if (!st.ok()) {
      (void)Exec("ROLLBACK", "rollback");
      return st;
    }
  }
  if (version > kSchemaVersion) {
    (void)Exec("ROLLBACK", "rollback");
    return Status::FailedPrecondition("embedded queue: " + path + " has schema version " + std::to_string(version) +
                                      ", newer than this build's " + std::to_string(kSchemaVersion) +
                                      ". Hint: run the agentflow version that wrote it, or move the file aside.");
  }
  Status st = Exec(kSchema, "create schema in " + path);
  if (st.ok()) {
    st = Exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(), "set schema version");
  }
  if (st.ok()) st = Exec("COMMIT", "commit schema");
  if (!st.ok()) {
    (void)Exec("ROLLBACK", "rollback");
    return st;
  }

  AF_RETURN_IF_ERROR(insert_message_.Prepare(
      db_, "INSERT INTO messages (seq, topic, key, published_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)"));
  AF_RETURN_IF_ERROR(select_message_.Prepare(db_, "SELECT key, payload FROM messages WHERE seq = ?1"));
  AF_RETURN_IF_ERROR(delete_message_.Prepare(db_, "DELETE FROM messages WHERE seq = ?1"));
  AF_RETURN_IF_ERROR(delete_acks_.Prepare(db_, "DELETE FROM acks WHERE seq = ?1"));
  AF_RETURN_IF_ERROR(insert_ack_.Prepare(db_, "INSERT OR IGNORE INTO acks (seq, grp) VALUES (?1, ?2)"));
  AF_RETURN_IF_ERROR(insert_subscription_.Prepare(
      db_, "INSERT OR IGNORE INTO subscriptions (grp, topic, created_at) VALUES (?1, ?2, ?3)"));
  return Status::Ok();
}

// Rebuilds the in-memory index from the file: every message not acked by a
// group is pending for it (nothing is in flight after a restart).
Status QueueCore::Load() {
  {
    Stmt s;
    AF_RETURN_IF_ERROR(s.Prepare(db_, "SELECT grp, topic FROM subscriptions"));
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      std::string group = ColumnBytes(s.get(), 0), topic = ColumnBytes(s.get(), 1);
      topic_groups_[topic].push_back(group);
      groups_[group].pending[topic];
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "load subscriptions");
  }
  {
    Stmt s;
    AF_RETURN_IF_ERROR(s.Prepare(db_, "SELECT seq, topic FROM messages ORDER BY seq"));
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s.get(), 0);
      last_seq_ = std::max(last_seq_, seq);
      Message& m = messages_[seq];
      m.topic = ColumnBytes(s.get(), 1);
      if (auto tg = topic_groups_.find(m.topic); tg != topic_groups_.end()) {
        m.outstanding = static_cast<int>(tg->second.size());
        for (const auto& g : tg->second) {
          auto& pend = groups_[g].pending[m.topic];
          pend.insert(pend.end(), seq);
        }
      }
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "load messages");
  }
  {
    Stmt s;
    AF_RETURN_IF_ERROR(s.Prepare(db_, "SELECT seq, grp FROM acks"));
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(s.get(), 0);
      auto m = messages_.find(seq);
      auto g = groups_.find(ColumnBytes(s.get(), 1));
      if (m == messages_.end() || g == groups_.end()) continue;
      auto pend = g->second.pending.find(m->second.topic);
      m->second.has_acks = true;
      if (pend != g->second.pending.end() && pend->second.erase(seq) > 0) --m->second.outstanding;
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "load acks");
  }
  // Acks are written so that a message every group acked is deleted with
  // its last ack; this only repairs files damaged by hand.
  for (auto it = messages_.begin(); it != messages_.end();) {
    if (it->second.outstanding > 0 || !topic_groups_.contains(it->second.topic)) {
      ++it;
      continue;
    }
    AF_RETURN_IF_ERROR(DeleteMessage(it->first, it->second));
    it = messages_.erase(it);
  }
  // Acks of messages no longer stored (none, unless a file was edited).
  return Exec("DELETE FROM acks WHERE seq NOT IN (SELECT seq FROM messages)", "delete stray acks");
}

// Deletes a message every group has acked, and its acks rows in the same
// transaction.
Status QueueCore::DeleteMessage(int64_t seq, const Message& m) {
  auto what = [seq] { return "ack message " + std::to_string(seq); };
  auto step = [&](sqlite3_stmt* s) {
    ResetOnExit reset(s);
    sqlite3_bind_int64(s, 1, seq);
    int rc = sqlite3_step(s);
    return rc == SQLITE_DONE ? Status::Ok() : SqliteError(db_, rc, what());
  };
  if (!m.has_acks) return step(delete_message_.get());
  AF_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", what()));
  Status st = step(delete_acks_.get());
  if (st.ok()) st = step(delete_message_.get());
  if (st.ok()) st = Exec("COMMIT", what());
  if (!st.ok()) (void)Exec("ROLLBACK", what());
  return st;
}

void QueueCore::Shutdown() {
  {
    std::lock_guard lk(mu_);
    if (shut_down_) return;
    shut_down_ = true;
    insert_message_.Finalize();
    select_message_.Finalize();
    delete_message_.Finalize();
    delete_acks_.Finalize();
    insert_ack_.Finalize();
    insert_subscription_.Finalize();
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  cv_.notify_all();
}

Status QueueCore::ClosedError() const {
  return Status::Unavailable(
      "embedded queue: the queue was closed. Hint: unacked messages are delivered again once the queue is "
      "reopened; subscribe to the new queue.");
}

Status QueueCore::Publish(const std::string& topic, const std::string& key, const std::string& payload) {
  bool wake = false;
  {
    std::lock_guard lk(mu_);
    if (shut_down_) return ClosedError();
    const int64_t seq = last_seq_ + 1;
    sqlite3_stmt* s = insert_message_.get();
    ResetOnExit reset(s);
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_text64(s, 2, topic.data(), topic.size(), SQLITE_STATIC, SQLITE_UTF8);
    sqlite3_bind_blob64(s, 3, key.data(), key.size(), SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, NowMs());
    sqlite3_bind_blob64(s, 5, payload.data(), payload.size(), SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "publish to " + topic);
    last_seq_ = seq;
    Message& m = messages_[seq];
    m.topic = topic;
    if (auto tg = topic_groups_.find(topic); tg != topic_groups_.end()) {
      m.outstanding = static_cast<int>(tg->second.size());
      for (const auto& g : tg->second) {
        auto& pend = groups_[g].pending[topic];
        pend.insert(pend.end(), seq);
      }
      wake = true;
    }
  }
  if (wake) cv_.notify_all();
  return Status::Ok();
}

Result<uint64_t> QueueCore::AddConsumer(const std::vector<std::string>& topics, const std::string& group) {
  std::lock_guard lk(mu_);
  if (shut_down_) return ClosedError();
  std::vector<std::string> unique_topics;
  for (const auto& t : topics) {
    if (std::find(unique_topics.begin(), unique_topics.end(), t) == unique_topics.end()) unique_topics.push_back(t);
  }
  std::vector<std::string> new_topics;
  for (const auto& t : unique_topics) {
    auto tg = topic_groups_.find(t);
    if (tg == topic_groups_.end() || std::find(tg->second.begin(), tg->second.end(), group) == tg->second.end()) {
      new_topics.push_back(t);
    }
  }
  if (!new_topics.empty()) {
    AF_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", "subscribe"));
    Status st;
    for (const auto& t : new_topics) {
      sqlite3_stmt* s = insert_subscription_.get();
      ResetOnExit reset(s);
      sqlite3_bind_text64(s, 1, group.data(), group.size(), SQLITE_STATIC, SQLITE_UTF8);
      sqlite3_bind_text64(s, 2, t.data(), t.size(), SQLITE_STATIC, SQLITE_UTF8);
      sqlite3_bind_int64(s, 3, NowMs());
      int rc = sqlite3_step(s);
      if (rc != SQLITE_DONE) {
        st = SqliteError(db_, rc, "subscribe group " + group + " to " + t);
        break;
      }
    }
    if (st.ok()) st = Exec("COMMIT", "subscribe");
    if (!st.ok()) {
      (void)Exec("ROLLBACK", "rollback");
      return st;
    }
    // The new group starts at the oldest stored message of each topic.
    Group& g = groups_[group];
    for (const auto& t : new_topics) {
      topic_groups_[t].push_back(group);
      auto& pend = g.pending[t];
      for (auto& [seq, m] : messages_) {
        if (m.topic != t) continue;
        ++m.outstanding;
        pend.insert(pend.end(), seq);
      }
    }
  }
  uint64_t id = next_consumer_id_++;
  auto c = std::make_unique<Consumer>();
  c->group = group;
  c->topics = std::move(unique_topics);
  consumers_.emplace(id, std::move(c));
  return id;
}

bool QueueCore::HasPending(const Consumer& c, const Group& g) const {
  for (const auto& t : c.topics) {
    auto it = g.pending.find(t);
    if (it != g.pending.end() && !it->second.empty()) return true;
  }
  return false;
}

Status QueueCore::ReadMessage(int64_t seq, QueueMessage& m) {
  sqlite3_stmt* s = select_message_.get();
  ResetOnExit reset(s);
  sqlite3_bind_int64(s, 1, seq);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    return Status::Internal("embedded queue: message " + std::to_string(seq) + " is indexed but not stored");
  }
  if (rc != SQLITE_ROW) return SqliteError(db_, rc, "read message " + std::to_string(seq));
  m.key = ColumnBytes(s, 0);
  m.payload = ColumnBytes(s, 1);
  return Status::Ok();
}

Result<std::vector<QueueMessage>> QueueCore::Poll(uint64_t id, size_t max, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (shut_down_) return ClosedError();
  auto it = consumers_.find(id);
  if (it == consumers_.end() || it->second->closed) {
    return Status::FailedPrecondition("embedded queue: Poll on a closed consumer. Hint: Subscribe again.");
  }
  Consumer& c = *it->second;
  Group& g = groups_.at(c.group);
  std::vector<QueueMessage> out;
  if (max == 0) return out;
  auto wait = std::clamp(timeout, std::chrono::milliseconds(0), kMaxPollWait);
  cv_.wait_until(lk, std::chrono::steady_clock::now() + wait,
                 [&] { return shut_down_ || c.closed || HasPending(c, g); });
  if (shut_down_ || c.closed) return out;

  // The first `max` pending messages over the consumer's topics, by seq.
  std::vector<std::pair<int64_t, const std::string*>> picked;
  for (const auto& t : c.topics) {
    const auto& pend = g.pending.at(t);
    size_t n = 0;
    for (auto s = pend.begin(); s != pend.end() && n < max; ++s, ++n) picked.emplace_back(*s, &t);
  }
  std::sort(picked.begin(), picked.end());
  if (picked.size() > max) picked.resize(max);

  out.reserve(picked.size());
  for (const auto& [seq, topic] : picked) {
    QueueMessage m;
    m.topic = *topic;
    m.partition = 0;
    m.offset = seq;
    AF_RETURN_IF_ERROR(ReadMessage(seq, m));
    out.push_back(std::move(m));
  }
  // Only once every read succeeded, so a failed Poll delivers nothing.
  for (const auto& [seq, topic] : picked) {
    g.pending.at(*topic).erase(seq);
    g.in_flight[seq] = id;
  }
  return out;
}

Status QueueCore::Ack(uint64_t id, const QueueMessage& m) {
  std::lock_guard lk(mu_);
  if (shut_down_) return ClosedError();
  auto it = consumers_.find(id);
  if (it == consumers_.end() || it->second->closed) {
    return Status::FailedPrecondition(
        "embedded queue: Ack on a closed consumer; the message will be delivered again. Hint: ack before Close.");
  }
  Consumer& c = *it->second;
  if (std::find(c.topics.begin(), c.topics.end(), m.topic) == c.topics.end()) {
    return Status::InvalidArgument("embedded queue: Ack of a message from topic '" + m.topic +
                                   "', which this consumer did not subscribe to. Hint: ack the QueueMessage "
                                   "that Poll returned, on the consumer that polled it.");
  }
  Group& g = groups_.at(c.group);
  auto& pend = g.pending.at(m.topic);
  auto pending_it = pend.find(m.offset);
  auto flight_it = g.in_flight.find(m.offset);
  // Neither pending nor in flight: this group acked it already. Acks are
  // idempotent (at-least-once consumers may ack a redelivered duplicate).
  if (pending_it == pend.end() && flight_it == g.in_flight.end()) return Status::Ok();
  auto msg = messages_.find(m.offset);
  if (msg == messages_.end() || msg->second.topic != m.topic) {
    return Status::InvalidArgument("embedded queue: Ack of offset " + std::to_string(m.offset) +
                                   ", which is not a message of topic '" + m.topic +
                                   "'. Hint: ack the QueueMessage that Poll returned.");
  }

  if (msg->second.outstanding <= 1) {
    // The last group: the row goes, and its acks rows with it.
    AF_RETURN_IF_ERROR(DeleteMessage(m.offset, msg->second));
  } else {
    sqlite3_stmt* s = insert_ack_.get();
    ResetOnExit reset(s);
    sqlite3_bind_int64(s, 1, m.offset);
    sqlite3_bind_text64(s, 2, c.group.data(), c.group.size(), SQLITE_STATIC, SQLITE_UTF8);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "ack message " + std::to_string(m.offset));
    msg->second.has_acks = true;
  }
  if (pending_it != pend.end()) pend.erase(pending_it);
  if (flight_it != g.in_flight.end()) g.in_flight.erase(flight_it);
  if (--msg->second.outstanding <= 0) messages_.erase(msg);
  return Status::Ok();
}

void QueueCore::CloseConsumer(uint64_t id) {
  {
    std::lock_guard lk(mu_);
    auto it = consumers_.find(id);
    if (it == consumers_.end() || it->second->closed) return;
    Consumer& c = *it->second;
    c.closed = true;
    if (!shut_down_) {
      // Its unacked messages become deliverable to the group again.
      Group& g = groups_.at(c.group);
      for (auto f = g.in_flight.begin(); f != g.in_flight.end();) {
        if (f->second != id) {
          ++f;
          continue;
        }
        auto& pend = g.pending[messages_.at(f->first).topic];
        pend.insert(f->first);
        f = g.in_flight.erase(f);
      }
    }
  }
  cv_.notify_all();
}

void QueueCore::RemoveConsumer(uint64_t id) {
  CloseConsumer(id);
  std::lock_guard lk(mu_);
  consumers_.erase(id);
}

std::vector<QueueConsumer::TopicLag> QueueCore::Lag(uint64_t id) {
  std::lock_guard lk(mu_);
  std::vector<QueueConsumer::TopicLag> out;
  auto it = consumers_.find(id);
  if (it == consumers_.end()) return out;
  const Consumer& c = *it->second;
  auto g = groups_.find(c.group);
  if (g == groups_.end()) return out;
  // One partition, shared by the group: what the group has not acked.
  std::map<std::string, int64_t> lag;
  for (const std::string& t : c.topics) {
    auto p = g->second.pending.find(t);
    lag[t] = p == g->second.pending.end() ? 0 : static_cast<int64_t>(p->second.size());
  }
  for (const auto& [seq, consumer] : g->second.in_flight) {
    auto m = messages_.find(seq);
    if (m == messages_.end()) continue;
    auto l = lag.find(m->second.topic);
    if (l != lag.end()) ++l->second;
  }
  for (auto& [topic, n] : lag) out.push_back({topic, n});
  return out;
}

Status QueueCore::Ping() {
  std::lock_guard lk(mu_);
  if (shut_down_) return ClosedError();
  return Status::Ok();
}

namespace {

class EmbeddedConsumer final : public QueueConsumer {
 public:
  EmbeddedConsumer(std::shared_ptr<QueueCore> core, uint64_t id) : core_(std::move(core)), id_(id) {}
  ~EmbeddedConsumer() override { core_->RemoveConsumer(id_); }

  Result<std::vector<QueueMessage>> Poll(size_t max, std::chrono::milliseconds timeout) override {
    return core_->Poll(id_, max, timeout);
  }
  Status Ack(const QueueMessage& m) override { return core_->Ack(id_, m); }
  void Close() override { core_->CloseConsumer(id_); }
  std::vector<TopicLag> Lag() override { return core_->Lag(id_); }

 private:
  std::shared_ptr<QueueCore> core_;
  uint64_t id_;
};

}  // namespace
}  // namespace embedded_internal

using embedded_internal::QueueCore;

EmbeddedQueue::EmbeddedQueue(std::shared_ptr<QueueCore> core) : core_(std::move(core)) {}

EmbeddedQueue::~EmbeddedQueue() { core_->Shutdown(); }

Result<std::unique_ptr<EmbeddedQueue>> EmbeddedQueue::Open(const QueueOptions& options) {
  auto core = QueueCore::Open(options.embedded_dir);
  if (!core.ok()) return core.status();
  return std::unique_ptr<EmbeddedQueue>(new EmbeddedQueue(std::move(core).value()));
}

Status EmbeddedQueue::Publish(const std::string& topic, const std::string& key, const std::string& payload) {
  if (topic.empty()) return Status::InvalidArgument("queue: Publish needs a topic name. Hint: use kExecutionTopic.");
  return core_->Publish(topic, key, payload);
}

Result<std::unique_ptr<QueueConsumer>> EmbeddedQueue::Subscribe(const std::vector<std::string>& topics,
                                                                const std::string& group) {
  if (topics.empty()) return Status::InvalidArgument("queue: Subscribe needs at least one topic.");
  for (const auto& t : topics) {
    if (t.empty()) return Status::InvalidArgument("queue: Subscribe got an empty topic name.");
  }
  if (group.empty()) {
    return Status::InvalidArgument("queue: Subscribe needs a consumer group name. Hint: set KAFKA_GROUP_ID.");
  }
  auto id = core_->AddConsumer(topics, group);
  if (!id.ok()) return id.status();
  return std::unique_ptr<QueueConsumer>(new embedded_internal::EmbeddedConsumer(core_, *id));
}

Status EmbeddedQueue::Ping() { return core_->Ping(); }

Result<std::unique_ptr<Queue>> OpenEmbeddedQueue(const QueueOptions& options) {
  auto q = EmbeddedQueue::Open(options);
  if (!q.ok()) return q.status();
  return std::unique_ptr<Queue>(std::move(q).value());
}

}  // namespace af
