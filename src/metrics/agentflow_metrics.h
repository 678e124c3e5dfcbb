// The agentflow_* metrics: every name, label set, help text and bucket
// layout in one place (docs/operations.md, "Metrics reference", lists them).
// Each struct declares its metrics on a Registry and keeps references for
// the code that updates them; two structs may declare the same metric (the
// API and the executor both count runs reaching a terminal status), and the
// registry hands both the same family.
//
// Label values are bounded: statuses are the stored status names, agents
// are registered agent names, routes are the router's patterns.
//
// Thread-safety: as metrics.h; the structs are immutable after construction.
#pragma once

#include <string_view>

#include "metrics/metrics.h"

namespace af::metrics {

// Bucket bounds, in seconds.
const std::vector<double>& HttpLatencyBuckets();  // 0.5 ms .. 60 s
const std::vector<double>& StepLatencyBuckets();  // 5 ms .. 10 min
const std::vector<double>& RunDurationBuckets();  // 10 ms .. 1 h

// HTTP servers of every service.
struct HttpMetrics {
  explicit HttpMetrics(Registry& r);
  // agentflow_http_request_duration_seconds{method, route, status}: time from
  // the parsed request to the handler's response (long-polls included).
  HistogramFamily& request_duration;

  // Records one request. `route` is the router's pattern ("" for a request
  // no route matched: recorded as "unmatched"); methods other than the
  // standard ones are recorded as "other" so clients cannot grow the label set.
  void Observe(std::string_view method, std::string_view route, int status, double seconds);
};

// Runs as the API sees them (also declared by ExecutorMetrics: shared).
struct ApiRunMetrics {
  explicit ApiRunMetrics(Registry& r);
  Counter& runs_created;          // agentflow_runs_created_total
  CounterFamily& runs_finished;   // agentflow_runs_finished_total{status}
};

// The executor (Engine).
struct ExecutorMetrics {
  explicit ExecutorMetrics(Registry& r);
  Counter& runs_started;            // agentflow_runs_started_total
  Counter& runs_resumed;            // agentflow_runs_resumed_total
  CounterFamily& runs_finished;     // agentflow_runs_finished_total{status}
  HistogramFamily& run_duration;    // agentflow_run_duration_seconds{status}
  Gauge& runs_in_flight;            // agentflow_runs_in_flight
  CounterFamily& step_executions;   // agentflow_step_executions_total{agent, status}
  HistogramFamily& step_duration;   // agentflow_step_duration_seconds{agent, status}
  CounterFamily& agent_call_errors; // agentflow_agent_call_errors_total{agent, kind}
  CounterFamily& step_retries;      // agentflow_step_retries_total{agent}
};

// Names of metrics whose values come from callbacks (set up by the wiring).
inline constexpr const char* kConsumerLag = "agentflow_consumer_lag_messages";
inline constexpr const char* kConsumerMalformed = "agentflow_consumer_malformed_messages_total";
inline constexpr const char* kConsumerDeadLettered = "agentflow_consumer_dead_lettered_total";
inline constexpr const char* kOutboxBacklog = "agentflow_outbox_backlog_messages";
inline constexpr const char* kOutboxOldestAge = "agentflow_outbox_oldest_age_seconds";
inline constexpr const char* kOutboxPublished = "agentflow_outbox_published_total";
inline constexpr const char* kOutboxPublishFailures = "agentflow_outbox_publish_failures_total";
inline constexpr const char* kRunsRedispatched = "agentflow_runs_redispatched_total";

}  // namespace af::metrics
