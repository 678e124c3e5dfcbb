#include "cli/agent_callers.h"

#include "agent/kafka/kafka_agent_caller.h"
#include "agent/routing_caller.h"
#include "common/log.h"

namespace af::cli {

Result<QueueOptions> KafkaFlags(const std::string& brokers, const std::vector<std::string>& properties,
                                const std::string& client_id) {
  QueueOptions qo;
  qo.kafka_brokers = brokers;
  qo.client_id = client_id;
  for (const std::string& kv : properties) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--kafka-property takes KEY=VALUE, got '" + kv + "'");
    }
    qo.kafka_properties[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return qo;
}

Result<std::unique_ptr<AgentCaller>> NewExecutorAgentCaller(boost::asio::any_io_executor executor,
                                                            const std::optional<QueueOptions>& kafka,
                                                            const std::string& reply_topic,
                                                            const HttpAgentCallerOptions& http) {
  std::unique_ptr<AgentCaller> kafka_caller;
  if (kafka && !kafka->kafka_brokers.empty()) {
    KafkaAgentCallerOptions ko;
    ko.kafka = *kafka;
    ko.reply_topic = reply_topic;
    auto made = NewKafkaAgentCaller(executor, ko);
    if (!made.ok()) return made.status();
    kafka_caller = std::move(made).value();
    log::Info("kafka agents are called through " + kafka->kafka_brokers + "; replies are read from " + reply_topic);
  }
  return NewRoutingAgentCaller(NewHttpAgentCaller(executor, http), std::move(kafka_caller));
}

}  // namespace af::cli
