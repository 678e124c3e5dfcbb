// The Execution Consumer: takes execution and cancellation requests off the
// queue and hands them to the Engine. An execution request is acked only
// when its run has reached a terminal state (or was a duplicate), so a crash
// at any moment leaves it on the queue to be delivered again; the run then
// resumes from its recorded state. Malformed messages are logged and set
// aside (acked) so they never block the queue.
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
  size_t max_active_runs = 1000;  // stop taking new requests above this many runs in flight
  size_t poll_batch = 64;         // messages taken per poll
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
  // The subscription's lag (QueueConsumer::Lag); empty before Start. Any thread.
  std::vector<QueueConsumer::TopicLag> Lag() const {
    return consumer_ ? consumer_->Lag() : std::vector<QueueConsumer::TopicLag>{};
  }

 private:
  void Loop();
  void Handle(const QueueMessage& m);

  Queue* queue_;
  Engine* engine_;
  ConsumerOptions options_;
  std::shared_ptr<QueueConsumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> handled_{0};
  std::atomic<uint64_t> rejected_{0};
};

}  // namespace af
