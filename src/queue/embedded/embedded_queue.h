// EmbeddedQueue: the durable in-process Queue backend, one SQLite file
// `<embedded_dir>/queue.db` (or an in-memory database when embedded_dir is
// "", for tests). Open it with af::OpenEmbeddedQueue (queue.h).
//
// Storage: messages(seq, topic, key, payload) in publish order, the groups
// subscribed to each topic, and per-group acks of messages that some other
// group still has to ack. A message row is deleted once every group
// subscribed to its topic has acked it; a message on a topic no group has
// subscribed to yet is kept until one does (a new group starts at the oldest
// message still stored, like Kafka's auto.offset.reset=earliest). Groups are
// never forgotten: a group that stops consuming keeps its topics' messages.
//
// Durability: WAL with synchronous=NORMAL. A Publish or Ack that returned OK
// survives a crash or SIGKILL of the process; the last commits before a power
// loss or kernel crash may be lost (synchronous=FULL would cost ~10x publish
// throughput). Which messages are in flight to which consumer lives in memory
// only, so after a restart every unacked message is deliverable again.
//
// The file is opened with an exclusive lock: one process (one EmbeddedQueue)
// per directory; a second open fails with Unavailable.
//
// Thread-safety: as queue.h. One mutex guards the state and the SQLite
// connection; Poll waits on a condition variable that Publish and Close
// signal. A consumer may outlive its queue: after the queue is destroyed its
// blocked Poll returns empty and later calls return Unavailable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "queue/queue.h"

namespace af {

namespace embedded_internal {
class QueueCore;
}  // namespace embedded_internal

class EmbeddedQueue final : public Queue {
 public:
  // Creates `options.embedded_dir` if needed. InvalidArgument if the
  // directory cannot be created, Unavailable if the file is in use or cannot
  // be opened, FailedPrecondition if it was written by a newer agentflow.
  static Result<std::unique_ptr<EmbeddedQueue>> Open(const QueueOptions& options);
  // Wakes every blocked Poll of this queue's consumers and closes the file.
  ~EmbeddedQueue() override;

  Status Publish(const std::string& topic, const std::string& key, const std::string& payload) override;
  Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>& topics,
                                                   const std::string& group) override;
  Status Ping() override;

 private:
  explicit EmbeddedQueue(std::shared_ptr<embedded_internal::QueueCore> core);
  std::shared_ptr<embedded_internal::QueueCore> core_;
};

}  // namespace af
