#include "queue/kafka/ack_tracker.h"

#include <algorithm>

namespace af::kafka {

void AckTracker::Assign(const std::vector<TopicPartition>& tps) {
  for (const TopicPartition& tp : tps) parts_[tp] = Partition{};
}

std::vector<QueueMessage> AckTracker::Revoke(const std::vector<TopicPartition>& tps,
                                             std::vector<CommitOffset>* commits) {
  std::vector<TopicPartition> sorted = tps;
  std::sort(sorted.begin(), sorted.end());
  std::vector<QueueMessage> lost;
  for (const TopicPartition& tp : sorted) {
    auto it = parts_.find(tp);
    if (it == parts_.end()) continue;
    for (auto& [offset, m] : it->second.unacked) lost.push_back(std::move(m));
    int64_t pos = it->second.Committable();
    if (commits != nullptr && pos >= 0 && pos > it->second.sent) commits->push_back({tp, pos});
    parts_.erase(it);
  }
  return lost;
}

std::vector<TopicPartition> AckTracker::Assigned() const {
  std::vector<TopicPartition> out;
  for (const auto& [tp, p] : parts_) out.push_back(tp);
  return out;
}

void AckTracker::Delivered(const QueueMessage& m) {
  Partition& p = parts_[TopicPartition{m.topic, m.partition}];
  // The group's committed position is (normally) the first offset delivered
  // in an assignment: committing it again would be a no-op request.
  if (p.next < 0) p.sent = std::max(p.sent, m.offset);
  p.unacked.emplace(m.offset, m);
  p.next = std::max(p.next, m.offset + 1);
}

bool AckTracker::Ack(const std::string& topic, int32_t partition, int64_t offset) {
  auto it = parts_.find(TopicPartition{topic, partition});
  if (it == parts_.end()) return false;
  return it->second.unacked.erase(offset) > 0;
}

std::vector<CommitOffset> AckTracker::Pending() const {
  std::vector<CommitOffset> out;
  for (const auto& [tp, p] : parts_) {
    int64_t pos = p.Committable();
    if (pos >= 0 && pos > p.sent) out.push_back({tp, pos});
  }
  return out;
}

void AckTracker::MarkSent(const std::vector<CommitOffset>& commits) {
  for (const CommitOffset& c : commits) {
    auto it = parts_.find(c.tp);
    if (it != parts_.end()) it->second.sent = std::max(it->second.sent, c.offset);
  }
}

void AckTracker::CommitFailed(const CommitOffset& c) {
  auto it = parts_.find(c.tp);
  if (it != parts_.end() && it->second.sent == c.offset) it->second.sent = -1;
}

int64_t AckTracker::Committable(const TopicPartition& tp) const {
  auto it = parts_.find(tp);
  return it == parts_.end() ? -1 : it->second.Committable();
}

size_t AckTracker::unacked_count() const {
  size_t n = 0;
  for (const auto& [tp, p] : parts_) n += p.unacked.size();
  return n;
}

}  // namespace af::kafka
