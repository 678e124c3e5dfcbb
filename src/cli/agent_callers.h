// How the executor-running commands (consumer, executor) build their agent
// caller: HTTP always, plus the Kafka transport when brokers are given, routed
// by each agent's transport.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>

#include "agent/agent.h"
#include "common/status.h"
#include "queue/queue.h"

namespace af::cli {

// QueueOptions for `--kafka-brokers` and the repeatable `--kafka-property
// KEY=VALUE`. InvalidArgument for a property without '='.
Result<QueueOptions> KafkaFlags(const std::string& brokers, const std::vector<std::string>& properties,
                                const std::string& client_id);

// The routing caller: http agents over HTTP; kafka agents over `kafka` (when
// given: requests on each agent's topic, replies read from `reply_topic`),
// else they fail with a hint to set KAFKA_BROKERS. `http` configures the
// HTTP caller (its reply size limit).
Result<std::unique_ptr<AgentCaller>> NewExecutorAgentCaller(boost::asio::any_io_executor executor,
                                                            const std::optional<QueueOptions>& kafka,
                                                            const std::string& reply_topic,
                                                            const HttpAgentCallerOptions& http = {});

}  // namespace af::cli
