#include "queue/kafka/ack_tracker.h"

#include <gtest/gtest.h>

namespace af::kafka {
namespace {

QueueMessage Msg(const std::string& topic, int32_t partition, int64_t offset) {
  QueueMessage m;
  m.topic = topic;
  m.partition = partition;
  m.offset = offset;
  m.key = "run-" + std::to_string(offset);
  m.payload = "p" + std::to_string(offset);
  return m;
}

std::vector<int64_t> Offsets(const std::vector<QueueMessage>& ms) {
  std::vector<int64_t> out;
  for (const auto& m : ms) out.push_back(m.offset);
  return out;
}

const TopicPartition kP0{"t", 0};

TEST(AckTrackerTest, NothingDeliveredNothingToCommit) {
  AckTracker t;
  t.Assign({kP0});
  EXPECT_EQ(t.Committable(kP0), -1);
  EXPECT_TRUE(t.Pending().empty());
}

TEST(AckTrackerTest, CommitsOnlyTheContiguousAckedPrefix) {
  AckTracker t;
  t.Assign({kP0});
  for (int64_t o = 10; o < 16; ++o) t.Delivered(Msg("t", 0, o));
  // The first delivered offset is where the group already stands.
  EXPECT_TRUE(t.Pending().empty());
  EXPECT_TRUE(t.Ack("t", 0, 15));
  EXPECT_TRUE(t.Ack("t", 0, 13));
  EXPECT_EQ(t.Committable(kP0), 10);
  EXPECT_TRUE(t.Pending().empty());
  EXPECT_TRUE(t.Ack("t", 0, 10));
  EXPECT_EQ(t.Committable(kP0), 11);
  EXPECT_EQ(t.Pending(), (std::vector<CommitOffset>{{kP0, 11}}));
  EXPECT_TRUE(t.Ack("t", 0, 11));
  EXPECT_TRUE(t.Ack("t", 0, 12));
  EXPECT_EQ(t.Committable(kP0), 14);  // 13 was acked earlier
  EXPECT_TRUE(t.Ack("t", 0, 14));
  EXPECT_EQ(t.Committable(kP0), 16);  // all acked: last delivered + 1
}

TEST(AckTrackerTest, RepeatedAndUnknownAcksAreIgnored) {
  AckTracker t;
  t.Assign({kP0});
  t.Delivered(Msg("t", 0, 0));
  EXPECT_TRUE(t.Ack("t", 0, 0));
  EXPECT_FALSE(t.Ack("t", 0, 0));
  EXPECT_FALSE(t.Ack("t", 0, 7));   // never delivered
  EXPECT_FALSE(t.Ack("t", 3, 0));   // not assigned
  EXPECT_FALSE(t.Ack("u", 0, 0));
  EXPECT_EQ(t.Committable(kP0), 1);
}

TEST(AckTrackerTest, GapsInOffsetsDoNotBlockCommits) {
  // Offsets need not be contiguous (compaction, transaction markers).
  AckTracker t;
  t.Assign({kP0});
  t.Delivered(Msg("t", 0, 3));
  t.Delivered(Msg("t", 0, 7));
  t.Ack("t", 0, 3);
  EXPECT_EQ(t.Committable(kP0), 7);
  t.Ack("t", 0, 7);
  EXPECT_EQ(t.Committable(kP0), 8);
}

TEST(AckTrackerTest, MarkSentAndCommitFailed) {
  AckTracker t;
  t.Assign({kP0});
  t.Delivered(Msg("t", 0, 0));
  t.Delivered(Msg("t", 0, 1));
  t.Ack("t", 0, 0);
  auto pending = t.Pending();
  ASSERT_EQ(pending, (std::vector<CommitOffset>{{kP0, 1}}));
  t.MarkSent(pending);
  EXPECT_TRUE(t.Pending().empty());
  t.CommitFailed({kP0, 1});
  EXPECT_EQ(t.Pending(), pending);  // retried
  t.MarkSent(pending);
  t.Ack("t", 0, 1);
  t.MarkSent(t.Pending());  // position 2 sent
  t.CommitFailed({kP0, 1});  // an older failure does not undo a newer request
  EXPECT_TRUE(t.Pending().empty());
}

TEST(AckTrackerTest, RevokeReturnsUnackedAndCommitAndForgets) {
  AckTracker t;
  const TopicPartition p1{"t", 1}, q0{"u", 0};
  t.Assign({kP0, p1, q0});
  for (int64_t o = 0; o < 4; ++o) {
    t.Delivered(Msg("t", 0, o));
    t.Delivered(Msg("t", 1, o));
    t.Delivered(Msg("u", 0, o));
  }
  t.Ack("t", 0, 0);
  t.Ack("t", 0, 2);
  t.Ack("t", 1, 0);
  t.Ack("t", 1, 1);
  t.Ack("t", 1, 2);
  t.Ack("t", 1, 3);
  std::vector<CommitOffset> commits;
  auto lost = t.Revoke({p1, kP0}, &commits);
  EXPECT_EQ(Offsets(lost), (std::vector<int64_t>{1, 3}));  // t[0]: 1 and 3; t[1]: none
  for (const auto& m : lost) EXPECT_EQ(m.partition, 0);
  EXPECT_EQ(lost[0].payload, "p1");
  EXPECT_EQ(commits, (std::vector<CommitOffset>{{kP0, 1}, {p1, 4}}));
  // Later acks of revoked partitions are ignored.
  EXPECT_FALSE(t.Ack("t", 0, 1));
  EXPECT_EQ(t.Committable(kP0), -1);
  EXPECT_EQ(t.Assigned(), std::vector<TopicPartition>{q0});
  EXPECT_EQ(t.unacked_count(), 4u);
}

TEST(AckTrackerTest, RevokeSkipsPositionsAlreadySent) {
  AckTracker t;
  t.Assign({kP0});
  t.Delivered(Msg("t", 0, 0));
  t.Ack("t", 0, 0);
  t.MarkSent(t.Pending());
  std::vector<CommitOffset> commits;
  EXPECT_TRUE(t.Revoke({kP0}, &commits).empty());
  EXPECT_TRUE(commits.empty());
}

TEST(AckTrackerTest, ReassignStartsAfresh) {
  AckTracker t;
  t.Assign({kP0});
  t.Delivered(Msg("t", 0, 5));
  t.Assign({kP0});
  EXPECT_EQ(t.Committable(kP0), -1);
  EXPECT_FALSE(t.Ack("t", 0, 5));
}

}  // namespace
}  // namespace af::kafka
