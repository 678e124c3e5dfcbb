// The Execution Consumer: takes execution and cancellation requests off the
// queue and hands them to the Engine. An execution request is acked only
// when its run has reached a terminal state (or was a duplicate), so a crash
// at any moment leaves it on the queue to be delivered again; the run then
// resumes from its recorded state. Messages it cannot use (malformed, an
// unknown message type, a request for a run that does not exist) go to the
// dead-letter topic with the reason and are then acked, so they never block
// the queue; one that cannot be dead-lettered (broker down) stays unacked
// and comes back.
//
// Thread-safety: Start/Stop from one thread. Runs one polling thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "executor/engine.h"
#include "queue/queue.h"

namespace af {

struct ConsumerOptions {
  std::string group = "execution-consumer-group";     // KAFKA_GROUP_ID
  std::string execution_topic = kExecutionTopic;       // KAFKA_EXECUTION_TOPIC
  std::string cancellation_topic = kCancellationTopic; // KAFKA_CANCELLATION_TOPIC
  size_t max_active_runs = 10000;  // stop taking new requests above this many runs in flight (--max-runs)
  size_t poll_batch = 64;         // messages taken per poll
  // Larger messages are not parsed. An execution request keyed by a run id
  // still runs: its plan and input are read from the store instead.
  size_t max_message_bytes = kDefaultMaxQueueMessageBytes;  // --max-message-bytes
  // Dead letters: {"reason", "topic", "partition", "offset", "key",
  // "payload" (the original text), "failed_at"}, keyed like the original.
  // Empty: unusable messages are only logged and acked.
  std::string dead_letter_topic = kDeadLetterTopic;  // KAFKA_DLQ_TOPIC
};

class ExecutionConsumer {
 public:
  ExecutionConsumer(Queue* queue, Engine* engine, ConsumerOptions options);
  ~ExecutionConsumer();

  Status Start();
  // Stops taking new requests but keeps the subscription open, so runs in
  // flight can still finish and be acked (graceful shutdown, step 1).
  void StopTaking();
  // Stops polling and closes the subscription: unacked messages stay queued
  // and are delivered again, here after a restart or to another consumer of
  // the group.
  void Stop();

  // Messages handled so far (for tests and metrics).
  uint64_t handled() const { return handled_.load(); }
  uint64_t rejected() const { return rejected_.load(); }
  // Messages written to the dead-letter topic.
  uint64_t dead_lettered() const { return dead_lettered_->load(); }
  // The subscription's lag (QueueConsumer::Lag); empty before Start. Any thread.
  std::vector<QueueConsumer::TopicLag> Lag() const {
    return consumer_ ? consumer_->Lag() : std::vector<QueueConsumer::TopicLag>{};
  }

 private:
  void Loop();
  void Handle(const QueueMessage& m);
  // Publishes `m` with `reason` to the dead-letter topic, then acks it.
  void DeadLetter(const QueueMessage& m, const std::string& reason);

  Queue* queue_;
  Engine* engine_;
  ConsumerOptions options_;
  std::shared_ptr<QueueConsumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> handled_{0};
  std::atomic<uint64_t> rejected_{0};
  // Shared with the dead-letter publishes' completions, which the queue may
  // run after this consumer is gone (flushed when the queue closes).
  std::shared_ptr<std::atomic<uint64_t>> dead_lettered_ = std::make_shared<std::atomic<uint64_t>>(0);
  // Execution requests handed to the engine whose outcome is not reported
  // yet. Submit only posts to the engine, so its ActiveRuns() lags behind:
  // the back-pressure counts these too, or one poll could overshoot max_active_runs.
  std::atomic<size_t> submitted_{0};
};

}  // namespace af
