// The Kafka transport for agents (docs/agents.md, "Kafka transport"): an
// AgentCaller for endpoints whose transport is kafka. Each attempt is a
// request on the agent's topic, answered on the reply topic; see
// correlating_caller.h for how a call completes and agent_messages.h for the
// formats.
//
// Inside: a KafkaQueue producer (kafka_config.h's producer defaults and the
// --kafka-property overrides; requests are sent with PublishAsync, so no
// thread waits for the broker), a CorrelatingAgentCaller, and a
// KafkaReplyReader that reads every partition of the reply topic from its
// end at start (no consumer group: every executor sees every reply and keeps
// its own). Calls made before the reader knows where to start wait for it
// within their timeout.
//
// Thread-safety: as CorrelatingAgentCaller (Call on the executor, which must
// be single-threaded; stats from any thread). Two background threads: the
// producer's poller and the reply reader; both only post to the executor.
// Destroy the caller after every Call has returned (shut the engine down
// first) and before the executor's io_context.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "agent/agent.h"
#include "agent/kafka/agent_messages.h"
#include "agent/kafka/correlating_caller.h"
#include "queue/queue.h"

namespace af {

struct KafkaAgentCallerOptions {
  QueueOptions kafka;                          // kafka_brokers (required), kafka_properties, client_id
  std::string reply_topic = kAgentReplyTopic;  // KAFKA_AGENT_REPLY_TOPIC: where agents answer
};

class KafkaAgentCaller : public AgentCaller {
 public:
  // Replies seen so far (for tests and metrics).
  virtual CorrelationStats stats() const = 0;
};

// InvalidArgument without brokers, with an invalid reply topic name or a
// kafka_property librdkafka rejects. Does not wait for the brokers.
Result<std::unique_ptr<KafkaAgentCaller>> NewKafkaAgentCaller(boost::asio::any_io_executor executor,
                                                              const KafkaAgentCallerOptions& options);

}  // namespace af
