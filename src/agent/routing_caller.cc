#include "agent/routing_caller.h"

namespace af {
namespace {

class RoutingAgentCaller final : public AgentCaller {
 public:
  RoutingAgentCaller(std::unique_ptr<AgentCaller> http, std::unique_ptr<AgentCaller> kafka)
      : http_(std::move(http)), kafka_(std::move(kafka)) {}

  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                          CancelSignal* cancel) override {
    if (agent.transport == AgentTransport::kHttp) return http_->Call(agent, call, cancel);
    if (kafka_ != nullptr) return kafka_->Call(agent, call, cancel);
    return NoKafka(agent.name);
  }

 private:
  static boost::asio::awaitable<AgentReply> NoKafka(std::string agent) {
    AgentReply r;
    r.outcome = AgentReply::Outcome::kPermanent;
    r.error = "agent '" + agent +
              "' uses the kafka transport, but this executor has no Kafka configured. Hint: set KAFKA_BROKERS";
    co_return r;
  }

  std::unique_ptr<AgentCaller> http_;
  std::unique_ptr<AgentCaller> kafka_;
};

}  // namespace

std::unique_ptr<AgentCaller> NewRoutingAgentCaller(std::unique_ptr<AgentCaller> http,
                                                   std::unique_ptr<AgentCaller> kafka) {
  return std::make_unique<RoutingAgentCaller>(std::move(http), std::move(kafka));
}

}  // namespace af
