// Health, readiness, metrics and trace context of `agentflow serve --demo`,
// end to end: /metrics is parsed with the strict Prometheus text parser of
// tests/support/prom_text and its counters must move by exactly what the
// runs executed; a traceparent sent with a trigger must reach the agent and
// the JSON log lines of the run.
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "common/trace.h"
#include "e2e/harness.h"
#include "support/prom_text.h"

namespace af::e2e {
namespace {

using namespace std::chrono_literals;
using test::PromLabels;
using test::PromText;

// One `serve --demo` per test: counters start from a known state.
class ServeDemo : public ::testing::Test {
 protected:
  void SetUp() override {
    Server::Options o;
    o.data_dir = dir_.File("data");
    o.log_dir = dir_.path().string();
    o.demo = true;
    o.env = env_;
    server_ = std::make_unique<Server>(o);
    server_->Start();
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "==== serve log ====\n" << Tail(server_->stderr_path(), 8000);
  }

  PromText Scrape() {
    HttpResponse r = Fetch("GET", server_->url() + "/metrics");
    Require(r.status == 200, "GET /metrics: " + r.Describe());
    EXPECT_EQ(r.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    auto parsed = test::ParsePromText(r.body);
    Require(parsed.ok(), "/metrics does not parse: " + parsed.status().ToString() + "\n" + r.body);
    return *parsed;
  }

  TempDir dir_;
  EnvOverrides env_;
  std::unique_ptr<Server> server_;
};

double Delta(const PromText& before, const PromText& after, const std::string& name, const PromLabels& labels = {}) {
  return after.Sum(name, labels) - before.Sum(name, labels);
}

TEST_F(ServeDemo, MetricsParseAndMoveByWhatTheRunsExecuted) {
  Server& s = *server_;
  PromText before = Scrape();
  // Every metric the embedded default serves is there from the start.
  for (const char* family :
       {"agentflow_runs_created_total", "agentflow_runs_started_total", "agentflow_runs_finished_total",
        "agentflow_run_duration_seconds", "agentflow_runs_in_flight", "agentflow_step_executions_total",
        "agentflow_step_duration_seconds", "agentflow_agent_call_errors_total", "agentflow_step_retries_total",
        "agentflow_consumer_lag_messages", "agentflow_http_request_duration_seconds",
        "agentflow_outbox_backlog_messages", "agentflow_outbox_oldest_age_seconds", "agentflow_outbox_published_total",
        "agentflow_outbox_publish_failures_total", "agentflow_runs_redispatched_total",
        "agentflow_consumer_dead_lettered_total"}) {
    EXPECT_TRUE(before.families.count(family)) << family;
  }

  json ok_plan = json::parse(R"({"steps": [
      {"id": "one", "agent": "echo"},
      {"id": "two", "agent": "flaky", "input": {"failures": 1},
       "retry": {"max_attempts": 3, "initial_backoff_ms": 10}}]})");
  ok_plan["name"] = UniqueName("metrics-ok");
  json bad_plan = json::parse(R"({"steps": [{"id": "boom", "agent": "fail", "input": {"permanent": true}}]})");
  bad_plan["name"] = UniqueName("metrics-bad");
  std::string ok_wf = CreateWorkflow(s, ok_plan)["workflow_id"];
  std::string bad_wf = CreateWorkflow(s, bad_plan)["workflow_id"];
  HttpResponse ok = s.Post("/workflows/" + ok_wf + "/runs?wait=60", {{"input", json::object()}});
  HttpResponse bad = s.Post("/workflows/" + bad_wf + "/runs?wait=60", {{"input", json::object()}});
  ASSERT_EQ(ok.status, 200) << ok.Describe();
  ASSERT_EQ(bad.status, 200) << bad.Describe();
  ASSERT_EQ(ok.body_json["status"], "COMPLETED") << ok.body;
  ASSERT_EQ(bad.body_json["status"], "FAILED") << bad.body;

  // The store says terminal a moment before the executor counts the run and
  // lets it go (and the queue's answer to a publish may come after the run
  // it carried ended): scrape until the runs are counted, out of flight,
  // acked and their requests counted as published.
  PromText after;
  bool settled = WaitUntil(
      [&] {
        after = Scrape();
        return Delta(before, after, "agentflow_runs_finished_total") == 2 &&
               Delta(before, after, "agentflow_outbox_published_total") == 2 &&
               after.Value("agentflow_runs_in_flight") == 0 &&
               after.Value("agentflow_consumer_lag_messages", {{"topic", "workflow.execution.requests"}}) == 0;
      },
      20s, 50ms);
  EXPECT_TRUE(settled) << "runs_finished delta " << Delta(before, after, "agentflow_runs_finished_total");

  EXPECT_EQ(Delta(before, after, "agentflow_runs_created_total"), 2);
  // Both requests went through the outbox, which is empty again.
  EXPECT_EQ(Delta(before, after, "agentflow_outbox_published_total"), 2);
  EXPECT_EQ(after.Value("agentflow_outbox_publish_failures_total"), 0);
  EXPECT_TRUE(WaitUntil([&] { return Scrape().Value("agentflow_outbox_backlog_messages") == 0; }, 10s, 100ms));
  EXPECT_EQ(Delta(before, after, "agentflow_runs_started_total"), 2);
  EXPECT_EQ(Delta(before, after, "agentflow_runs_finished_total", {{"status", "COMPLETED"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_runs_finished_total", {{"status", "FAILED"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_run_duration_seconds_count", {{"status", "COMPLETED"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_run_duration_seconds_count", {{"status", "FAILED"}}), 1);
  auto steps = [&](const char* agent, const char* status) {
    return Delta(before, after, "agentflow_step_executions_total", {{"agent", agent}, {"status", status}});
  };
  EXPECT_EQ(steps("echo", "COMPLETED"), 1);
  EXPECT_EQ(steps("flaky", "FAILED"), 1);
  EXPECT_EQ(steps("flaky", "COMPLETED"), 1);
  EXPECT_EQ(steps("fail", "FAILED"), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_step_executions_total"), 4);
  EXPECT_EQ(Delta(before, after, "agentflow_step_duration_seconds_count", {{"agent", "flaky"}}), 2);
  EXPECT_EQ(Delta(before, after, "agentflow_step_duration_seconds_count"), 4) << "one observation per agent call";
  EXPECT_EQ(Delta(before, after, "agentflow_agent_call_errors_total", {{"agent", "flaky"}, {"kind", "retryable"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_agent_call_errors_total", {{"agent", "fail"}, {"kind", "permanent"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_agent_call_errors_total"), 2);
  EXPECT_EQ(Delta(before, after, "agentflow_step_retries_total", {{"agent", "flaky"}}), 1);
  EXPECT_EQ(Delta(before, after, "agentflow_step_retries_total"), 1);
  // HTTP requests by route pattern, not by raw path.
  EXPECT_EQ(Delta(before, after, "agentflow_http_request_duration_seconds_count",
                  {{"method", "POST"}, {"route", "/api/v1/workflows/{id}/runs"}, {"status", "200"}}),
            2);
  EXPECT_EQ(Delta(before, after, "agentflow_http_request_duration_seconds_count",
                  {{"method", "POST"}, {"route", "/api/v1/workflows"}, {"status", "201"}}),
            2);
  for (const auto& sample : after.families.at("agentflow_http_request_duration_seconds").samples) {
    EXPECT_EQ(sample.labels.at("route").find(ok_wf), std::string::npos) << "raw path in a label";
  }
}

TEST_F(ServeDemo, HealthzIsLivenessAndReadyzNamesItsChecks) {
  HttpResponse live = Fetch("GET", server_->url() + "/healthz");
  EXPECT_EQ(live.status, 200) << live.Describe();
  EXPECT_EQ(live.body_json["status"], "ok");
  HttpResponse ready = Fetch("GET", server_->url() + "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.Describe();
  EXPECT_EQ(ready.body_json, json::parse(R"({"status": "ok", "checks": {"database": "ok", "queue": "ok"},
                                               "down": []})"));
  // The documented API health check is unchanged.
  HttpResponse v1 = server_->Get("/healthz");
  EXPECT_EQ(v1.status, 200) << v1.Describe();
  EXPECT_EQ(v1.body_json, json({{"status", "ok"}}));
}

class ServeDemoJsonLogs : public ServeDemo {
 protected:
  ServeDemoJsonLogs() { env_ = {{"LOG_FORMAT", "json"}, {"LOG_LEVEL", "DEBUG"}}; }
};

TEST_F(ServeDemoJsonLogs, ATraceparentReachesTheAgentAndEveryLogLineOfTheRun) {
  Server& s = *server_;
  json plan = json::parse(R"({"steps": [
      {"id": "look", "agent": "echo", "input": {"echo_headers": ["traceparent"]}},
      {"id": "again", "agent": "echo", "input": {"echo_headers": ["traceparent"]}}]})");
  plan["name"] = UniqueName("traced");
  std::string wf = CreateWorkflow(s, plan)["workflow_id"];
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string incoming = "00-" + trace_id + "-00f067aa0ba902b7-01";
  HttpResponse r = s.Post("/workflows/" + wf + "/runs?wait=60", {{"input", json::object()}}, {{"traceparent", incoming}});
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_EQ(r.body_json["status"], "COMPLETED") << r.body;
  const std::string id = r.body_json["run_id"];
  EXPECT_EQ(r.body_json["trace_id"], trace_id);

  // Each call carried the run's trace id with a span id of its own.
  std::set<std::string> spans;
  for (const char* step : {"look", "again"}) {
    json got = r.body_json["output"][step]["headers"]["traceparent"];
    ASSERT_TRUE(got.is_string()) << r.body;
    auto tp = trace::ParseTraceParent(got.get<std::string>());
    ASSERT_TRUE(tp.has_value()) << got;
    EXPECT_EQ(tp->trace_id, trace_id);
    EXPECT_NE(tp->parent_id, "00f067aa0ba902b7");
    spans.insert(tp->parent_id);
  }
  EXPECT_EQ(spans.size(), 2u);

  // An invalid traceparent is ignored: the run gets a trace of its own, and
  // its agent sees that one.
  HttpResponse other = s.Post("/workflows/" + wf + "/runs?wait=60", {{"input", json::object()}},
                              {{"traceparent", "00-NOT-A-TRACE"}});
  ASSERT_EQ(other.status, 200) << other.Describe();
  const std::string other_trace = other.body_json["trace_id"];
  EXPECT_EQ(other_trace.size(), 32u);
  EXPECT_NE(other_trace, trace_id);
  auto seen = trace::ParseTraceParent(other.body_json["output"]["look"]["headers"]["traceparent"].get<std::string>());
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->trace_id, other_trace);

  ASSERT_EQ(s.Stop(), 0);  // flushes the log
  std::istringstream lines(ReadFile(s.stderr_path()));
  std::string line;
  int of_run = 0;
  std::set<std::string> steps;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    ASSERT_TRUE(!j.is_discarded() && j.is_object()) << "not one JSON object: " << line;
    if (j.value("run_id", "") != id) continue;
    ++of_run;
    EXPECT_EQ(j.value("trace_id", ""), trace_id) << line;
    if (j.contains("step_id")) steps.insert(j["step_id"].get<std::string>());
  }
  EXPECT_GE(of_run, 5) << "accepted, started, two calls, completed at least";
  EXPECT_EQ(steps, (std::set<std::string>{"look", "again"})) << "the DEBUG lines of each agent call";
}

}  // namespace
}  // namespace af::e2e
