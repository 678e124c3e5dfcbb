#include "queue/kafka/kafka_config.h"

#include <gtest/gtest.h>

namespace af::kafka {
namespace {

QueueOptions Options() {
  QueueOptions o;
  o.kafka_brokers = "k1:9092,k2:9092";
  o.client_id = "af-test";
  return o;
}

TEST(KafkaConfigTest, ProducerIsDurableAndKeyed) {
  Properties p = ProducerProperties(Options());
  EXPECT_EQ(PropertyValue(p, "bootstrap.servers"), "k1:9092,k2:9092");
  EXPECT_EQ(PropertyValue(p, "client.id"), "af-test");
  EXPECT_EQ(PropertyValue(p, "acks"), "all");
  EXPECT_EQ(PropertyValue(p, "enable.idempotence"), "true");
  EXPECT_EQ(PropertyValue(p, "partitioner"), "murmur2_random");
  EXPECT_FALSE(PropertyValue(p, "message.timeout.ms").empty());
}

TEST(KafkaConfigTest, ConsumerCommitsOnlyWhatItStores) {
  Properties p = ConsumerProperties(Options(), "g1");
  EXPECT_EQ(PropertyValue(p, "group.id"), "g1");
  // librdkafka's committer, fed only with acked positions.
  EXPECT_EQ(PropertyValue(p, "enable.auto.commit"), "true");
  EXPECT_EQ(PropertyValue(p, "enable.auto.offset.store"), "false");
  EXPECT_EQ(PropertyValue(p, "auto.offset.reset"), "earliest");
  EXPECT_EQ(PropertyValue(p, "partition.assignment.strategy"), "cooperative-sticky");
}

TEST(KafkaConfigTest, OverridesComeLastAndWin) {
  QueueOptions o = Options();
  o.kafka_properties = {{"message.timeout.ms", "2000"}, {"compression.codec", "zstd"}, {"group.id", "other"}};
  Properties p = ProducerProperties(o);
  EXPECT_EQ(PropertyValue(p, "message.timeout.ms"), "2000");
  // An alias of a default is applied after it, so librdkafka keeps it.
  auto index = [&](const std::string& name) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i].first == name) return static_cast<int>(i);
    }
    return -1;
  };
  EXPECT_GT(index("compression.codec"), index("compression.type"));
  EXPECT_GE(index("compression.type"), 0);
  Properties c = ConsumerProperties(o, "g1");
  EXPECT_EQ(PropertyValue(c, "group.id"), "g1");  // the subscription's group is not overridable
  EXPECT_EQ(PropertyValue(c, "message.timeout.ms"), "2000");
}

}  // namespace
}  // namespace af::kafka
