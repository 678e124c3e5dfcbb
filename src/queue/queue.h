// The queue interface that carries execution and cancellation requests from
// the API to Execution Consumers. Backends: EmbeddedQueue (durable, in
// process, the embedded default) and KafkaQueue (the distributed topology).
// Every backend passes the conformance suite in queue_conformance.h.
//
// Delivery is at-least-once: a message is delivered to one consumer of each
// group until that consumer Acks it. Messages delivered but not acked when a
// consumer closes or the process dies are delivered again (to the same group)
// later. Consumers must therefore treat duplicates as harmless.
//
// Thread-safety: Queue is safe from any thread. A QueueConsumer is used by
// one thread at a time, except Ack and Close, which may be called from any
// thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace af {

// The seed's topic names (overridable by KAFKA_EXECUTION_TOPIC and
// KAFKA_CANCELLATION_TOPIC).
inline constexpr const char* kExecutionTopic = "workflow.execution.requests";
inline constexpr const char* kCancellationTopic = "workflow.cancellation.requests";
// Where consumers set aside messages they cannot use (KAFKA_DLQ_TOPIC).
inline constexpr const char* kDeadLetterTopic = "workflow.execution.requests.dlq";

struct QueueMessage {
  std::string topic;
  std::string key;      // run_id for agentflow's messages
  std::string payload;  // JSON text
  // Backend position (embedded: sequence number; Kafka: partition/offset).
  int32_t partition = 0;
  int64_t offset = 0;
};

class QueueConsumer {
 public:
  virtual ~QueueConsumer() = default;
  // Waits up to `timeout` for messages; returns at most `max` (possibly none).
  // A Poll blocked when Close is called (from another thread) returns
  // promptly with no messages; a Poll after Close is FailedPrecondition.
  // Poll(0, t) takes no message but keeps the consumer's group membership
  // alive (a consumer whose executor is full keeps calling it; a backend
  // with a poll deadline, like Kafka, must not drop it from the group).
  virtual Result<std::vector<QueueMessage>> Poll(size_t max, std::chrono::milliseconds timeout) = 0;
  // The message is fully handled: it is not delivered to this group again.
  // Messages may be acked in any order; acking one twice is OK. After Close,
  // Ack is FailedPrecondition (the message will be delivered again): ack
  // before closing.
  virtual Status Ack(const QueueMessage& m) = 0;
  // Stops consuming; unacked messages become deliverable again. Idempotent;
  // may be called from any thread. The destructor closes.
  virtual void Close() = 0;

  // Called, on the polling thread inside Poll (or Close), when the group
  // takes partitions away from this consumer (a rebalance): `lost` are the
  // messages delivered from those partitions and not yet acked. Before it
  // returns, the handler must stop working on them: they will be delivered
  // to another consumer of the group, and acking them later has no effect.
  // Backends without rebalances (the embedded queue) never call it.
  using RevokedHandler = std::function<void(const std::vector<QueueMessage>& lost)>;
  virtual void SetRevokedHandler(RevokedHandler handler) { (void)handler; }

  // Consumer lag: per subscribed topic, the messages this consumer's group
  // has not acked yet (waiting to be delivered, or delivered and not acked)
  // on the partitions this consumer holds. Cheap and safe from any thread,
  // also after Close (then: the last value); never asks a broker on the
  // caller's thread, so it may be a little behind (Kafka: refreshed every
  // second by Poll). Empty if the backend cannot tell.
  struct TopicLag {
    std::string topic;
    int64_t messages = 0;
  };
  virtual std::vector<TopicLag> Lag() { return {}; }
};

class Queue {
 public:
  virtual ~Queue() = default;
  // Durably appends a message; when this returns OK the message survives a
  // crash of the process.
  virtual Status Publish(const std::string& topic, const std::string& key, const std::string& payload) = 0;

  // Called exactly once with what Publish would have returned.
  using PublishDone = std::function<void(Status)>;
  // Appends a message without waiting for the write: `done` runs once the
  // message is durable (OK) or could not be written. It runs on one of the
  // queue's threads, or on the calling thread before PublishAsync returns
  // (an immediate failure, or a backend without asynchronous writes), so it
  // must be quick and must not call the queue's blocking operations (Publish,
  // Subscribe). For services that must not block a thread per message (the
  // Kafka agent transport). The default calls Publish.
  virtual void PublishAsync(const std::string& topic, const std::string& key, const std::string& payload,
                            PublishDone done) {
    done(Publish(topic, key, payload));
  }
  // Joins consumer group `group` on `topics`.
  virtual Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>& topics,
                                                           const std::string& group) = 0;
  // Cheap liveness check.
  virtual Status Ping() = 0;
};

struct QueueOptions {
  // Embedded: a directory for the queue file ("" = in memory, not durable;
  // tests only).
  std::string embedded_dir;
  // Kafka: bootstrap servers "host:port[,host:port]" (KAFKA_BROKERS). Empty:
  // the embedded queue.
  std::string kafka_brokers;
  // Extra librdkafka properties ("fetch.wait.max.ms" → "10", ...), applied
  // to producers and consumers after agentflow's defaults.
  std::map<std::string, std::string> kafka_properties;
  // Kafka client.id prefix (shows in broker logs).
  std::string client_id = "agentflow";
};

// Opens the embedded queue in `options.embedded_dir`.
Result<std::unique_ptr<Queue>> OpenEmbeddedQueue(const QueueOptions& options);

// Opens Kafka when `kafka_brokers` is set, else the embedded queue.
Result<std::unique_ptr<Queue>> OpenQueue(const QueueOptions& options);

}  // namespace af
