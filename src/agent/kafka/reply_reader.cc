#include "agent/kafka/reply_reader.h"

#include <librdkafka/rdkafkacpp.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "common/log.h"
#include "queue/kafka/kafka_config.h"
#include "queue/kafka/rdkafka_util.h"

namespace af {
namespace {

using Clock = std::chrono::steady_clock;

// Metadata and watermark requests.
constexpr int kRequestTimeoutMs = 5000;
// Between attempts to learn the topic's partitions and watermarks.
constexpr std::chrono::milliseconds kRetryDelay{1000};
// Longest single consume(): bounds how long the destructor waits.
constexpr int kConsumeSliceMs = 200;

// Owns librdkafka partition handles.
class PartitionHandles {
 public:
  ~PartitionHandles() { RdKafka::TopicPartition::destroy(v_); }
  void Add(const std::string& topic, int32_t partition, int64_t offset) {
    v_.push_back(RdKafka::TopicPartition::create(topic, partition, offset));
  }
  std::vector<RdKafka::TopicPartition*>& get() { return v_; }

 private:
  std::vector<RdKafka::TopicPartition*> v_;
};

class ReplyReaderImpl final : public KafkaReplyReader {
 public:
  ReplyReaderImpl(ReplyReaderOptions options, Sink sink, ReadyFn ready)
      : options_(std::move(options)),
        sink_(std::move(sink)),
        ready_(std::move(ready)),
        events_("reply reader (" + options_.topic + ")") {}

  ~ReplyReaderImpl() override {
    {
      std::lock_guard lk(stop_mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    topic_.reset();  // a handle on the consumer: goes first
    if (consumer_ != nullptr) {
      consumer_->close();  // never subscribed: only drops the assignment
      consumer_.reset();
    }
  }

  Status Create() {
    // A group id is required by librdkafka's KafkaConsumer, but this reader
    // never joins the group (assign, not subscribe) and never commits.
    kafka::Properties props =
        kafka::ConsumerProperties(options_.kafka, options_.kafka.client_id + "-replies-" + NewUuid());
    props.emplace_back("enable.partition.eof", "false");
    props.emplace_back("enable.auto.commit", "false");
    auto conf = kafka::MakeConf(props);
    if (!conf.ok()) return conf.status();
    AF_RETURN_IF_ERROR(kafka::SetCallback<RdKafka::EventCb>(**conf, "event_cb", &events_));
    std::string err;
    consumer_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
    if (consumer_ == nullptr) {
      return Status::InvalidArgument("cannot create the Kafka reply reader: " + err +
                                     ". Hint: check the --kafka-property values.");
    }
    topic_.reset(RdKafka::Topic::create(consumer_.get(), options_.topic, nullptr, err));
    if (topic_ == nullptr) return Status::InvalidArgument("Kafka reply topic " + options_.topic + ": " + err);
    thread_ = std::thread([this] { Run(); });
    return Status::Ok();
  }

 private:
  void Run() {
    // Phase 1: the partitions and their high watermarks.
    while (!Stopping()) {
      Status s = AssignFromHighWatermarks();
      if (s.ok()) break;
      ready_(false, s.message());
      events_.Throttled("start", "cannot read replies yet: " + s.message() + " (trying again every second)");
      Sleep(kRetryDelay);
    }
    if (Stopping()) return;
    ready_(true, "");
    auto next_check = Clock::now() + options_.partition_check_interval;
    // Phase 2: read.
    while (!Stopping()) {
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(kConsumeSliceMs));
      switch (msg->err()) {
        case RdKafka::ERR_NO_ERROR:
          if (msg->payload() != nullptr) {
            sink_(std::string_view(static_cast<const char*>(msg->payload()), msg->len()));
          }
          break;
        case RdKafka::ERR__TIMED_OUT:
        case RdKafka::ERR__PARTITION_EOF:
          break;
        default:
          events_.Throttled("consume" + std::to_string(static_cast<int>(msg->err())), msg->errstr());
          break;
      }
      if (Clock::now() >= next_check) {
        next_check = Clock::now() + options_.partition_check_interval;
        AssignNewPartitions();
      }
    }
  }

  // The topic's partition ids, from a metadata request (which also creates
  // the topic where the brokers auto-create topics).
  Result<std::vector<int32_t>> Partitions() {
    RdKafka::Metadata* md = nullptr;
    RdKafka::ErrorCode e = consumer_->metadata(false, topic_.get(), &md, kRequestTimeoutMs);
    std::unique_ptr<RdKafka::Metadata> owned(md);
    if (e != RdKafka::ERR_NO_ERROR) {
      return Status::Unavailable("no metadata for topic " + options_.topic + ": " + RdKafka::err2str(e) +
                                 kafka::BrokerHint(options_.kafka.kafka_brokers));
    }
    for (const RdKafka::TopicMetadata* t : *md->topics()) {
      if (t->topic() != options_.topic) continue;
      if (t->err() != RdKafka::ERR_NO_ERROR || t->partitions()->empty()) {
        return Status::Unavailable("topic " + options_.topic + " cannot be read: " + RdKafka::err2str(t->err()) +
                                   ". Hint: create the topic or enable auto.create.topics.enable on the brokers");
      }
      std::vector<int32_t> ids;
      for (const RdKafka::PartitionMetadata* p : *t->partitions()) ids.push_back(p->id());
      return ids;
    }
    return Status::Unavailable("topic " + options_.topic +
                               " is not known to the brokers. Hint: create the topic or enable "
                               "auto.create.topics.enable on the brokers");
  }

  Status AssignFromHighWatermarks() {
    auto ids = Partitions();
    if (!ids.ok()) return ids.status();
    PartitionHandles parts;
    std::map<int32_t, int64_t> start;
    for (int32_t id : *ids) {
      int64_t low = 0, high = 0;
      RdKafka::ErrorCode e = consumer_->query_watermark_offsets(options_.topic, id, &low, &high, kRequestTimeoutMs);
      if (e != RdKafka::ERR_NO_ERROR) {
        return Status::Unavailable("no high watermark for " + options_.topic + "[" + std::to_string(id) +
                                   "]: " + RdKafka::err2str(e) + kafka::BrokerHint(options_.kafka.kafka_brokers));
      }
      parts.Add(options_.topic, id, high);
      start[id] = high;
    }
    if (RdKafka::Error* err = consumer_->incremental_assign(parts.get())) {
      std::string what = err->str();
      delete err;
      return Status::Internal("cannot assign the partitions of " + options_.topic + ": " + what);
    }
    std::string positions;
    for (const auto& [id, offset] : start) {
      positions += (positions.empty() ? "" : ", ") + std::to_string(id) + "@" + std::to_string(offset);
      assigned_.insert(id);
    }
    log::Info("Kafka agent replies: reading " + options_.topic + " partitions " + positions +
              " (from their ends at start)");
    return Status::Ok();
  }

  void AssignNewPartitions() {
    auto ids = Partitions();
    if (!ids.ok()) return;  // try again at the next check
    PartitionHandles parts;
    std::vector<int32_t> added;
    for (int32_t id : *ids) {
      if (assigned_.count(id) > 0) continue;
      parts.Add(options_.topic, id, RdKafka::Topic::OFFSET_BEGINNING);
      added.push_back(id);
    }
    if (added.empty()) return;
    if (RdKafka::Error* err = consumer_->incremental_assign(parts.get())) {
      events_.Throttled("assign", "cannot assign new partitions of " + options_.topic + ": " + err->str());
      delete err;
      return;
    }
    for (int32_t id : added) {
      assigned_.insert(id);
      log::Info("Kafka agent replies: reading new partition " + options_.topic + "[" + std::to_string(id) +
                "] from its beginning");
    }
  }

  bool Stopping() {
    std::lock_guard lk(stop_mu_);
    return stop_;
  }
  void Sleep(std::chrono::milliseconds d) {
    std::unique_lock lk(stop_mu_);
    stop_cv_.wait_for(lk, d, [this] { return stop_; });
  }

  const ReplyReaderOptions options_;
  const Sink sink_;
  const ReadyFn ready_;
  kafka::EventLogger events_;  // outlives consumer_
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  std::unique_ptr<RdKafka::Topic> topic_;  // for metadata requests; reset before consumer_
  std::set<int32_t> assigned_;             // reader thread only
  std::thread thread_;
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by stop_mu_
};

}  // namespace

Result<std::unique_ptr<KafkaReplyReader>> KafkaReplyReader::Start(const ReplyReaderOptions& options, Sink sink,
                                                                   ReadyFn ready) {
  if (options.kafka.kafka_brokers.empty()) {
    return Status::InvalidArgument("no Kafka brokers given. Hint: set KAFKA_BROKERS=host:port[,host:port].");
  }
  if (options.topic.empty()) return Status::InvalidArgument("Kafka reply reader: empty topic name");
  auto reader = std::make_unique<ReplyReaderImpl>(options, std::move(sink), std::move(ready));
  AF_RETURN_IF_ERROR(reader->Create());
  return std::unique_ptr<KafkaReplyReader>(std::move(reader));
}

}  // namespace af
