// Wiring shared by the services' observability: the readiness checks of
// their dependencies and the metrics read from components at scrape time.
// The endpoints themselves are ops::Endpoints (src/ops).
#pragma once

#include <string>

#include "bridge/bridge.h"
#include "dispatch/dispatcher.h"
#include "executor/consumer.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "queue/queue.h"
#include "storage/store.h"

namespace af::cli {

// "database": Store::Ping.
ops::Check DatabaseCheck(Store* store);
// `name` ("kafka" or "queue"): Queue::Ping.
ops::Check QueueCheck(const std::string& name, Queue* queue);
// "registry": GET <registry_url>/healthz answers 2xx within 2 s.
ops::Check RegistryCheck(const std::string& registry_url);

// agentflow_consumer_lag_messages{topic} and
// agentflow_consumer_malformed_messages_total, read from `consumer` at every
// scrape. Call ClearConsumerMetrics before `consumer` goes away.
void ExposeConsumerMetrics(metrics::Registry& registry, const ExecutionConsumer* consumer);
void ClearConsumerMetrics(metrics::Registry& registry);

// agentflow_outbox_backlog_messages, agentflow_outbox_oldest_age_seconds,
// agentflow_outbox_published_total, agentflow_outbox_publish_failures_total
// and agentflow_runs_redispatched_total, read from `dispatcher` at every
// scrape (the backlog as the relay last read it, about once a second). Call
// ClearOutboxMetrics before `dispatcher` goes away.
void ExposeOutboxMetrics(metrics::Registry& registry, const Dispatcher* dispatcher);
void ClearOutboxMetrics(metrics::Registry& registry);

// agentflow_bridge_* (requests, replies, dropped requests, reply publish
// errors, calls in flight per agent), read from `bridge` at every scrape.
// Call ClearBridgeMetrics before `bridge` goes away.
void ExposeBridgeMetrics(metrics::Registry& registry, const Bridge* bridge);
void ClearBridgeMetrics(metrics::Registry& registry);

}  // namespace af::cli
