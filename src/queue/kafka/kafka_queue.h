// KafkaQueue: the Queue backend of the distributed topology, on librdkafka.
// Open it with af::OpenKafkaQueue (or af::OpenQueue with kafka_brokers set).
//
// Publish: one idempotent producer per queue (acks=all), the message keyed by
// the given key (run_id: one run's messages share a partition and stay in
// order). Publish returns after the broker confirmed the write (the delivery
// report), or Unavailable once message.timeout.ms (default 10 s) passed
// without it, e.g. while the brokers are down. An empty key is sent as no
// key (any partition). PublishAsync hands the message to librdkafka and
// returns; its completion runs on the producer's poller thread with the
// delivery report (or at once, on the caller's thread, if librdkafka refuses
// the message), and for messages still unconfirmed when the queue is
// destroyed, with an error from the destructor.
//
// Subscribe: one KafkaConsumer per subscription, group.id = the group,
// cooperative-sticky assignment. Acks may come in any order and from any
// thread; per partition the consumer stores the lowest unacked delivered
// offset (or the last delivered + 1) from Poll at most every 100 ms, and
// librdkafka's committer commits what is stored (every 100 ms while the
// group is steady, on unassign and at Close; never a commit() of ours, see
// KafkaConsumerImpl::MaybeStore for the librdkafka 2.0.2 bug). Acked messages
// behind an unacked one are therefore delivered again after a restart or a
// rebalance (capabilities: exact_redelivery=false), and order holds per
// partition only (total_order=false).
//
// Rebalance: when the group takes partitions away, the consumer (inside Poll
// or Close, on that thread) 1) freezes the partitions' tracking: the
// delivered, unacked messages and the committable position, 2) calls the
// RevokedHandler with those messages, 3) stores the position (not when the
// assignment was lost: it may belong to another member already), 4) gives
// the partitions up, and librdkafka commits what is stored for them. Acks of those messages after
// step 1 are accepted but ignored, so the handler's list is exactly what the
// group delivers again. (A late ack is not ignored in one case: the same
// partition came back to this consumer and the message was delivered again;
// the ack then counts for the new delivery, which is right if the work was
// really done.) On Close the remaining partitions go the same way, so the
// handler also hears of messages still unacked when Close is called.
//
// Poll(0, t) pauses the assigned partitions (librdkafka stops fetching) and
// keeps serving the consumer: heartbeats run in librdkafka's threads, and
// calling Poll counts as polling for max.poll.interval.ms, so a consumer
// whose executor is full stays in the group. A Poll(max > 0) resumes them.
// Poll returns as soon as it has one message, with what else is already
// fetched (up to max). Close from another thread wakes a blocked Poll
// (rd_kafka_queue_yield on the consumer queue: the C++ API has no
// cross-thread wake-up) and waits for it to return before closing.
//
// Topics: agentflow never creates topics through the Admin API. On a real
// cluster, create workflow.execution.requests and
// workflow.cancellation.requests (and .dlq) beforehand, or enable the
// brokers' auto.create.topics.enable (then producers and subscribing
// consumers create them with the broker's num.partitions). A Publish to a
// missing topic that cannot be auto-created fails after message.timeout.ms.
//
// Thread-safety: as queue.h. The queue's Publish and Ping are safe from any
// thread (one producer, a background thread serves its delivery reports).
// A consumer may outlive its queue.
#pragma once

#include <memory>

#include "queue/queue.h"

namespace af {

// Connects lazily: creating the clients does not contact the brokers (use
// Ping). InvalidArgument if kafka_brokers is empty or a kafka_property is
// rejected by librdkafka.
Result<std::unique_ptr<Queue>> OpenKafkaQueue(const QueueOptions& options);

}  // namespace af
