// AckTracker: the ack bookkeeping of one Kafka consumer, as plain logic with
// no broker (unit-tested in ack_tracker_test.cc).
//
// Kafka remembers one committed offset per partition: "everything before it
// is done". agentflow acks messages in any order (a run's request is acked
// when the run ends), so per partition this tracks the offsets delivered to
// the application and not yet acked, and the committable position is
//   - the lowest unacked offset, or
//   - the highest delivered offset + 1 when every delivered one is acked.
// Committing it never skips an unacked message; acked messages after an
// unacked one are delivered again after a restart or rebalance (at least
// once).
//
// Tracking lives per assignment: Assign starts a partition afresh, Revoke
// hands back its unacked messages and last commit and forgets it, so acks of
// messages delivered before a revoke are ignored (see KafkaQueue).
//
// Thread-safety: none; the owner serialises calls.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "queue/queue.h"

namespace af::kafka {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  friend auto operator<=>(const TopicPartition&, const TopicPartition&) = default;
};

// A position to commit: the next offset the group should read.
struct CommitOffset {
  TopicPartition tp;
  int64_t offset = 0;
  friend bool operator==(const CommitOffset&, const CommitOffset&) = default;
};

class AckTracker {
 public:
  // The partitions now belong to this consumer; earlier tracking of them
  // (if any) is dropped.
  void Assign(const std::vector<TopicPartition>& tps);

  // The partitions are taken away. Returns their delivered, unacked
  // messages in (topic, partition, offset) order and appends to `commits`
  // the positions not committed yet (see Pending). Forgets the partitions.
  std::vector<QueueMessage> Revoke(const std::vector<TopicPartition>& tps, std::vector<CommitOffset>* commits);

  // Every tracked partition; used at close.
  std::vector<TopicPartition> Assigned() const;

  // `m` was handed to the application. A partition not assigned yet is
  // tracked from here on.
  void Delivered(const QueueMessage& m);

  // Returns true if (topic, partition, offset) was delivered and unacked
  // (it is acked now); false for a repeated ack, or a message this tracker
  // does not know (never delivered, or from a revoked partition).
  bool Ack(const std::string& topic, int32_t partition, int64_t offset);

  // Positions that moved past what was last handed to MarkSent.
  std::vector<CommitOffset> Pending() const;
  // A commit of these positions was requested.
  void MarkSent(const std::vector<CommitOffset>& commits);
  // The commit of `c` failed: it is pending again (unless a later commit was
  // requested meanwhile).
  void CommitFailed(const CommitOffset& c);

  // The committable position of a partition, or -1 if nothing was delivered
  // from it in this assignment (or it is not tracked).
  int64_t Committable(const TopicPartition& tp) const;
  size_t unacked_count() const;

 private:
  struct Partition {
    std::map<int64_t, QueueMessage> unacked;  // by offset
    int64_t next = -1;  // highest delivered offset + 1; -1: none delivered
    int64_t sent = -1;  // last position handed to MarkSent
    int64_t Committable() const { return unacked.empty() ? next : unacked.begin()->first; }
  };
  std::map<TopicPartition, Partition> parts_;
};

}  // namespace af::kafka
