#include "queue/kafka/kafka_config.h"

namespace af::kafka {
namespace {

void AddOverrides(const QueueOptions& options, Properties* props) {
  for (const auto& [k, v] : options.kafka_properties) props->emplace_back(k, v);
}

}  // namespace

Properties ProducerProperties(const QueueOptions& options) {
  Properties p = {
      {"bootstrap.servers", options.kafka_brokers},
      {"client.id", options.client_id},
      {"acks", "all"},
      {"enable.idempotence", "true"},
      {"message.timeout.ms", "10000"},
      {"linger.ms", "0"},
      {"compression.type", "lz4"},
      {"message.max.bytes", "10485760"},
      {"partitioner", "murmur2_random"},
      {"socket.keepalive.enable", "true"},
  };
  AddOverrides(options, &p);
  return p;
}

Properties ConsumerProperties(const QueueOptions& options, const std::string& group) {
  Properties p = {
      {"bootstrap.servers", options.kafka_brokers},
      {"client.id", options.client_id},
      {"group.id", group},
      // Only positions the consumer stores (acked prefixes) are committed,
      // by librdkafka's committer: while the group is steady, on unassign
      // and at close (see KafkaConsumerImpl::MaybeStore).
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "100"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"partition.assignment.strategy", "cooperative-sticky"},
      {"allow.auto.create.topics", "true"},
      {"topic.metadata.refresh.interval.ms", "30000"},
      {"socket.keepalive.enable", "true"},
      // Also the JoinGroup request's timeout: a join whose answer is lost
      // (a broker stalled mid-rebalance) is retried after this, not after
      // the default 5 minutes. Our consumers poll at least every 500 ms.
      // Must be >= session.timeout.ms (45 s by default).
      {"max.poll.interval.ms", "60000"},
  };
  AddOverrides(options, &p);
  // The group is the caller's choice, not a property to override.
  p.emplace_back("group.id", group);
  return p;
}

std::string PropertyValue(const Properties& props, const std::string& name) {
  std::string v;
  for (const auto& [k, val] : props) {
    if (k == name) v = val;
  }
  return v;
}

}  // namespace af::kafka
