// The librdkafka properties of agentflow's Kafka clients: agentflow's
// defaults, then QueueOptions::kafka_properties in order (so an override
// wins, even one spelled with an alias such as "compression.codec").
// Plain functions, unit-tested without a broker.
//
// Producer defaults (why):
//   acks=all, enable.idempotence=true  a Publish that returned OK is on every
//                                      in-sync replica, written once
//   message.timeout.ms=10000           bounds Publish: a broker outage fails
//                                      the caller (Unavailable) after 10 s
//                                      instead of librdkafka's 5 min
//   linger.ms=0                        Publish waits for its own write, so do
//                                      not wait to batch; concurrent writes
//                                      still share requests
//   compression.type=lz4               plans are JSON and compress well
//   message.max.bytes=10485760         API bodies reach 1 MiB (more with
//                                      --max-body-bytes); the broker's or
//                                      topic's max.message.bytes still limits
//                                      the compressed batch
//   partitioner=murmur2_random         the key (run_id) picks the partition
//                                      as Java clients do, so every producer
//                                      keeps one run's messages in order
// Consumer defaults (why):
//   enable.auto.commit=false, enable.auto.offset.store=false
//                                      KafkaQueue commits acked positions
//   auto.offset.reset=earliest         a new group reads what was queued
//                                      before it existed
//   partition.assignment.strategy=cooperative-sticky
//                                      a rebalance revokes only partitions
//                                      that move, so runs from partitions a
//                                      consumer keeps are not abandoned
//   allow.auto.create.topics=true      a consumer started before the first
//                                      publish creates the topic, if the
//                                      broker allows (auto.create.topics.enable)
//   topic.metadata.refresh.interval.ms=30000
//                                      a topic created by an operator later
//                                      is noticed within 30 s, not 5 min
// Both: socket.keepalive.enable=true.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "queue/queue.h"

namespace af::kafka {

// Ordered: later entries override earlier ones.
using Properties = std::vector<std::pair<std::string, std::string>>;

Properties ProducerProperties(const QueueOptions& options);
Properties ConsumerProperties(const QueueOptions& options, const std::string& group);

// The value a property list ends up with ("" if unset); aliases are not
// resolved.
std::string PropertyValue(const Properties& props, const std::string& name);

}  // namespace af::kafka
