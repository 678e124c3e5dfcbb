#include "queue/kafka/kafka_queue.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "common/log.h"
#include "queue/kafka/ack_tracker.h"
#include "queue/kafka/kafka_config.h"
#include "queue/kafka/rdkafka_util.h"

namespace af {
namespace {

using Clock = std::chrono::steady_clock;
using kafka::AckTracker;
using kafka::BrokerHint;
using kafka::CommitOffset;
using kafka::EventLogger;
using kafka::MakeConf;
using kafka::Properties;
using kafka::SetCallback;
using kafka::TopicPartition;

// Longest single consume() inside Poll: bounds how late a periodic store
// (or a missed wake-up) can be while a Poll waits.
constexpr std::chrono::milliseconds kPollSlice{200};
// Acked positions are stored for librdkafka's committer at most this often
// (it commits them every auto.commit.interval.ms, see kafka_config.cc).
constexpr std::chrono::milliseconds kStoreInterval{100};
// Close waits at most this long for a first group join under way to finish
// (see FinishFirstJoin).
constexpr std::chrono::milliseconds kFirstJoinWait{10000};
// Longest Poll wait; longer timeouts are clamped (Poll then returns empty).
constexpr std::chrono::milliseconds kMaxPollWait = std::chrono::hours(24 * 30);
// Ping's metadata request.
constexpr int kPingTimeoutMs = 2000;
// Publish waits this much longer than message.timeout.ms for the report.
constexpr std::chrono::milliseconds kDeliveryGrace{2000};
// Lag() is refreshed this often by Poll; while the consumer is paused (no
// fetches, so no fresh high watermarks) the watermarks are asked for, at
// most every kLagQueryInterval, each query waiting at most kLagQueryTimeoutMs.
constexpr std::chrono::milliseconds kLagInterval{1000};
constexpr std::chrono::milliseconds kLagQueryInterval{5000};
constexpr int kLagQueryTimeoutMs = 200;

// Owns a vector of librdkafka partition handles.
class PartitionList {
 public:
  PartitionList() = default;
  explicit PartitionList(const std::vector<CommitOffset>& commits) {
    for (const CommitOffset& c : commits) {
      v_.push_back(RdKafka::TopicPartition::create(c.tp.topic, c.tp.partition, c.offset));
    }
  }
  ~PartitionList() { RdKafka::TopicPartition::destroy(v_); }
  PartitionList(const PartitionList&) = delete;
  PartitionList& operator=(const PartitionList&) = delete;
  std::vector<RdKafka::TopicPartition*>& get() { return v_; }

 private:
  std::vector<RdKafka::TopicPartition*> v_;
};

std::vector<TopicPartition> ToTopicPartitions(const std::vector<RdKafka::TopicPartition*>& parts) {
  std::vector<TopicPartition> out;
  out.reserve(parts.size());
  for (const RdKafka::TopicPartition* p : parts) out.push_back({p->topic(), p->partition()});
  return out;
}

std::string Describe(const std::vector<RdKafka::TopicPartition*>& parts) {
  std::string s;
  for (const RdKafka::TopicPartition* p : parts) {
    if (!s.empty()) s += ", ";
    s += p->topic() + "[" + std::to_string(p->partition()) + "]";
  }
  return s.empty() ? "none" : s;
}

std::string Describe(const std::vector<CommitOffset>& commits) {
  std::string s;
  for (const CommitOffset& c : commits) {
    if (!s.empty()) s += ", ";
    s += c.tp.topic + "[" + std::to_string(c.tp.partition) + "]@" + std::to_string(c.offset);
  }
  return s;
}

// ---------------------------------------------------------------------------
// Consumer

class KafkaConsumerImpl final : public QueueConsumer, public RdKafka::RebalanceCb, public RdKafka::OffsetCommitCb {
 public:
  static Result<std::unique_ptr<QueueConsumer>> Create(const QueueOptions& options,
                                                       const std::vector<std::string>& topics,
                                                       const std::string& group) {
    std::unique_ptr<KafkaConsumerImpl> c(new KafkaConsumerImpl(options.kafka_brokers, group));
    auto conf = MakeConf(kafka::ConsumerProperties(options, group));
    if (!conf.ok()) return conf.status();
    AF_RETURN_IF_ERROR(SetCallback<RdKafka::RebalanceCb>(**conf, "rebalance_cb", c.get()));
    AF_RETURN_IF_ERROR(SetCallback<RdKafka::OffsetCommitCb>(**conf, "offset_commit_cb", c.get()));
    AF_RETURN_IF_ERROR(SetCallback<RdKafka::EventCb>(**conf, "event_cb", &c->events_));
    std::string err;
    c->consumer_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
    if (c->consumer_ == nullptr) {
      return Status::InvalidArgument("cannot create the Kafka consumer: " + err +
                                     ". Hint: check the --kafka-property values.");
    }
    c->wake_ = rd_kafka_queue_get_consumer(c->consumer_->c_ptr());
    c->topics_ = topics;
    RdKafka::ErrorCode e = c->consumer_->subscribe(topics);
    if (e != RdKafka::ERR_NO_ERROR) {
      return Status::InvalidArgument("cannot subscribe to Kafka topics: " + RdKafka::err2str(e));
    }
    return std::unique_ptr<QueueConsumer>(std::move(c));
  }

  ~KafkaConsumerImpl() override {
    if (consumer_ == nullptr) return;
    Close();
    if (wake_ != nullptr) rd_kafka_queue_destroy(wake_);
    consumer_.reset();
  }

  Result<std::vector<QueueMessage>> Poll(size_t max, std::chrono::milliseconds timeout) override {
    if (closed_) return Status::FailedPrecondition("Kafka consumer: Poll after Close");
    if (owner_ == std::this_thread::get_id()) {
      return Status::FailedPrecondition("Kafka consumer: Poll from inside its revoked handler");
    }
    std::unique_lock use(use_mu_);
    if (closed_) return std::vector<QueueMessage>{};  // Close came while this Poll waited to start
    owner_ = std::this_thread::get_id();
    Result<std::vector<QueueMessage>> r = PollLocked(max, timeout);
    if (closed_) {
      // Close was called meanwhile: from another thread (now waiting for
      // use_mu_) or from the revoked handler. Close here, on this thread.
      DoClose();
      r = std::vector<QueueMessage>{};
    }
    owner_ = std::thread::id();
    return r;
  }

  Status Ack(const QueueMessage& m) override {
    std::lock_guard lk(mu_);
    if (closed_) {
      return Status::FailedPrecondition("Kafka consumer is closed: the message at " + m.topic + "[" +
                                        std::to_string(m.partition) + "]@" + std::to_string(m.offset) +
                                        " will be delivered again. Hint: ack before Close.");
    }
    tracker_.Ack(m.topic, m.partition, m.offset);
    return Status::Ok();
  }

  void Close() override {
    closed_ = true;
    if (wake_ != nullptr) rd_kafka_queue_yield(wake_);
    // From the revoked handler: the Poll or Close running it finishes the job.
    if (owner_ == std::this_thread::get_id()) return;
    std::lock_guard use(use_mu_);
    owner_ = std::this_thread::get_id();
    DoClose();
    owner_ = std::thread::id();
  }

  void SetRevokedHandler(RevokedHandler handler) override {
    std::lock_guard lk(mu_);
    handler_ = std::move(handler);
  }

  std::vector<TopicLag> Lag() override {
    std::lock_guard lk(lag_mu_);
    return lag_;
  }

  // Runs inside consume() or close(), on the thread that called Poll/Close.
  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& parts) override {
    const bool cooperative = consumer->rebalance_protocol() == "COOPERATIVE";
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      log::Info("Kafka consumer: assigned " + Describe(parts));
      assigned_once_ = true;
      {
        std::lock_guard lk(mu_);
        tracker_.Assign(ToTopicPartitions(parts));
      }
      if (cooperative) {
        ReportError("incremental_assign", consumer->incremental_assign(parts));
      } else {
        ReportCode("assign", consumer->assign(parts));
      }
      // A consumer that is not taking messages does not fetch new ones
      // either. Both ways, explicitly: librdkafka keeps a partition's pause
      // across an unassign and assign, so one revoked while we were paused
      // would otherwise come back paused after we resumed, and never be read.
      if (!parts.empty()) {
        ReportCode(paused_ ? "pause" : "resume", paused_ ? consumer->pause(parts) : consumer->resume(parts));
      }
      return;
    }
    if (err == RdKafka::ERR__REVOKE_PARTITIONS) {
      Revoke(consumer, parts, cooperative);
      return;
    }
    events_.Throttled("rebalance", "rebalance error: " + RdKafka::err2str(err));
    if (!cooperative) ReportCode("unassign", consumer->unassign());
  }

  // Results of librdkafka's commits (timer, unassign, close), served in
  // consume() or close(). A failed one stays stored and goes out again with
  // the next timed commit (while the partition is still ours).
  void offset_commit_cb(RdKafka::ErrorCode err, std::vector<RdKafka::TopicPartition*>& offsets) override {
    if (err == RdKafka::ERR__NO_OFFSET) return;
    bool failed = err != RdKafka::ERR_NO_ERROR;
    for (const RdKafka::TopicPartition* p : offsets) failed = failed || p->err() != RdKafka::ERR_NO_ERROR;
    if (failed) events_.Throttled("commit", "offset commit failed (retried): " + RdKafka::err2str(err));
  }

 private:
  KafkaConsumerImpl(std::string brokers, const std::string& group)
      : brokers_(std::move(brokers)), events_("consumer (group " + group + ")") {}

  Result<std::vector<QueueMessage>> PollLocked(size_t max, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + std::clamp(timeout, std::chrono::milliseconds(0), kMaxPollWait);
    SetPaused(max == 0);
    RefreshLag();
    batch_.clear();
    while (!pending_.empty() && batch_.size() < max) {
      batch_.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    while (true) {
      MaybeStore();
      if (closed_) return std::vector<QueueMessage>{};
      if (max > 0 && batch_.size() >= max) break;
      // With a message in hand, only take what is already fetched.
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      int wait_ms = batch_.empty() ? static_cast<int>(std::clamp(left, std::chrono::milliseconds(0), kPollSlice).count())
                                   : 0;
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(wait_ms));
      RdKafka::ErrorCode err = msg->err();
      if (err == RdKafka::ERR_NO_ERROR) {
        QueueMessage m = ToQueueMessage(*msg);
        // Only while paused (a message fetched before the pause took hold):
        // kept for the next Poll that takes messages.
        if (max == 0 || batch_.size() >= max) {
          pending_.push_back(std::move(m));
        } else {
          batch_.push_back(std::move(m));
        }
        continue;
      }
      if (err == RdKafka::ERR__FATAL) {
        std::string reason;
        RdKafka::ErrorCode fatal = consumer_->fatal_error(reason);
        return Status::Internal("Kafka consumer failed: " + RdKafka::err2str(fatal) + ": " + reason +
                                ". Hint: restart the consumer.");
      }
      if (err != RdKafka::ERR__TIMED_OUT && err != RdKafka::ERR__PARTITION_EOF) {
        events_.Throttled("consume" + std::to_string(static_cast<int>(err)), msg->errstr());
      }
      if (!batch_.empty() || Clock::now() >= deadline) break;
    }
    {
      std::lock_guard lk(mu_);
      for (const QueueMessage& m : batch_) tracker_.Delivered(m);
    }
    return std::move(batch_);
  }

  static QueueMessage ToQueueMessage(RdKafka::Message& msg) {
    QueueMessage m;
    m.topic = msg.topic_name();
    if (msg.key_pointer() != nullptr) {
      m.key.assign(static_cast<const char*>(msg.key_pointer()), msg.key_len());
    }
    if (msg.payload() != nullptr) m.payload.assign(static_cast<const char*>(msg.payload()), msg.len());
    m.partition = msg.partition();
    m.offset = msg.offset();
    return m;
  }

  // Per subscribed topic, over the partitions assigned here: the high
  // watermark minus the position the group would resume from (the lowest
  // unacked offset, or the next one to be handed out).
  void RefreshLag() {
    const auto now = Clock::now();
    if (now - last_lag_ < kLagInterval) return;
    last_lag_ = now;
    const bool query = paused_ && now - last_lag_query_ >= kLagQueryInterval;
    if (query) last_lag_query_ = now;
    std::map<std::string, int64_t> lag;
    for (const std::string& t : topics_) lag[t] = 0;
    PartitionList parts;
    if (consumer_->assignment(parts.get()) != RdKafka::ERR_NO_ERROR) return;
    for (RdKafka::TopicPartition* p : parts.get()) {
      int64_t low = -1, high = -1;
      RdKafka::ErrorCode e = query ? consumer_->query_watermark_offsets(p->topic(), p->partition(), &low, &high,
                                                                        kLagQueryTimeoutMs)
                                   : consumer_->get_watermark_offsets(p->topic(), p->partition(), &low, &high);
      if (e != RdKafka::ERR_NO_ERROR || high < 0) {
        auto cached = last_high_.find({p->topic(), p->partition()});
        if (cached == last_high_.end()) continue;
        high = cached->second;
      }
      last_high_[{p->topic(), p->partition()}] = high;
      int64_t from;
      {
        std::lock_guard lk(mu_);
        from = tracker_.Committable({p->topic(), p->partition()});
      }
      for (const QueueMessage& m : pending_) {  // fetched, not handed out yet
        if (m.topic == p->topic() && m.partition == p->partition() && (from < 0 || m.offset < from)) from = m.offset;
      }
      if (from < 0) {
        std::vector<RdKafka::TopicPartition*> one = {p};
        if (consumer_->position(one) != RdKafka::ERR_NO_ERROR || p->offset() < 0) continue;
        from = p->offset();
      }
      lag[p->topic()] += std::max<int64_t>(0, high - from);
    }
    std::vector<TopicLag> out;
    for (const auto& [topic, n] : lag) out.push_back({topic, n});
    std::lock_guard lk(lag_mu_);
    lag_ = std::move(out);
  }

  void SetPaused(bool pause) {
    if (pause == paused_) return;
    PartitionList parts;
    ReportCode("assignment", consumer_->assignment(parts.get()));
    if (!parts.get().empty()) {
      ReportCode(pause ? "pause" : "resume", pause ? consumer_->pause(parts.get()) : consumer_->resume(parts.get()));
    }
    paused_ = pause;
  }

  // Our commits go through librdkafka's committer, never commit() calls:
  // it commits only while the group is steady, on unassign and at close. A
  // commit of ours in flight while a rebalance bumps the generation comes
  // back "illegal generation", and librdkafka 2.0.2 then drops the
  // generation it just joined, so the SyncGroup that follows fails and the
  // assignment is lost (librdkafka #4059, fixed in 2.10).
  void MaybeStore() {
    auto now = Clock::now();
    if (now - last_store_ < kStoreInterval) return;
    last_store_ = now;
    std::vector<CommitOffset> commits;
    {
      std::lock_guard lk(mu_);
      commits = tracker_.Pending();
      tracker_.MarkSent(commits);
    }
    if (!Store(commits)) {
      std::lock_guard lk(mu_);
      for (const CommitOffset& c : commits) tracker_.CommitFailed(c);
    }
  }

  // Stores the positions for the committer; false (and logs) if refused.
  bool Store(const std::vector<CommitOffset>& commits) {
    if (commits.empty()) return true;
    PartitionList parts(commits);
    RdKafka::ErrorCode e = consumer_->offsets_store(parts.get());
    bool ok = e == RdKafka::ERR_NO_ERROR;
    for (const RdKafka::TopicPartition* p : parts.get()) ok = ok && p->err() == RdKafka::ERR_NO_ERROR;
    if (!ok) events_.Throttled("store", "storing " + Describe(commits) + " failed: " + RdKafka::err2str(e));
    return ok;
  }

  void Revoke(RdKafka::KafkaConsumer* consumer, std::vector<RdKafka::TopicPartition*>& parts, bool cooperative) {
    const bool assignment_lost = consumer->assignment_lost();
    log::Info(std::string("Kafka consumer: ") + (assignment_lost ? "lost " : "revoked ") + Describe(parts));
    std::vector<TopicPartition> tps = ToTopicPartitions(parts);
    std::vector<CommitOffset> commits;
    std::vector<QueueMessage> lost;
    RevokedHandler handler;
    {
      std::lock_guard lk(mu_);
      lost = tracker_.Revoke(tps, &commits);
      handler = handler_;
    }
    // Fetched but not handed out yet: the partitions' next owner gets them.
    auto revoked = [&](const QueueMessage& m) {
      return std::find(tps.begin(), tps.end(), TopicPartition{m.topic, m.partition}) != tps.end();
    };
    std::erase_if(batch_, revoked);
    std::erase_if(pending_, revoked);
    if (handler && !lost.empty()) {
      try {
        handler(lost);
      } catch (const std::exception& e) {
        log::Error(std::string("Kafka consumer: the revoked-partitions handler threw: ") + e.what());
      } catch (...) {
        log::Error("Kafka consumer: the revoked-partitions handler threw");
      }
    }
    // Committed by the unassign below (librdkafka commits what is stored
    // for partitions it removes). A lost assignment (session timed out) may
    // already belong to another member: nothing more is stored for it.
    if (!assignment_lost) Store(commits);
    if (cooperative) {
      ReportError("incremental_unassign", consumer->incremental_unassign(parts));
    } else {
      ReportCode("unassign", consumer->unassign());
    }
  }

  // Holds use_mu_.
  void DoClose() {
    if (consumer_closed_) return;
    consumer_closed_ = true;
    std::vector<CommitOffset> commits;
    {
      std::lock_guard lk(mu_);
      commits = tracker_.Pending();
      tracker_.MarkSent(commits);
    }
    Store(commits);
    FinishFirstJoin();
    // Leaves the group; revokes (rebalance_cb) what is still assigned,
    // and commits what is stored, before it returns.
    ReportCode("close", consumer_->close());
  }

  // librdkafka 2.0.2 aborts (an assertion in the sticky assignor) when a
  // consumer is destroyed after the answer to its first JoinGroup and before
  // the answer to the SyncGroup that follows. A consumer with a member id
  // and no assignment yet may be in between: let that join finish first
  // (bounded; what it fetches meanwhile is left for the group).
  void FinishFirstJoin() {
    if (assigned_once_ || consumer_->memberid().empty()) return;
    const auto until = Clock::now() + kFirstJoinWait;
    while (!assigned_once_ && Clock::now() < until) {
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(50));
    }
  }

  void ReportCode(const char* what, RdKafka::ErrorCode e) {
    if (e != RdKafka::ERR_NO_ERROR) events_.Throttled(what, std::string(what) + ": " + RdKafka::err2str(e));
  }
  void ReportError(const char* what, RdKafka::Error* e) {
    if (e == nullptr) return;
    events_.Throttled(what, std::string(what) + ": " + e->str());
    delete e;
  }

  const std::string brokers_;
  EventLogger events_;  // outlives consumer_, which calls it
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  rd_kafka_queue_t* wake_ = nullptr;  // the consumer queue, to yield a blocked consume()

  std::atomic<bool> closed_{false};
  std::atomic<std::thread::id> owner_{};  // the thread holding use_mu_, if any
  // Held by Poll for its whole run and by the close: librdkafka's consumer
  // is used by one thread at a time, and callbacks run on that thread.
  std::mutex use_mu_;
  bool consumer_closed_ = false;         // guarded by use_mu_
  bool paused_ = false;                  // guarded by use_mu_
  bool assigned_once_ = false;           // guarded by use_mu_: an assignment was received
  Clock::time_point last_store_{};       // guarded by use_mu_
  std::vector<QueueMessage> batch_;      // guarded by use_mu_: the Poll being filled
  std::deque<QueueMessage> pending_;     // guarded by use_mu_: fetched while paused

  std::mutex mu_;  // guards tracker_ and handler_ (Ack comes from any thread)
  AckTracker tracker_;
  RevokedHandler handler_;

  std::vector<std::string> topics_;                 // subscribed; set at creation
  Clock::time_point last_lag_{}, last_lag_query_{};  // guarded by use_mu_
  std::map<TopicPartition, int64_t> last_high_;      // guarded by use_mu_: last known high watermarks
  std::mutex lag_mu_;                                // guards lag_
  std::vector<TopicLag> lag_;
};

// ---------------------------------------------------------------------------
// Queue (producer)

// One Publish waiting for its delivery report.
struct Delivery {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
};

class KafkaQueueImpl final : public Queue, public RdKafka::DeliveryReportCb {
 public:
  static Result<std::unique_ptr<Queue>> Open(const QueueOptions& options) {
    if (options.kafka_brokers.empty()) {
      return Status::InvalidArgument("no Kafka brokers given. Hint: set KAFKA_BROKERS=host:port[,host:port].");
    }
    std::unique_ptr<KafkaQueueImpl> q(new KafkaQueueImpl(options));
    Properties props = kafka::ProducerProperties(options);
    for (const auto& [k, v] : props) {
      if (k == "message.timeout.ms" || k == "delivery.timeout.ms") {
        try {
          q->delivery_timeout_ = std::chrono::milliseconds(std::stoll(v));
        } catch (const std::exception&) {
          // librdkafka rejects the value below.
        }
      }
    }
    auto conf = MakeConf(props);
    if (!conf.ok()) return conf.status();
    AF_RETURN_IF_ERROR(SetCallback<RdKafka::DeliveryReportCb>(**conf, "dr_cb", q.get()));
    AF_RETURN_IF_ERROR(SetCallback<RdKafka::EventCb>(**conf, "event_cb", &q->events_));
    std::string err;
    q->producer_.reset(RdKafka::Producer::create(conf->get(), err));
    if (q->producer_ == nullptr) {
      return Status::InvalidArgument("cannot create the Kafka producer: " + err +
                                     ". Hint: check the --kafka-property values.");
    }
    q->poller_ = std::thread([p = q.get()] {
      while (!p->stop_) {
        p->producer_->poll(100);
        p->LearnQueuedTopics();
      }
    });
    return std::unique_ptr<Queue>(std::move(q));
  }

  ~KafkaQueueImpl() override {
    if (poller_.joinable()) {
      stop_ = true;
      poller_.join();
    }
    topics_.clear();  // handles go before their producer
    if (producer_ != nullptr) {
      // Every Publish waited for its report, so normally nothing is left
      // but PublishAsync messages in flight; a report that has not come
      // still owns its callback, which the purge runs (with an error).
      producer_->flush(1000);
      producer_->purge(RdKafka::Producer::PURGE_QUEUE | RdKafka::Producer::PURGE_INFLIGHT);
      producer_->poll(0);
      producer_.reset();
    }
  }

  Status Publish(const std::string& topic, const std::string& key, const std::string& payload) override {
    auto d = std::make_shared<Delivery>();
    bool produced = Produce(topic, key, payload, [d](Status s) {
      {
        std::lock_guard lk(d->mu);
        d->done = true;
        d->status = std::move(s);
      }
      d->cv.notify_all();
    });
    if (produced) LearnTopic(topic);
    std::unique_lock lk(d->mu);
    if (!d->cv.wait_for(lk, delivery_timeout_ + kDeliveryGrace, [&] { return d->done; })) {
      return Status::Unavailable("Kafka publish to " + topic + ": no delivery report within " +
                                 std::to_string((delivery_timeout_ + kDeliveryGrace).count()) +
                                 " ms; the message may or may not be written" + BrokerHint(options_.kafka_brokers));
    }
    return d->status;
  }

  void PublishAsync(const std::string& topic, const std::string& key, const std::string& payload,
                    PublishDone done) override {
    if (!Produce(topic, key, payload, std::move(done))) return;
    // As in Publish, but the metadata request waits on the poller thread,
    // not on the caller's.
    std::lock_guard lk(topics_mu_);
    if (topics_.count(topic) == 0) to_learn_.insert(topic);
  }

  Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>& topics,
                                                   const std::string& group) override {
    if (topics.empty()) return Status::InvalidArgument("Kafka subscribe: no topics");
    for (const std::string& t : topics) {
      if (t.empty()) return Status::InvalidArgument("Kafka subscribe: empty topic name");
    }
    if (group.empty()) return Status::InvalidArgument("Kafka subscribe: empty consumer group");
    return KafkaConsumerImpl::Create(options_, topics, group);
  }

  Status Ping() override {
    RdKafka::Metadata* md = nullptr;
    RdKafka::ErrorCode e = producer_->metadata(false, nullptr, &md, kPingTimeoutMs);
    std::unique_ptr<RdKafka::Metadata> owned(md);
    if (e != RdKafka::ERR_NO_ERROR) {
      return Status::Unavailable("Kafka brokers did not answer a metadata request within " +
                                 std::to_string(kPingTimeoutMs) + " ms: " + RdKafka::err2str(e) +
                                 BrokerHint(options_.kafka_brokers));
    }
    return Status::Ok();
  }

  // Runs on the poller thread (or the destructor's, for purged messages).
  void dr_cb(RdKafka::Message& m) override {
    std::unique_ptr<PublishDone> done(static_cast<PublishDone*>(m.msg_opaque()));
    if (done == nullptr) return;
    Status s = m.err() == RdKafka::ERR_NO_ERROR ? Status::Ok() : PublishError(m.topic_name(), m.err(), m.errstr());
    Report(*done, std::move(s));
  }

 private:
  explicit KafkaQueueImpl(QueueOptions options) : options_(std::move(options)), events_("producer") {}

  // Hands the message to librdkafka; `done` gets the delivery report. False
  // (after calling `done` with the error) if librdkafka refused it at once.
  bool Produce(const std::string& topic, const std::string& key, const std::string& payload, PublishDone done) {
    if (topic.empty()) {
      Report(done, Status::InvalidArgument("Kafka publish: empty topic name"));
      return false;
    }
    auto* opaque = new PublishDone(std::move(done));
    RdKafka::ErrorCode e = producer_->produce(
        topic, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY, const_cast<char*>(payload.data()),
        payload.size(), key.empty() ? nullptr : key.data(), key.size(), 0, opaque);
    if (e != RdKafka::ERR_NO_ERROR) {
      std::unique_ptr<PublishDone> owned(opaque);
      Report(*owned, PublishError(topic, e, RdKafka::err2str(e)));
      return false;
    }
    return true;
  }

  // Runs a completion; one that throws is a bug in its owner, not a reason
  // to take the poller thread down.
  static void Report(const PublishDone& done, Status s) {
    try {
      done(std::move(s));
    } catch (const std::exception& e) {
      log::Error(std::string("Kafka producer: a publish completion threw: ") + e.what());
    } catch (...) {
      log::Error("Kafka producer: a publish completion threw");
    }
  }

  // On the poller thread: the topics PublishAsync produced to for the first time.
  void LearnQueuedTopics() {
    std::set<std::string> topics;
    {
      std::lock_guard lk(topics_mu_);
      if (to_learn_.empty()) return;
      topics.swap(to_learn_);
    }
    for (const std::string& t : topics) LearnTopic(t);
  }

  // librdkafka 2.0 looks up a topic it has not produced to before only in
  // its once-a-second topic scan, so a first Publish to a topic would wait
  // up to 1 s. Asking for the topic's metadata (once per topic) right after
  // the produce partitions the queued message as soon as the answer comes.
  // The wait counts against the Publish's own delivery wait.
  void LearnTopic(const std::string& topic) {
    RdKafka::Topic* handle = nullptr;
    {
      std::lock_guard lk(topics_mu_);
      if (topics_.count(topic) > 0) return;
      std::string err;
      handle = RdKafka::Topic::create(producer_.get(), topic, nullptr, err);
      if (handle == nullptr) return;
      topics_.emplace(topic, std::unique_ptr<RdKafka::Topic>(handle));
    }
    RdKafka::Metadata* md = nullptr;
    int wait_ms = static_cast<int>(std::min<int64_t>(delivery_timeout_.count(), kPingTimeoutMs));
    producer_->metadata(false, handle, &md, wait_ms);
    delete md;
  }

  Status PublishError(const std::string& topic, RdKafka::ErrorCode e, const std::string& what) const {
    std::string msg = "Kafka publish to " + topic + " failed: " + what;
    switch (e) {
      case RdKafka::ERR_MSG_SIZE_TOO_LARGE:
      case RdKafka::ERR_RECORD_LIST_TOO_LARGE:
        return Status::TooLarge(msg +
                                ". Hint: raise the topic's max.message.bytes (and the producer's "
                                "message.max.bytes, --kafka-property) or send a smaller request.");
      case RdKafka::ERR__UNKNOWN_TOPIC:
      case RdKafka::ERR_UNKNOWN_TOPIC_OR_PART:
        return Status::Unavailable(msg + ". Hint: create the topic " + topic +
                                   " or enable auto.create.topics.enable on the brokers.");
      case RdKafka::ERR__FATAL: {
        std::string reason;
        RdKafka::ErrorCode fatal = producer_->fatal_error(reason);
        return Status::Unavailable(msg + " (" + RdKafka::err2str(fatal) + ": " + reason +
                                   "). Hint: the Kafka producer cannot continue; restart the service.");
      }
      default:
        return Status::Unavailable(msg + BrokerHint(options_.kafka_brokers));
    }
  }

  const QueueOptions options_;
  std::chrono::milliseconds delivery_timeout_{10000};
  EventLogger events_;  // outlives producer_
  std::unique_ptr<RdKafka::Producer> producer_;
  std::mutex topics_mu_;
  std::map<std::string, std::unique_ptr<RdKafka::Topic>> topics_;  // guarded by topics_mu_; see LearnTopic
  std::set<std::string> to_learn_;  // guarded by topics_mu_: for the poller thread's LearnQueuedTopics
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

}  // namespace

Result<std::unique_ptr<Queue>> OpenKafkaQueue(const QueueOptions& options) { return KafkaQueueImpl::Open(options); }

}  // namespace af
