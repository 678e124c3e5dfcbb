#include "metrics/agentflow_metrics.h"

#include <array>
#include <charconv>

namespace af::metrics {

const std::vector<double>& HttpLatencyBuckets() {
  static const std::vector<double> b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,   0.5,   1,      2.5,   5,    10,    30,   60};
  return b;
}

const std::vector<double>& StepLatencyBuckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,    10,    30,   60,  120,  300, 600};
  return b;
}

const std::vector<double>& RunDurationBuckets() {
  static const std::vector<double> b = {0.01, 0.05, 0.1, 0.25, 0.5, 1,   2.5,  5,
                                        10,   30,   60,  120,  300, 600, 1800, 3600};
  return b;
}

HttpMetrics::HttpMetrics(Registry& r)
    : request_duration(r.GetHistogramFamily(
          "agentflow_http_request_duration_seconds",
          "Time to answer an HTTP request, by method, route pattern and status code (long-polls included).",
          {"method", "route", "status"}, HttpLatencyBuckets())) {}

void HttpMetrics::Observe(std::string_view method, std::string_view route, int status, double seconds) {
  static constexpr std::array<std::string_view, 7> kMethods = {"GET",    "POST", "PUT",    "DELETE",
                                                               "PATCH", "HEAD", "OPTIONS"};
  std::string_view m = "other";
  for (std::string_view k : kMethods) {
    if (k == method) m = k;
  }
  char buf[16];
  auto r = std::to_chars(buf, buf + sizeof(buf), status);
  std::string_view code(buf, static_cast<size_t>(r.ptr - buf));
  request_duration.Labels({m, route.empty() ? std::string_view("unmatched") : route, code}).Observe(seconds);
}

namespace {

CounterFamily& RunsFinished(Registry& r) {
  return r.GetCounterFamily("agentflow_runs_finished_total",
                            "Runs that reached a terminal status (COMPLETED, FAILED, CANCELLED), counted by the "
                            "process that made the transition.",
                            {"status"});
}

}  // namespace

ApiRunMetrics::ApiRunMetrics(Registry& r)
    : runs_created(r.GetCounter("agentflow_runs_created_total",
                                "Runs accepted by the API (a repeated Idempotency-Key does not count).")),
      runs_finished(RunsFinished(r)) {}

ExecutorMetrics::ExecutorMetrics(Registry& r)
    : runs_started(r.GetCounter("agentflow_runs_started_total",
                                "Runs this executor moved from PENDING to RUNNING (a retried run counts again).")),
      runs_resumed(r.GetCounter("agentflow_runs_resumed_total",
                                "Runs this executor took over while RUNNING (after a crash, a restart or a "
                                "rebalance) and resumed from their recorded state.")),
      runs_finished(RunsFinished(r)),
      run_duration(r.GetHistogramFamily("agentflow_run_duration_seconds",
                                        "Time from a run's start (started_at) to its terminal status, by status.",
                                        {"status"}, RunDurationBuckets())),
      runs_in_flight(r.GetGauge("agentflow_runs_in_flight", "Runs this executor is driving now.")),
      step_executions(r.GetCounterFamily("agentflow_step_executions_total",
                                         "Step executions (step_executions rows) that reached a terminal status, "
                                         "by agent and status.",
                                         {"agent", "status"})),
      step_duration(r.GetHistogramFamily("agentflow_step_duration_seconds",
                                         "Time of one agent call (one attempt of a step or for_each item), by agent "
                                         "and the attempt's status.",
                                         {"agent", "status"}, StepLatencyBuckets())),
      agent_call_errors(r.GetCounterFamily("agentflow_agent_call_errors_total",
                                           "Failed attempts, by agent and kind: retryable (timeout, connection "
                                           "error, 408/429/5xx), permanent (other 4xx, bad reply), unhealthy (not "
                                           "called: the registry reports the agent unhealthy).",
                                           {"agent", "kind"})),
      step_retries(r.GetCounterFamily("agentflow_step_retries_total",
                                      "Attempts scheduled again after a retryable failure, by agent.", {"agent"})) {}

}  // namespace af::metrics
