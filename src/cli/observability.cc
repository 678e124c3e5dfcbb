#include "cli/observability.h"

#include "metrics/agentflow_metrics.h"

namespace af::cli {

ops::Check DatabaseCheck(Store* store) {
  return {"database", [store] { return store->Ping(); }};
}

ops::Check QueueCheck(const std::string& name, Queue* queue) {
  return {name, [queue] { return queue->Ping(); }};
}

ops::Check RegistryCheck(const std::string& registry_url) {
  std::string base = registry_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return ops::HttpCheck("registry", base + "/healthz");
}

void ExposeConsumerMetrics(metrics::Registry& registry, const ExecutionConsumer* consumer) {
  registry.SetCallback(metrics::kConsumerLag,
                       "Requests on each topic this consumer's group has not acked yet (waiting, or delivered to a "
                       "run still executing), over the partitions this consumer holds.",
                       metrics::Type::kGauge, {"topic"}, [consumer] {
                         std::vector<metrics::Sample> out;
                         for (const auto& l : consumer->Lag()) {
                           out.push_back({{l.topic}, static_cast<double>(l.messages)});
                         }
                         return out;
                       });
  registry.SetCallback(metrics::kConsumerMalformed,
                       "Messages this consumer set aside because they were not valid requests.",
                       metrics::Type::kCounter, {}, [consumer] {
                         return std::vector<metrics::Sample>{{{}, static_cast<double>(consumer->rejected())}};
                       });
  registry.SetCallback(metrics::kConsumerDeadLettered,
                       "Messages this consumer wrote to the dead-letter topic (malformed, or for a run that does "
                       "not exist).",
                       metrics::Type::kCounter, {}, [consumer] {
                         return std::vector<metrics::Sample>{{{}, static_cast<double>(consumer->dead_lettered())}};
                       });
}

void ClearConsumerMetrics(metrics::Registry& registry) {
  registry.ClearCallback(metrics::kConsumerLag);
  registry.ClearCallback(metrics::kConsumerMalformed);
  registry.ClearCallback(metrics::kConsumerDeadLettered);
}

void ExposeOutboxMetrics(metrics::Registry& registry, const Dispatcher* dispatcher) {
  auto one = [](double v) { return std::vector<metrics::Sample>{{{}, v}}; };
  registry.SetCallback(metrics::kOutboxBacklog,
                       "Execution requests committed to the outbox and not yet published to the queue.",
                       metrics::Type::kGauge, {},
                       [dispatcher, one] { return one(static_cast<double>(dispatcher->backlog())); });
  registry.SetCallback(metrics::kOutboxOldestAge,
                       "Age in seconds of the oldest execution request waiting in the outbox (0: none).",
                       metrics::Type::kGauge, {}, [dispatcher, one] { return one(dispatcher->oldest_age_seconds()); });
  registry.SetCallback(metrics::kOutboxPublished, "Execution requests this process published from the outbox.",
                       metrics::Type::kCounter, {},
                       [dispatcher, one] { return one(static_cast<double>(dispatcher->published())); });
  registry.SetCallback(metrics::kOutboxPublishFailures,
                       "Outbox messages this process could not publish (kept and tried again).",
                       metrics::Type::kCounter, {},
                       [dispatcher, one] { return one(static_cast<double>(dispatcher->publish_failures())); });
  registry.SetCallback(metrics::kRunsRedispatched,
                       "Stranded runs (not finished, held by no executor) this process dispatched again.",
                       metrics::Type::kCounter, {},
                       [dispatcher, one] { return one(static_cast<double>(dispatcher->redispatched())); });
}

void ClearOutboxMetrics(metrics::Registry& registry) {
  for (const char* name : {metrics::kOutboxBacklog, metrics::kOutboxOldestAge, metrics::kOutboxPublished,
                           metrics::kOutboxPublishFailures, metrics::kRunsRedispatched}) {
    registry.ClearCallback(name);
  }
}

namespace {

constexpr const char* kBridgeRequests = "agentflow_bridge_requests_total";
constexpr const char* kBridgeReplies = "agentflow_bridge_replies_total";
constexpr const char* kBridgeDropped = "agentflow_bridge_requests_dropped_total";
constexpr const char* kBridgePublishErrors = "agentflow_bridge_reply_publish_errors_total";
constexpr const char* kBridgeInFlight = "agentflow_bridge_calls_in_flight";

std::vector<metrics::Sample> One(uint64_t v) { return {{{}, static_cast<double>(v)}}; }

}  // namespace

void ExposeBridgeMetrics(metrics::Registry& registry, const Bridge* bridge) {
  registry.SetCallback(kBridgeRequests, "Requests the bridge took off its agents' request topics.",
                       metrics::Type::kCounter, {}, [bridge] { return One(bridge->stats().requests); });
  registry.SetCallback(kBridgeReplies, "Replies the bridge wrote to a reply topic (and acked their request).",
                       metrics::Type::kCounter, {}, [bridge] { return One(bridge->stats().replied); });
  registry.SetCallback(kBridgeDropped,
                       "Requests acked without a call: expired (past their deadline on arrival) or malformed.",
                       metrics::Type::kCounter, {"reason"}, [bridge] {
                         BridgeStats s = bridge->stats();
                         return std::vector<metrics::Sample>{{{"expired"}, static_cast<double>(s.expired)},
                                                             {{"malformed"}, static_cast<double>(s.malformed)}};
                       });
  registry.SetCallback(kBridgePublishErrors, "Failed attempts to write a reply (each is retried until the deadline).",
                       metrics::Type::kCounter, {}, [bridge] { return One(bridge->stats().publish_errors); });
  registry.SetCallback(kBridgeInFlight, "HTTP calls the bridge has in flight, by agent.", metrics::Type::kGauge,
                       {"agent"}, [bridge] {
                         std::vector<metrics::Sample> out;
                         for (const auto& [name, n] : bridge->InFlightByAgent()) {
                           out.push_back({{name}, static_cast<double>(n)});
                         }
                         return out;
                       });
}

void ClearBridgeMetrics(metrics::Registry& registry) {
  for (const char* name : {kBridgeRequests, kBridgeReplies, kBridgeDropped, kBridgePublishErrors, kBridgeInFlight}) {
    registry.ClearCallback(name);
  }
}

}  // namespace af::cli
