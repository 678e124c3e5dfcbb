// Tests of the Centralized Executor against a real SQLite store and a fake
// agent transport (no network): scheduling, retries, failure, cancellation,
// resume, per-agent concurrency, and the execution consumer on the embedded
// queue.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <sstream>

#include "common/log.h"
#include "common/trace.h"
#include "executor/async_util.h"
#include "executor/consumer.h"
#include "executor/engine.h"
#include "executor/loop.h"
#include "queue/messages.h"
#include "storage/forwarding_store.h"
#include "storage/store.h"
#include "support/prom_text.h"

namespace af {
namespace {

using namespace std::chrono_literals;

// An agent transport whose behaviour each test scripts per agent name.
class FakeCaller : public AgentCaller {
 public:
  struct Behavior {
    std::function<AgentReply(const AgentCall&)> reply = [](const AgentCall& c) {
      AgentReply r;
      r.output = json{{"echo", c.input}};
      return r;
    };
    std::chrono::milliseconds delay{0};
  };

  void Set(const std::string& agent, Behavior b) {
    std::lock_guard<std::mutex> lock(mu_);
    behaviors_[agent] = std::move(b);
  }
  int Calls(const std::string& agent) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[agent];
  }
  int MaxInFlight(const std::string& agent) {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_[agent];
  }
  int Cancelled() { return cancelled_.load(); }

  asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call, CancelSignal* cancel) override {
    Behavior b;
    {
      std::lock_guard<std::mutex> lock(mu_);
      b = behaviors_[agent.name];
      ++calls_[agent.name];
      int now = ++in_flight_[agent.name];
      max_in_flight_[agent.name] = std::max(max_in_flight_[agent.name], now);
    }
    bool finished = true;
    if (b.delay.count() > 0) finished = co_await SleepFor(b.delay, cancel);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_[agent.name];
    }
    if (!finished) {
      ++cancelled_;
      AgentReply r;
      r.outcome = AgentReply::Outcome::kCancelled;
      r.error = "cancelled";
      co_return r;
    }
    co_return b.reply(call);
  }

 private:
  std::mutex mu_;
  std::map<std::string, Behavior> behaviors_;
  std::map<std::string, int> calls_, in_flight_, max_in_flight_;
  std::atomic<int> cancelled_{0};
};

AgentReply Retryable(std::string error) {
  AgentReply r;
  r.outcome = AgentReply::Outcome::kRetryable;
  r.error = std::move(error);
  r.http_status = 503;
  return r;
}

AgentReply Permanent(std::string error) {
  AgentReply r;
  r.outcome = AgentReply::Outcome::kPermanent;
  r.error = std::move(error);
  r.http_status = 400;
  return r;
}

// Submits `er` to `engine`; the future gets the run's outcome. The promise
// is shared with the callback, so a test that stops waiting early leaves
// nothing dangling.
std::future<RunOutcome> SubmitTo(Engine& engine, ExecutionRequest er) {
  auto p = std::make_shared<std::promise<RunOutcome>>();
  auto f = p->get_future();
  engine.Submit(std::move(er), [p](const RunOutcome& o) { p->set_value(o); });
  return f;
}

// The static directory, with health the test can change while runs execute.
class TestDirectory : public AgentDirectory {
 public:
  explicit TestDirectory(std::vector<AgentEndpoint> agents) : inner_(NewStaticAgentDirectory(std::move(agents))) {}
  void SetHealth(const std::string& name, AgentHealth h, std::string error = "") {
    std::lock_guard<std::mutex> lock(mu_);
    health_[name] = {h, std::move(error)};
  }
  asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    Result<AgentEndpoint> e = co_await inner_->Resolve(name);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = health_.find(name);
    if (e.ok() && it != health_.end()) {
      e->health = it->second.first;
      e->health_error = it->second.second;
    }
    co_return e;
  }

 private:
  std::unique_ptr<AgentDirectory> inner_;
  std::mutex mu_;
  std::map<std::string, std::pair<AgentHealth, std::string>> health_;
};

// Every engine test runs twice: store calls inline on the loop (SQLite's
// way) and on the StoreRunner's threads (PostgreSQL's way).
// Every engine test runs four ways: store calls inline on the loop
// (SQLite's way) or on the StoreRunner's threads (PostgreSQL's way), and
// execution requests without the plan (the general start: the executor
// acquires the lease and reads the run) or with the plan and input, as the
// API publishes them (a new run starts in its first write batch).
struct EngineParam {
  bool threads = false;
  bool plan_in_request = false;
};

class EngineTest : public ::testing::TestWithParam<EngineParam> {
 protected:
  void SetUp() override {
    auto s = OpenStore(StoreOptions{":memory:"});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    std::vector<AgentEndpoint> agents;
    for (const char* n : {"a", "b", "c", "slow", "limited", "bad"}) {
      AgentEndpoint e;
      e.name = n;
      e.url = "http://fake/" + std::string(n);
      agents.push_back(e);
    }
    agents[4].max_concurrency = 2;
    directory_ = std::make_unique<TestDirectory>(agents);
    EngineOptions eo;
    eo.store_retry_delay = 20ms;
    eo.metrics = &metrics_;  // every test also exercises the instrumentation
    engine_ = std::make_unique<Engine>(loop_.executor(), store_.get(), directory_.get(), &caller_, Options(eo));
    loop_.Start();
  }
  void TearDown() override {
    engine_->Shutdown();
    loop_.Stop();
  }

  // The store-call mode of this instantiation applied to `eo`.
  static EngineOptions Options(EngineOptions eo) {
    eo.store_threads = GetParam().threads ? 3 : 0;
    eo.store_inline_when_idle = false;
    return eo;
  }

  // Creates a workflow and a PENDING run of it.
  std::string NewRunOf(const json& plan, const json& input = json::object(), const std::string& traceparent = "") {
    auto wf = store_->CreateWorkflow(NewWorkflow{plan["name"].get<std::string>(), "", plan});
    EXPECT_TRUE(wf.ok()) << wf.status().ToString();
    NewRun nr;
    nr.workflow_id = wf->id;
    nr.workflow_version = wf->version;
    nr.input = input;
    nr.traceparent = traceparent;
    auto run = store_->CreateRun(nr);
    EXPECT_TRUE(run.ok()) << run.status().ToString();
    return run->run.id;
  }

  std::future<RunOutcome> Submit(const std::string& run_id) { return SubmitTo(*engine_, Request(run_id)); }

  // The execution request for a run in this test's way: without the plan
  // (the executor reads the run's workflow version), or with the plan and
  // input the API would publish.
  ExecutionRequest Request(const std::string& run_id) {
    ExecutionRequest er;
    er.run_id = run_id;
    if (!GetParam().plan_in_request) return er;
    auto run = store_->GetRun(run_id);
    if (!run.ok()) return er;  // an unknown run: nothing to publish with it
    auto wf = store_->GetWorkflow(run->workflow_id, run->workflow_version);
    EXPECT_TRUE(wf.ok()) << wf.status().ToString();
    if (!wf.ok()) return er;
    er.workflow_plan = wf->plan;
    er.input_data = run->input;
    er.workflow_id = run->workflow_id;
    er.workflow_version = run->workflow_version;
    er.timestamp = NowMs();
    return er;
  }

  af::Run RunToEnd(const std::string& run_id) {
    auto f = Submit(run_id);
    EXPECT_EQ(f.wait_for(20s), std::future_status::ready) << "run did not end";
    auto run = store_->GetRun(run_id);
    EXPECT_TRUE(run.ok());
    return *run;
  }

  std::vector<StepExecution> Steps(const std::string& run_id, const std::string& step_id = "") {
    auto all = store_->ListSteps(run_id);
    EXPECT_TRUE(all.ok());
    std::vector<StepExecution> out;
    for (auto& s : *all) {
      if (step_id.empty() || s.step_id == step_id) out.push_back(s);
    }
    return out;
  }

  std::unique_ptr<Store> store_;
  metrics::Registry registry_;
  metrics::ExecutorMetrics metrics_{registry_};
  EventLoop loop_{1};
  FakeCaller caller_;
  std::unique_ptr<TestDirectory> directory_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(EngineTest, SequentialPlanPassesOutputsAlongAndCommitsEachStep) {
  json plan = json::parse(R"({"name": "seq", "steps": [
    {"id": "one", "agent": "a", "input": {"v": "${input.x}"}},
    {"id": "two", "agent": "b", "input": {"prev": "${steps.one.output.echo.v}", "run": "${run.id}"}}],
    "output": {"result": "${steps.two.output.echo.prev}"}})");
  std::string id = NewRunOf(plan, {{"x", 42}});
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  EXPECT_EQ(run.output, json({{"result", 42}}));
  ASSERT_TRUE(run.started_at && run.completed_at);
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].step_id, "one");
  EXPECT_EQ(steps[0].status, StepStatus::kCompleted);
  EXPECT_EQ(steps[0].input, json({{"v", 42}}));
  EXPECT_EQ(steps[1].input["run"], id);
  // The second step started only after the first one's result was recorded.
  ASSERT_TRUE(steps[0].completed_at.has_value());
  EXPECT_LE(*steps[0].completed_at, steps[1].started_at);
}

// At every agent call, the results of all steps it depends on are already
// committed (read back from the store by the agent itself), and so is the
// call's own RUNNING row; for a chain, a fan-out and its join.
// The engine keeps parsed plans per workflow version (PlanCache): runs of
// one version after the first reuse the parse, and a request that carries
// another plan under the same version still runs the plan it carries.
TEST_P(EngineTest, EachRunExecutesThePlanItsRequestCarriesUnderOneVersion) {
  json plan = json::parse(R"({"name": "cached", "steps": [{"id": "one", "agent": "a", "input": {"v": 1}}]})");
  std::string first = NewRunOf(plan);
  auto run1 = store_->GetRun(first);
  ASSERT_TRUE(run1.ok());
  NewRun nr;
  nr.workflow_id = run1->workflow_id;
  nr.workflow_version = run1->workflow_version;
  auto again = store_->CreateRun(nr);
  ASSERT_TRUE(again.ok());
  auto other = store_->CreateRun(nr);
  ASSERT_TRUE(other.ok());

  EXPECT_EQ(RunToEnd(first).status, RunStatus::kCompleted);
  EXPECT_EQ(RunToEnd(again->run.id).status, RunStatus::kCompleted);
  ExecutionRequest er = Request(other->run.id);
  if (GetParam().plan_in_request) {
    er.workflow_plan["steps"][0]["agent"] = "b";  // same workflow id and version, another plan
  }
  auto f = SubmitTo(*engine_, er);
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  auto run3 = store_->GetRun(other->run.id);
  ASSERT_TRUE(run3.ok());
  EXPECT_EQ(run3->status, RunStatus::kCompleted) << run3->error_message;

  for (const std::string& id : {first, again->run.id}) {
    auto steps = Steps(id);
    ASSERT_EQ(steps.size(), 1u);
    EXPECT_EQ(steps[0].agent_name, "a");
  }
  auto steps = Steps(other->run.id);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].agent_name, GetParam().plan_in_request ? "b" : "a");
}

TEST_P(EngineTest, EveryResultIsCommittedBeforeAnyStepThatDependsOnItCallsItsAgent) {
  std::atomic<int> violations{0}, checks{0};
  auto check = [this, &violations, &checks](const AgentCall& c, const std::vector<std::string>& before) {
    auto steps = store_->ListSteps(c.run_id);
    if (!steps.ok()) {
      ++violations;
      return;
    }
    for (const std::string& dep : before) {
      bool done = false;
      for (const StepExecution& s : *steps) {
        if (s.step_id == dep && !s.item_index && s.status == StepStatus::kCompleted) done = true;
      }
      if (!done) ++violations;
    }
    bool own_row = false;
    for (const StepExecution& s : *steps) {
      if (s.step_id == c.step_id && s.item_index == c.item_index && s.attempt == c.attempt &&
          s.status == StepStatus::kRunning) {
        own_row = true;
      }
    }
    if (!own_row) ++violations;
    ++checks;
  };
  auto echo = [](const AgentCall& c) {
    AgentReply r;
    r.output = json{{"echo", c.input}};
    return r;
  };
  caller_.Set("a", {.reply = [&](const AgentCall& c) {
                      if (c.step_id == "one") check(c, {});
                      if (c.step_id == "two") check(c, {"one"});
                      if (c.step_id == "join") check(c, {"one", "two", "fan"});
                      return echo(c);
                    }});
  caller_.Set("b", {.reply = [&](const AgentCall& c) {
                      check(c, {"one", "two"});
                      return echo(c);
                    }});
  json plan = json::parse(R"({"name": "order", "steps": [
    {"id": "one", "agent": "a"},
    {"id": "two", "agent": "a", "depends_on": ["one"]},
    {"id": "fan", "agent": "b", "depends_on": ["two"], "for_each": "${input.items}", "input": {"i": "${item}"}},
    {"id": "join", "agent": "a", "depends_on": ["fan"], "input": {"all": "${steps.fan.output}"}}]})");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    plan["name"] = "order-" + std::to_string(i);
    ids.push_back(NewRunOf(plan, {{"items", json::array({1, 2, 3, 4, 5})}}));
  }
  std::vector<std::future<RunOutcome>> done;
  for (const std::string& id : ids) done.push_back(Submit(id));
  for (auto& f : done) {
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(f.get().status, RunStatus::kCompleted);
  }
  EXPECT_EQ(checks.load(), 4 * (3 + 5));
  EXPECT_EQ(violations.load(), 0);
  for (const std::string& id : ids) {
    auto steps = Steps(id);
    EXPECT_EQ(steps.size(), 4u + 5u);
    for (const StepExecution& s : steps) EXPECT_EQ(s.status, StepStatus::kCompleted) << s.step_id;
  }
}

TEST_P(EngineTest, MetricsCountRunsStepsAgentErrorsAndRetries) {
  auto b_calls = std::make_shared<std::atomic<int>>(0);
  caller_.Set("b", {.reply = [b_calls](const AgentCall& c) {
                      if (++*b_calls <= 2) return Retryable("HTTP 503");
                      AgentReply r;
                      r.output = json{{"ok", c.attempt}};
                      return r;
                    }});
  caller_.Set("bad", {.reply = [](const AgentCall&) { return Permanent("HTTP 400: no"); }});
  json ok_plan = json::parse(R"({"name": "m-ok", "steps": [
    {"id": "one", "agent": "a"},
    {"id": "two", "agent": "b", "retry": {"max_attempts": 3, "initial_backoff_ms": 1}}]})");
  json bad_plan = json::parse(R"({"name": "m-bad", "steps": [{"id": "x", "agent": "bad"}]})");
  EXPECT_EQ(RunToEnd(NewRunOf(ok_plan)).status, RunStatus::kCompleted);
  EXPECT_EQ(RunToEnd(NewRunOf(bad_plan)).status, RunStatus::kFailed);

  auto page = test::ParsePromText(registry_.Render());
  ASSERT_TRUE(page.ok()) << page.status().ToString() << registry_.Render();
  const test::PromText& m = *page;
  EXPECT_EQ(m.Value("agentflow_runs_started_total"), 2);
  EXPECT_EQ(m.Value("agentflow_runs_resumed_total"), 0);
  EXPECT_EQ(m.Value("agentflow_runs_finished_total", {{"status", "COMPLETED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_runs_finished_total", {{"status", "FAILED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_run_duration_seconds_count", {{"status", "COMPLETED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_run_duration_seconds_count", {{"status", "FAILED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_runs_in_flight"), 0);
  EXPECT_EQ(m.Value("agentflow_step_executions_total", {{"agent", "a"}, {"status", "COMPLETED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_step_executions_total", {{"agent", "b"}, {"status", "FAILED"}}), 2);
  EXPECT_EQ(m.Value("agentflow_step_executions_total", {{"agent", "b"}, {"status", "COMPLETED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_step_executions_total", {{"agent", "bad"}, {"status", "FAILED"}}), 1);
  EXPECT_EQ(m.Sum("agentflow_step_duration_seconds_count", {{"agent", "b"}}), 3) << "one per call";
  EXPECT_EQ(m.Value("agentflow_step_duration_seconds_count", {{"agent", "a"}, {"status", "COMPLETED"}}), 1);
  EXPECT_EQ(m.Value("agentflow_agent_call_errors_total", {{"agent", "b"}, {"kind", "retryable"}}), 2);
  EXPECT_EQ(m.Value("agentflow_agent_call_errors_total", {{"agent", "bad"}, {"kind", "permanent"}}), 1);
  EXPECT_EQ(m.Sum("agentflow_agent_call_errors_total", {{"agent", "a"}}), 0);
  EXPECT_EQ(m.Value("agentflow_step_retries_total", {{"agent", "b"}}), 2);
  EXPECT_EQ(m.Sum("agentflow_step_retries_total", {{"agent", "bad"}}), 0) << "permanent: not retried";
}

TEST_P(EngineTest, EveryAgentCallCarriesTheRunsTraceWithANewSpan) {
  std::mutex mu;
  std::vector<std::string> seen;
  caller_.Set("a", {.reply = [&](const AgentCall& c) {
                      std::lock_guard<std::mutex> lock(mu);
                      seen.push_back(c.traceparent);
                      AgentReply r;
                      r.output = json::object();
                      return r;
                    }});
  json plan = json::parse(R"({"name": "traced", "steps": [
    {"id": "one", "agent": "a"}, {"id": "many", "agent": "a", "for_each": "${input.items}"}]})");
  const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string id = NewRunOf(plan, {{"items", {1, 2, 3}}}, incoming);
  ASSERT_EQ(RunToEnd(id).status, RunStatus::kCompleted);
  ASSERT_EQ(seen.size(), 4u);
  std::set<std::string> spans;
  for (const std::string& tp : seen) {
    auto parsed = trace::ParseTraceParent(tp);
    ASSERT_TRUE(parsed.has_value()) << tp;
    EXPECT_EQ(parsed->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_NE(parsed->parent_id, "00f067aa0ba902b7") << "a span of its own, child of the caller's";
    EXPECT_EQ(parsed->flags, 1);
    spans.insert(parsed->parent_id);
  }
  EXPECT_EQ(spans.size(), 4u) << "a new span id per call";

  // A run stored without a traceparent: the trace id comes from its id.
  seen.clear();
  std::string plain = NewRunOf(json::parse(R"({"name": "untraced", "steps": [{"id": "one", "agent": "a"}]})"));
  ASSERT_EQ(RunToEnd(plain).status, RunStatus::kCompleted);
  ASSERT_EQ(seen.size(), 1u);
  auto parsed = trace::ParseTraceParent(seen[0]);
  ASSERT_TRUE(parsed.has_value()) << seen[0];
  EXPECT_EQ(parsed->trace_id, trace::TraceIdForRunId(plain));
}

TEST_P(EngineTest, EveryLogLineOfARunCarriesItsRunIdAndTraceId) {
  caller_.Set("bad", {.reply = [](const AgentCall&) { return Retryable("HTTP 503"); }});
  json plan = json::parse(R"({"name": "logged", "steps": [
    {"id": "one", "agent": "a"},
    {"id": "two", "agent": "bad", "retry": {"max_attempts": 2, "initial_backoff_ms": 1}}]})");
  const std::string incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  std::string id = NewRunOf(plan, json::object(), incoming);
  log::Init("DEBUG", "json");
  testing::internal::CaptureStderr();
  af::Run run = RunToEnd(id);
  std::string err = testing::internal::GetCapturedStderr();
  log::Init("INFO", "text");
  EXPECT_EQ(run.status, RunStatus::kFailed);
  std::istringstream lines(err);
  std::string line;
  int of_run = 0, of_step = 0;
  while (std::getline(lines, line)) {
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    if (j.value("run_id", "") != id) continue;
    ++of_run;
    EXPECT_EQ(j.value("trace_id", ""), "0af7651916cd43dd8448eb211c80319c") << line;
    if (j.contains("step_id")) {
      ++of_step;
      EXPECT_TRUE(j.contains("agent")) << line;
    }
  }
  EXPECT_GE(of_run, 3) << err;  // started, step failed, run FAILED at least
  EXPECT_GE(of_step, 2) << err;
}

TEST_P(EngineTest, DefaultOutputMapsEveryStep) {
  json plan = json::parse(R"({"name": "o", "steps": [{"id": "one", "agent": "a", "input": {"k": 1}}]})");
  af::Run run = RunToEnd(NewRunOf(plan));
  EXPECT_EQ(run.output, json::parse(R"({"one": {"echo": {"k": 1}}})"));
}

TEST_P(EngineTest, IndependentDagBranchesRunInParallel) {
  caller_.Set("slow", {.delay = 200ms});
  json plan = json::parse(R"({"name": "dag", "steps": [
    {"id": "root", "agent": "a"},
    {"id": "left", "agent": "slow", "depends_on": ["root"]},
    {"id": "right", "agent": "slow", "depends_on": ["root"]},
    {"id": "join", "agent": "b", "depends_on": ["left", "right"],
     "input": {"l": "${steps.left.output}", "r": "${steps.right.output}"}}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  EXPECT_EQ(caller_.MaxInFlight("slow"), 2);
  auto join = Steps(id, "join");
  ASSERT_EQ(join.size(), 1u);
  for (const auto& s : Steps(id)) {
    if (s.step_id == "left" || s.step_id == "right") {
      EXPECT_LE(*s.completed_at, join[0].started_at);
    }
  }
}

TEST_P(EngineTest, ForEachFansOutWithinMaxParallelAndKeepsOrder) {
  caller_.Set("limited", {.reply = [](const AgentCall& c) {
                            AgentReply r;
                            r.output = json{{"i", *c.item_index}, {"item", c.input["v"]}};
                            return r;
                          },
                          .delay = 5ms});
  json plan = json::parse(R"({"name": "fan", "steps": [
    {"id": "many", "agent": "slow", "for_each": "${input.items}", "max_parallel": 3,
     "input": {"v": "${item}", "i": "${index}"}}],
    "output": "${steps.many.output}"})");
  caller_.Set("slow", {.reply = [](const AgentCall& c) {
                         AgentReply r;
                         r.output = json{{"i", *c.item_index}, {"v", c.input["v"]}};
                         return r;
                       },
                       .delay = 5ms});
  json items = json::array();
  for (int i = 0; i < 40; ++i) items.push_back("x" + std::to_string(i));
  std::string id = NewRunOf(plan, {{"items", items}});
  af::Run run = RunToEnd(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  ASSERT_TRUE(run.output.is_array());
  ASSERT_EQ(run.output.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(run.output[i], json({{"i", i}, {"v", "x" + std::to_string(i)}}));
  EXPECT_LE(caller_.MaxInFlight("slow"), 3);
  EXPECT_GE(caller_.MaxInFlight("slow"), 2);
  auto rows = Steps(id, "many");
  EXPECT_EQ(rows.size(), 41u);  // 40 items + the fan-in row
  int aggregates = 0;
  for (const auto& r : rows) {
    if (!r.item_index) {
      ++aggregates;
      EXPECT_EQ(r.output, run.output);
    }
  }
  EXPECT_EQ(aggregates, 1);
}

TEST_P(EngineTest, FalseConditionSkipsStepAndDownstreamSeesNull) {
  json plan = json::parse(R"({"name": "when", "steps": [
    {"id": "check", "agent": "a", "input": {"go": "${input.go}"}},
    {"id": "maybe", "agent": "b", "when": "${steps.check.output.echo.go} == true"},
    {"id": "after", "agent": "c", "input": {"m": "${steps.maybe.output}"}}]})");
  std::string id = NewRunOf(plan, {{"go", false}});
  af::Run run = RunToEnd(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  auto maybe = Steps(id, "maybe");
  ASSERT_EQ(maybe.size(), 1u);
  EXPECT_EQ(maybe[0].status, StepStatus::kSkipped);
  EXPECT_EQ(caller_.Calls("b"), 0);
  EXPECT_EQ(Steps(id, "after")[0].input, json({{"m", nullptr}}));

  std::string id2 = NewRunOf(json::parse(R"({"name": "when2", "steps": [
    {"id": "check", "agent": "a", "input": {"go": "${input.go}"}},
    {"id": "maybe", "agent": "b", "when": "${steps.check.output.echo.go} == true"}]})"),
                             {{"go", true}});
  EXPECT_EQ(RunToEnd(id2).status, RunStatus::kCompleted);
  EXPECT_EQ(caller_.Calls("b"), 1);
}

TEST_P(EngineTest, RetryableFailuresAreRetriedWithNewAttemptRows) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  caller_.Set("a", {.reply = [attempts](const AgentCall& c) {
    if (++*attempts < 3) return Retryable("HTTP 503: busy");
    AgentReply r;
    r.output = json{{"attempt", c.attempt}};
    return r;
  }});
  json plan = json::parse(R"({"name": "retry", "steps": [
    {"id": "s", "agent": "a", "retry": {"max_attempts": 5, "initial_backoff_ms": 1, "max_backoff_ms": 5}}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  auto rows = Steps(id);
  ASSERT_EQ(rows.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(rows[i].attempt, i + 1);
  EXPECT_EQ(rows[0].status, StepStatus::kFailed);
  EXPECT_EQ(rows[0].error_message, "HTTP 503: busy");
  EXPECT_EQ(rows[2].status, StepStatus::kCompleted);
  EXPECT_EQ(rows[2].output, json({{"attempt", 3}}));
}

TEST_P(EngineTest, ExhaustedRetriesFailTheRunNamingStepAgentAndCause) {
  caller_.Set("a", {.reply = [](const AgentCall&) { return Retryable("HTTP 500: boom"); }});
  json plan = json::parse(R"({"name": "fail", "steps": [
    {"id": "s", "agent": "a", "retry": {"max_attempts": 3, "initial_backoff_ms": 1}},
    {"id": "never", "agent": "b"}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_NE(run.error_message.find("step 's'"), std::string::npos) << run.error_message;
  EXPECT_NE(run.error_message.find("agent 'a'"), std::string::npos) << run.error_message;
  EXPECT_NE(run.error_message.find("after 3 attempts"), std::string::npos) << run.error_message;
  EXPECT_NE(run.error_message.find("HTTP 500: boom"), std::string::npos) << run.error_message;
  EXPECT_EQ(Steps(id, "s").size(), 3u);
  EXPECT_EQ(caller_.Calls("b"), 0);
}

TEST_P(EngineTest, PermanentFailureIsNotRetried) {
  caller_.Set("a", {.reply = [](const AgentCall&) { return Permanent("HTTP 400: bad input"); }});
  json plan = json::parse(R"({"name": "perm", "steps": [{"id": "s", "agent": "a", "retry": {"max_attempts": 5}}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_EQ(Steps(id).size(), 1u);
  EXPECT_NE(run.error_message.find("HTTP 400: bad input"), std::string::npos);
}

TEST_P(EngineTest, FailingStepCancelsTheStepsStillRunning) {
  caller_.Set("slow", {.delay = 30s});
  caller_.Set("bad", {.reply = [](const AgentCall&) { return Permanent("HTTP 400: no"); }});
  json plan = json::parse(R"({"name": "x", "steps": [
    {"id": "long", "agent": "slow", "depends_on": []},
    {"id": "boom", "agent": "bad", "depends_on": []}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  auto longs = Steps(id, "long");
  ASSERT_EQ(longs.size(), 1u);
  EXPECT_EQ(longs[0].status, StepStatus::kCancelled);
  EXPECT_EQ(caller_.Cancelled(), 1);
}

TEST_P(EngineTest, CancelAbortsInFlightCallsAndEndsCancelled) {
  caller_.Set("slow", {.delay = 30s});
  json plan = json::parse(R"({"name": "c", "steps": [{"id": "nap", "agent": "slow"}, {"id": "next", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  auto f = Submit(id);
  // Wait until the call is in flight.
  for (int i = 0; i < 500 && Steps(id).empty(); ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(Steps(id).size(), 1u);
  engine_->Cancel(id, "alice", "changed my mind");
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().status, RunStatus::kCancelled);
  auto run = store_->GetRun(id);
  EXPECT_EQ(run->status, RunStatus::kCancelled);
  EXPECT_EQ(run->cancelled_by, "alice");
  EXPECT_EQ(run->cancel_reason, "changed my mind");
  EXPECT_EQ(run->error_message, "cancelled by alice: changed my mind");
  auto rows = Steps(id);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, StepStatus::kCancelled);
  EXPECT_EQ(caller_.Calls("a"), 0);
}

TEST_P(EngineTest, CancelRecordedInTheStoreReachesARunExecutingHere) {
  // Another process (an API, another consumer) recorded the request; no
  // message reaches this engine. The engine's store poll must find it.
  caller_.Set("slow", {.delay = 30s});
  json plan = json::parse(R"({"name": "cs", "steps": [{"id": "nap", "agent": "slow"}]})");
  std::string id = NewRunOf(plan);
  auto f = Submit(id);
  for (int i = 0; i < 500 && Steps(id).empty(); ++i) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(store_->RequestCancel({id, "erin", "elsewhere"}).ok());
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  auto run = store_->GetRun(id);
  EXPECT_EQ(run->status, RunStatus::kCancelled);
  EXPECT_EQ(run->error_message, "cancelled by erin: elsewhere");
}

TEST_P(EngineTest, AbandonHandsRunsBackWithoutRecordingAnEnd) {
  caller_.Set("slow", {.delay = 30s});
  json plan = json::parse(R"({"name": "ab", "steps": [{"id": "s", "agent": "slow"}]})");
  std::string id = NewRunOf(plan);
  std::string other = NewRunOf(json::parse(R"({"name": "ab2", "steps": [{"id": "s", "agent": "slow"}]})"));
  auto f = Submit(id);
  auto g = Submit(other);
  for (int i = 0; i < 500 && (Steps(id).empty() || Steps(other).empty()); ++i) std::this_thread::sleep_for(5ms);
  engine_->Abandon({id, "run-not-here"});
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready) << "Abandon returns after the run unwound";
  EXPECT_EQ(f.get().kind, RunOutcome::Kind::kAbandoned);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kRunning);
  EXPECT_EQ(Steps(id)[0].status, StepStatus::kRunning);
  EXPECT_EQ(g.wait_for(50ms), std::future_status::timeout) << "other runs keep going";
  EXPECT_EQ(engine_->ActiveRuns(), 1u);
}

TEST_P(EngineTest, CancelRequestedBeforeStartEndsCancelledWithoutCalls) {
  json plan = json::parse(R"({"name": "c", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  ASSERT_TRUE(store_->RequestCancel({id, "bob", "not needed"}).ok());
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kCancelled);
  EXPECT_EQ(caller_.Calls("a"), 0);
}

TEST_P(EngineTest, ResumeReusesCompletedStepsAndRedoesInterruptedOnes) {
  json plan = json::parse(R"({"name": "resume", "steps": [
    {"id": "one", "agent": "a"}, {"id": "two", "agent": "b", "input": {"p": "${steps.one.output}"}},
    {"id": "three", "agent": "c"}]})");
  std::string id = NewRunOf(plan);
  // The state a crashed executor leaves: RUNNING run, step one done, two in flight.
  RunTransition t{id, RunStatus::kPending, RunStatus::kRunning};
  ASSERT_TRUE(store_->TransitionRun(t).ok());
  StepExecution one{0, id, "one", std::nullopt, "a", 1, StepStatus::kRunning, json::object(), nullptr, "", NowMs()};
  auto one_id = store_->InsertStep(one);
  ASSERT_TRUE(one_id.ok());
  StepFinish fin{id, *one_id, StepStatus::kCompleted, json{{"recorded", true}}, ""};
  ASSERT_TRUE(store_->FinishStep(fin).ok());
  StepExecution two{0, id, "two", std::nullopt, "b", 1, StepStatus::kRunning, json::object(), nullptr, "", NowMs()};
  ASSERT_TRUE(store_->InsertStep(two).ok());

  af::Run run = RunToEnd(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  EXPECT_EQ(caller_.Calls("a"), 0) << "a COMPLETED step must not be called again";
  EXPECT_EQ(caller_.Calls("b"), 1);
  auto twos = Steps(id, "two");
  ASSERT_EQ(twos.size(), 2u);
  EXPECT_EQ(twos[0].status, StepStatus::kFailed);
  EXPECT_NE(twos[0].error_message.find("interrupted"), std::string::npos);
  EXPECT_EQ(twos[1].attempt, 2);
  EXPECT_EQ(twos[1].input, json({{"p", {{"recorded", true}}}}));
}

TEST_P(EngineTest, ResumeOfForEachReusesCompletedItems) {
  json plan = json::parse(R"({"name": "fe", "steps": [
    {"id": "f", "agent": "a", "for_each": "${input.xs}", "input": {"x": "${item}"}}]})");
  std::string id = NewRunOf(plan, {{"xs", {1, 2, 3}}});
  ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  StepExecution item1{0, id, "f", 1, "a", 1, StepStatus::kRunning, json{{"x", 2}}, nullptr, "", NowMs()};
  auto item1_id = store_->InsertStep(item1);
  ASSERT_TRUE(store_->FinishStep({id, *item1_id, StepStatus::kCompleted, json{{"old", 2}}, ""}).ok());
  af::Run run = RunToEnd(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  EXPECT_EQ(caller_.Calls("a"), 2);
  EXPECT_EQ(run.output["f"][1], json({{"old", 2}}));
  EXPECT_EQ(run.output["f"][0], json({{"echo", {{"x", 1}}}}));
}

TEST_P(EngineTest, AgentMaxConcurrencyHoldsAcrossRuns) {
  caller_.Set("limited", {.delay = 20ms});
  json plan = json::parse(R"({"name": "lim", "steps": [{"id": "s", "agent": "limited"}]})");
  auto wf = store_->CreateWorkflow(NewWorkflow{"lim", "", plan});
  std::vector<std::future<RunOutcome>> futures;
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    NewRun nr{"", wf->id, wf->version, json::object(), ""};
    ids.push_back(store_->CreateRun(nr)->run.id);
    futures.push_back(Submit(ids.back()));
  }
  for (auto& f : futures) ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  for (auto& id : ids) EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
  EXPECT_EQ(caller_.MaxInFlight("limited"), 2);
  EXPECT_EQ(caller_.Calls("limited"), 8);
}

TEST_P(EngineTest, UnknownAgentAndMissingReferenceFailWithClearMessages) {
  json plan = json::parse(R"({"name": "u", "steps": [{"id": "s", "agent": "nobody"}]})");
  af::Run run = RunToEnd(NewRunOf(plan));
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_NE(run.error_message.find("nobody"), std::string::npos) << run.error_message;

  json plan2 = json::parse(R"({"name": "m", "steps": [{"id": "s", "agent": "a", "input": {"x": "${input.missing.deep}"}}]})");
  af::Run run2 = RunToEnd(NewRunOf(plan2, {{"other", 1}}));
  EXPECT_EQ(run2.status, RunStatus::kFailed);
  EXPECT_NE(run2.error_message.find("input.missing"), std::string::npos) << run2.error_message;
}

TEST_P(EngineTest, UnhealthyAgentFailsAttemptsWithoutCallingUntilItRecovers) {
  directory_->SetHealth("a", AgentHealth::kUnhealthy, "GET http://fake/healthz: HTTP 503");
  // Each attempt records a FAILED row; after the second, the agent recovers.
  json plan = json::parse(R"({"name": "sick", "steps": [
    {"id": "s", "agent": "a", "retry": {"max_attempts": 5, "initial_backoff_ms": 50, "max_backoff_ms": 50}}]})");
  std::string id = NewRunOf(plan);
  auto f = Submit(id);
  for (int i = 0; i < 2000 && Steps(id).size() < 2; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_GE(Steps(id).size(), 2u);
  directory_->SetHealth("a", AgentHealth::kHealthy);
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  af::Run run = *store_->GetRun(id);
  ASSERT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  auto rows = Steps(id);
  ASSERT_GE(rows.size(), 3u);
  EXPECT_EQ(rows[0].status, StepStatus::kFailed);
  EXPECT_EQ(rows[0].error_message, "agent 'a' is unhealthy: GET http://fake/healthz: HTTP 503");
  EXPECT_EQ(rows.back().status, StepStatus::kCompleted);
  EXPECT_EQ(caller_.Calls("a"), 1) << "an unhealthy agent is not called";
}

TEST_P(EngineTest, UnhealthyAgentFailsTheStepOnceRetriesAreUsedUp) {
  directory_->SetHealth("b", AgentHealth::kUnhealthy, "no heartbeat for 30 s");
  json plan = json::parse(R"({"name": "sick2", "steps": [
    {"id": "s", "agent": "b", "retry": {"max_attempts": 2, "initial_backoff_ms": 1, "max_backoff_ms": 1}}]})");
  std::string id = NewRunOf(plan);
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_NE(run.error_message.find("after 2 attempts: agent 'b' is unhealthy: no heartbeat for 30 s"), std::string::npos)
      << run.error_message;
  EXPECT_EQ(Steps(id).size(), 2u);
  EXPECT_EQ(caller_.Calls("b"), 0);
}

TEST_P(EngineTest, DuplicateSubmitWhileActiveAndTerminalRunsAreNoOps) {
  caller_.Set("slow", {.delay = 100ms});
  json plan = json::parse(R"({"name": "d", "steps": [{"id": "s", "agent": "slow"}]})");
  std::string id = NewRunOf(plan);
  auto first = Submit(id);
  auto second = Submit(id);  // kept until `first` ends
  auto third = Submit(id);
  ASSERT_EQ(third.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(third.get().kind, RunOutcome::Kind::kDuplicate);
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(first.get().status, RunStatus::kCompleted);
  ASSERT_EQ(second.wait_for(5s), std::future_status::ready);
  RunOutcome kept = second.get();
  EXPECT_EQ(kept.kind, RunOutcome::Kind::kFinished) << "found the run terminal";
  EXPECT_EQ(kept.status, RunStatus::kCompleted);
  auto again = Submit(id);
  ASSERT_EQ(again.wait_for(5s), std::future_status::ready);
  RunOutcome o = again.get();
  EXPECT_EQ(o.kind, RunOutcome::Kind::kFinished);
  EXPECT_EQ(caller_.Calls("slow"), 1);

  auto unknown = Submit("run-does-not-exist");
  ASSERT_EQ(unknown.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(unknown.get().kind, RunOutcome::Kind::kDropped);
}

TEST_P(EngineTest, ShutdownAbandonsRunsWithoutRecordingAnEnd) {
  caller_.Set("slow", {.delay = 30s});
  json plan = json::parse(R"({"name": "sd", "steps": [{"id": "s", "agent": "slow"}]})");
  std::string id = NewRunOf(plan);
  auto f = Submit(id);
  for (int i = 0; i < 500 && Steps(id).empty(); ++i) std::this_thread::sleep_for(5ms);
  engine_->Shutdown();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().kind, RunOutcome::Kind::kAbandoned);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kRunning);
  EXPECT_EQ(Steps(id)[0].status, StepStatus::kRunning) << "left for the next executor to resume";
}

// Fails the first N step inserts with Unavailable, as a database outage would.
class FlakyStore : public ForwardingStore {
 public:
  FlakyStore(Store* inner, int failures) : ForwardingStore(inner), failures_(failures) {}
  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) override {
    if (failures_-- > 0) return Status::Unavailable("database is restarting");
    return inner()->InsertStep(s, lease_token);
  }
  Result<RunLease> AcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) override {
    auto r = inner()->AcquireRunLease(run_id, owner, ttl_ms);
    if (r.ok()) ++leases;
    return r;
  }
  Result<int64_t> RenewRunLeases(const std::string& owner, int64_t ttl_ms) override {
    if (fail_renewals) return Status::Unavailable("database is unreachable");
    return inner()->RenewRunLeases(owner, ttl_ms);
  }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) override {
    if (failures_-- > 0) return Status::Unavailable("database is restarting");
    if (fail_apply_if && fail_apply_if(w)) return Status::Unavailable("database is restarting");
    if (before_apply) before_apply();
    auto r = inner()->ApplyRunWrites(w);
    if (r.ok() && after_apply) after_apply(w);
    return r;
  }
  std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      group_sizes_.push_back(group.size());
    }
    return Store::ApplyRunWritesGroup(group);  // one by one, through ApplyRunWrites above
  }
  std::vector<size_t> group_sizes() {
    std::lock_guard<std::mutex> l(mu_);
    return group_sizes_;
  }
  // Called before / after each (committed) ApplyRunWrites, on the thread
  // that makes it.
  std::function<void()> before_apply;
  std::function<void(const RunWrites&)> after_apply;
  // A batch it returns true for fails (Unavailable) instead of committing.
  std::function<bool(const RunWrites&)> fail_apply_if;
  std::atomic<int> leases{0};  // AcquireRunLease calls that succeeded

  // Lease renewals fail (an executor cut off from the database, or paused).
  std::atomic<bool> fail_renewals{false};

 private:
  std::atomic<int> failures_;
  std::mutex mu_;
  std::vector<size_t> group_sizes_;
};

// The API may retry a run as soon as its end is committed, before the engine
// that ran it has let it go: the retry's request must start the new attempt.
// (It was dropped as a duplicate, and the attempt waited for the sweeper;
// seen in CI as a retried run left PENDING.)
TEST_P(EngineTest, ARetryRequestedAsTheRunEndsIsExecuted) {
  FlakyStore hooked(store_.get(), 0);
  Engine engine(loop_.executor(), &hooked, directory_.get(), &caller_, Options(EngineOptions{}));
  auto calls = std::make_shared<std::atomic<int>>(0);
  caller_.Set("a", {.reply = [calls](const AgentCall& c) {
                 AgentReply r;
                 if (++*calls == 1) {
                   r.outcome = AgentReply::Outcome::kPermanent;
                   r.error = "first call fails";
                 } else {
                   r.output = json{{"echo", c.input}};
                 }
                 return r;
               }});
  json plan = json::parse(R"({"name": "rr", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  ExecutionRequest request;
  request.run_id = id;
  std::promise<RunOutcome> first, second;
  std::atomic<bool> retried{false};
  hooked.after_apply = [&](const RunWrites& w) {
    bool failed = false;
    for (const RunWrite& op : w.ops) {
      failed = failed || (op.kind == RunWrite::Kind::kTransition && op.transition.to == RunStatus::kFailed);
    }
    if (!failed || retried.exchange(true)) return;
    RunTransition retry;  // what POST /runs/{id}/retry commits
    retry.run_id = id;
    retry.from = RunStatus::kFailed;
    retry.to = RunStatus::kPending;
    EXPECT_TRUE(store_->TransitionRun(retry).ok());
    engine.Submit(request, [&](const RunOutcome& o) { second.set_value(o); });
  };
  engine.Submit(request, [&](const RunOutcome& o) { first.set_value(o); });
  auto f1 = first.get_future();
  auto f2 = second.get_future();
  ASSERT_EQ(f1.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f1.get().status, RunStatus::kFailed);
  ASSERT_EQ(f2.wait_for(5s), std::future_status::ready);
  RunOutcome o = f2.get();
  EXPECT_EQ(o.kind, RunOutcome::Kind::kFinished);
  EXPECT_EQ(o.status, RunStatus::kCompleted) << "the retry ran";
  EXPECT_EQ(calls->load(), 2);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
  engine.Shutdown();  // before `engine`, `hooked` and the promises go
}

// With store_inline_when_idle, a lone run's commits are made on the loop
// itself (no hand-off to a store thread), but not while one of its agent
// calls is in flight: the loop would not read that call's reply until the
// commit returned (a fan-out's first result held its other 39 replies).
TEST_P(EngineTest, CommitsAreInlineOnlyWhileNoAgentCallIsInFlight) {
  FlakyStore hooked(store_.get(), 0);
  EngineOptions eo;
  eo.store_threads = 3;
  eo.store_inline_when_idle = true;
  Engine engine(loop_.executor(), &hooked, directory_.get(), &caller_, eo);
  std::promise<std::thread::id> loop_id;
  asio::post(loop_.executor(), [&] { loop_id.set_value(std::this_thread::get_id()); });
  const std::thread::id loop_thread = loop_id.get_future().get();
  std::atomic<bool> slow_replied{false};
  caller_.Set("slow", {.reply =
                           [&](const AgentCall& c) {
                             slow_replied = true;
                             AgentReply r;
                             r.output = json{{"echo", c.input}};
                             return r;
                           },
                       .delay = 300ms});
  std::mutex mu;
  std::vector<std::pair<bool, bool>> commits;  // (on the loop, while the slow call was in flight)
  hooked.after_apply = [&](const RunWrites&) {
    const bool in_flight = caller_.Calls("slow") == 1 && !slow_replied;
    std::lock_guard<std::mutex> l(mu);
    commits.emplace_back(std::this_thread::get_id() == loop_thread, in_flight);
  };
  auto run = [&](const json& plan) {
    std::promise<RunOutcome> done;
    ExecutionRequest request;
    request.run_id = NewRunOf(plan);
    engine.Submit(request, [&](const RunOutcome& o) { done.set_value(o); });
    auto f = done.get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(f.get().status, RunStatus::kCompleted);
  };

  // Two steps one after the other: nothing is in flight at any commit.
  run(json::parse(R"({"name": "seq", "steps": [{"id": "one", "agent": "a"},
    {"id": "two", "agent": "a", "depends_on": ["one"]}]})"));
  {
    std::lock_guard<std::mutex> l(mu);
    ASSERT_GE(commits.size(), 3u);
    for (const auto& [on_loop, in_flight] : commits) EXPECT_TRUE(on_loop) << "a lone run's commit was handed off";
    commits.clear();
  }
  // Two steps side by side: the quick one's result is committed while the
  // slow one's call is in flight (the quick one waits a little, so that the
  // slow call has begun).
  caller_.Set("a", {.delay = 50ms});
  run(json::parse(R"({"name": "par", "steps": [{"id": "quick", "agent": "a", "depends_on": []},
    {"id": "long", "agent": "slow", "depends_on": []}]})"));
  std::lock_guard<std::mutex> l(mu);
  int during = 0;
  for (const auto& [on_loop, in_flight] : commits) {
    if (!in_flight) continue;
    ++during;
    EXPECT_FALSE(on_loop) << "a commit blocked the loop while an agent call was in flight";
  }
  EXPECT_GE(during, 1) << "the quick step's result was not committed during the slow call";
  engine.Shutdown();
}

// Shutdown also stops the cancel poller and the lease renewer, which sleep
// on timers after the last run ends: the engine may be destroyed as soon as
// Shutdown returns while the loop runs on. (Before, a loop woke up in the
// destroyed engine: a use-after-free that ASan reports, a crash seen in CI.)
TEST_P(EngineTest, ShutdownStopsTheBackgroundLoopsSoTheEngineMayGo) {
  EngineOptions eo;
  eo.cancel_poll_interval = 100ms;
  eo.lease_ttl = 300ms;  // renewed every 100 ms
  auto engine = std::make_unique<Engine>(loop_.executor(), store_.get(), directory_.get(), &caller_, Options(eo));
  json plan = json::parse(R"({"name": "bg", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  // Both loops start with the run and sleep their first 100 ms: the run
  // ends, and the engine goes, well before they wake.
  auto f = SubmitTo(*engine, Request(id));
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get().status, RunStatus::kCompleted);
  engine->Shutdown();
  engine.reset();
  std::this_thread::sleep_for(300ms);  // the loop runs on past both wake-ups
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
}

// Group commit: write batches of runs that wait while another commit is in
// flight go to the store together (Store::ApplyRunWritesGroup), and every
// run still gets its own results.
TEST_P(EngineTest, WritesThatWaitForACommitAreCommittedTogether) {
  constexpr int kRuns = 5;
  FlakyStore hooked(store_.get(), 0);
  std::atomic<bool> first{true};
  hooked.before_apply = [&] {
    // Inline store calls (SQLite's) run on the loop: nothing can wait behind
    // a held commit there, but the runs' writes staged in one turn of the
    // loop go as one group (WriteGrouper).
    if (!GetParam().threads) return;
    if (!first.exchange(false)) return;
    // Hold the first commit until every run has its lease: their first
    // batches then wait behind it.
    for (int i = 0; i < 1000 && hooked.leases.load() < kRuns; ++i) std::this_thread::sleep_for(5ms);
    std::this_thread::sleep_for(100ms);
  };
  Engine engine(loop_.executor(), &hooked, directory_.get(), &caller_, Options(EngineOptions{}));
  json plan = json::parse(R"({"name": "grouped", "steps": [
    {"id": "one", "agent": "a", "input": {"v": "${input.i}"}},
    {"id": "two", "agent": "a", "input": {"prev": "${steps.one.output.echo.v}"}}]})");
  std::vector<std::string> ids;
  std::vector<std::promise<RunOutcome>> done(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    plan["name"] = "grouped-" + std::to_string(i);
    ids.push_back(NewRunOf(plan, {{"i", i}}));
  }
  for (int i = 0; i < kRuns; ++i) {
    ExecutionRequest er = Request(ids[i]);
    engine.Submit(er, [&done, i](const RunOutcome& o) { done[i].set_value(o); });
  }
  for (int i = 0; i < kRuns; ++i) {
    auto f = done[i].get_future();
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready) << i;
    EXPECT_EQ(f.get().status, RunStatus::kCompleted) << i;
    auto steps = Steps(ids[i]);
    ASSERT_EQ(steps.size(), 2u) << i;
    EXPECT_EQ(steps[1].status, StepStatus::kCompleted) << i;
    EXPECT_EQ(steps[1].input, json({{"prev", i}})) << "each run got its own results back";
  }
  engine.Shutdown();
  auto sizes = hooked.group_sizes();
  ASSERT_FALSE(sizes.empty()) << "no batches were ever committed together";
  EXPECT_GE(*std::max_element(sizes.begin(), sizes.end()), 2u);
}

TEST_P(EngineTest, StoreOutageIsRetriedUntilTheRunCompletes) {
  FlakyStore flaky(store_.get(), 2);
  EngineOptions eo;
  eo.store_retry_delay = 10ms;
  Engine engine(loop_.executor(), &flaky, directory_.get(), &caller_, Options(eo));
  json plan = json::parse(R"({"name": "flaky-db", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  auto f = SubmitTo(engine, Request(id));
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().status, RunStatus::kCompleted);
  af::Run run = *store_->GetRun(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted);
  // The step ran after the outage: its agent was called and its output is the run's.
  auto steps = Steps(id, "s");
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].status, StepStatus::kCompleted);
  EXPECT_FALSE(run.output["s"].is_null()) << run.output.dump();
  engine.Shutdown();
}

// A run whose step failed, and whose FAILED transition then met a store
// outage, is executed again: it must end FAILED again (its failed step is
// tried again and fails), not COMPLETED without its steps.
TEST_P(EngineTest, AFailedRunsEndMetByAStoreOutageStillEndsFailed) {
  FlakyStore flaky(store_.get(), 0);
  std::atomic<int> refused{0};
  flaky.fail_apply_if = [&refused](const RunWrites& w) {
    bool ends = !w.ops.empty() && w.ops.back().kind == RunWrite::Kind::kTransition &&
                w.ops.back().transition.to == RunStatus::kFailed;
    return ends && refused++ == 0;
  };
  caller_.Set("bad", {[](const AgentCall&) { return Permanent("no"); }, 20ms});  // while slow's call is in flight
  caller_.Set("slow", {FakeCaller::Behavior{}.reply, 5000ms});
  EngineOptions eo;
  eo.store_retry_delay = 10ms;
  Engine engine(loop_.executor(), &flaky, directory_.get(), &caller_, Options(eo));
  json plan = json::parse(R"({"name": "fail-then-outage", "steps": [
      {"id": "slow", "agent": "slow", "depends_on": []}, {"id": "bad", "agent": "bad", "depends_on": []}]})");
  std::string id = NewRunOf(plan);
  auto f = SubmitTo(engine, Request(id));
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready);
  EXPECT_EQ(refused.load(), 2) << "the outage was not met, or the run did not end FAILED again";
  EXPECT_EQ(f.get().status, RunStatus::kFailed);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kFailed);
  EXPECT_EQ(caller_.Calls("bad"), 2);  // once per execution
  engine.Shutdown();
}

TEST_P(EngineTest, ConsumerRunsQueuedRequestsAcksThemAndSetsAsideMalformedOnes) {
  auto q = OpenEmbeddedQueue(QueueOptions{""});
  ASSERT_TRUE(q.ok());
  Queue* queue = q->get();
  ExecutionConsumer consumer(queue, engine_.get(), ConsumerOptions{});
  ASSERT_TRUE(consumer.Start().ok());

  ASSERT_TRUE(queue->Publish(kExecutionTopic, "bad", "{not json").ok());
  json plan = json::parse(R"({"name": "q", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  ExecutionRequest er;
  er.run_id = id;
  er.workflow_plan = plan;
  ASSERT_TRUE(queue->Publish(kExecutionTopic, id, SerializeExecutionRequest(er)).ok());

  caller_.Set("slow", {.delay = 30s});
  json slow_plan = json::parse(R"({"name": "q2", "steps": [{"id": "s", "agent": "slow"}]})");
  std::string slow_id = NewRunOf(slow_plan);
  er.run_id = slow_id;
  er.workflow_plan = slow_plan;
  ASSERT_TRUE(queue->Publish(kExecutionTopic, slow_id, SerializeExecutionRequest(er)).ok());
  for (int i = 0; i < 1000 && Steps(slow_id).empty(); ++i) std::this_thread::sleep_for(5ms);
  CancellationRequest cr{slow_id, "carol", "stop", NowMs()};
  ASSERT_TRUE(queue->Publish(kCancellationTopic, slow_id, SerializeCancellationRequest(cr)).ok());

  for (int i = 0; i < 1000; ++i) {
    auto a = store_->GetRun(id), b = store_->GetRun(slow_id);
    if (IsTerminal(a->status) && IsTerminal(b->status)) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
  EXPECT_EQ(store_->GetRun(slow_id)->status, RunStatus::kCancelled);
  EXPECT_EQ(consumer.rejected(), 1u);
  // A run's request is acked after its end is stored: wait for the acks, or
  // a loaded machine (ASan, ctest -j) stops the consumer before the last one.
  auto unacked = [&] {
    int64_t n = 0;
    for (const auto& t : consumer.Lag()) n += t.messages;
    return n;
  };
  for (int i = 0; i < 1000 && unacked() > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(unacked(), 0);
  consumer.Stop();

  // Everything was acked: a new consumer of the group receives nothing.
  auto sub = queue->Subscribe({kExecutionTopic, kCancellationTopic}, "execution-consumer-group");
  ASSERT_TRUE(sub.ok());
  auto left = (*sub)->Poll(10, 100ms);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());
}

// ---- leases: exactly one executor drives a run ----

// Another engine on the same store (another consumer process).
struct SecondEngine {
  SecondEngine(Store* store, AgentDirectory* dir, AgentCaller* caller, const std::string& owner,
               std::chrono::milliseconds ttl) {
    EngineOptions eo;
    eo.store_retry_delay = 20ms;
    eo.owner = owner;
    eo.lease_ttl = ttl;
    engine = std::make_unique<Engine>(loop.executor(), store, dir, caller, eo);
    loop.Start();
  }
  ~SecondEngine() {
    engine->Shutdown();
    loop.Stop();
  }
  std::future<RunOutcome> Submit(ExecutionRequest er) {
    return SubmitTo(*engine, std::move(er));
  }
  EventLoop loop{1};
  std::unique_ptr<Engine> engine;
};

TEST_P(EngineTest, TwoEnginesGivenTheSameRunCallEachStepOnce) {
  caller_.Set("slow", {.delay = 150ms});
  json plan = json::parse(R"({"name": "twice", "steps": [
    {"id": "one", "agent": "slow"},
    {"id": "two", "agent": "slow", "depends_on": ["one"]},
    {"id": "three", "agent": "slow", "depends_on": ["two"]}]})");
  std::string id = NewRunOf(plan);
  SecondEngine a(store_.get(), directory_.get(), &caller_, "engine-a", 300ms);
  SecondEngine b(store_.get(), directory_.get(), &caller_, "engine-b", 300ms);
  auto fa = a.Submit(Request(id));
  for (int i = 0; i < 1000 && Steps(id).empty(); ++i) std::this_thread::sleep_for(2ms);
  auto fb = b.Submit(Request(id));  // a redelivered request, handed to a second consumer
  ASSERT_EQ(fa.wait_for(20s), std::future_status::ready);
  ASSERT_EQ(fb.wait_for(20s), std::future_status::ready);
  RunOutcome oa = fa.get(), ob = fb.get();
  EXPECT_EQ(oa.kind, RunOutcome::Kind::kFinished);
  EXPECT_EQ(ob.kind, RunOutcome::Kind::kFinished) << "b waited for a's lease, then found the run finished";
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
  EXPECT_EQ(caller_.Calls("slow"), 3) << "no step was called twice";
  EXPECT_EQ(Steps(id).size(), 3u);
  EXPECT_TRUE(store_->GetRun(id)->lease_owner.empty()) << "a finished run holds no lease";
}

// A request carrying the plan starts a new run in its first write batch:
// no separate lease acquire, the lease (token 1) comes with the RUNNING
// transition and the first step's row. Without the plan (or with
// fresh_start off) the executor acquires the lease first.
TEST_P(EngineTest, ANewRunTakesItsLeaseInItsFirstCommit) {
  json plan = json::parse(R"({"name": "fresh", "steps": [{"id": "s", "agent": "a"}, {"id": "t", "agent": "a"}]})");
  for (bool fresh_start : {true, false}) {
    FlakyStore hooked(store_.get(), 0);
    std::mutex mu;
    std::vector<std::vector<RunWrite::Kind>> batches;
    hooked.after_apply = [&](const RunWrites& w) {
      std::vector<RunWrite::Kind> kinds;
      for (const RunWrite& op : w.ops) kinds.push_back(op.kind);
      std::lock_guard<std::mutex> lock(mu);
      batches.push_back(std::move(kinds));
    };
    EngineOptions eo;
    eo.fresh_start = fresh_start;
    Engine engine(loop_.executor(), &hooked, directory_.get(), &caller_, Options(eo));
    plan["name"] = fresh_start ? "fresh" : "general";
    std::string id = NewRunOf(plan, {{"x", 1}});
    auto f = SubmitTo(engine, Request(id));
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(f.get().status, RunStatus::kCompleted);
    engine.Shutdown();
    af::Run run = *store_->GetRun(id);
    EXPECT_EQ(run.status, RunStatus::kCompleted);
    ASSERT_EQ(Steps(id).size(), 2u);
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_FALSE(batches.empty());
    const bool in_first_batch = fresh_start && GetParam().plan_in_request;
    EXPECT_EQ(hooked.leases.load(), in_first_batch ? 0 : 1) << "fresh_start " << fresh_start;
    ASSERT_GE(batches[0].size(), 2u);
    EXPECT_EQ(batches[0][0], in_first_batch ? RunWrite::Kind::kStart : RunWrite::Kind::kTransition);
    EXPECT_EQ(batches[0][1], RunWrite::Kind::kInsertStep) << "the first step's row commits with the start";
    if (in_first_batch) {
      EXPECT_EQ(run.lease_token, kFirstLeaseToken);
    }
  }
}

// The last element's result of a for_each, the fan-in row's end and the
// RUNNING row of the step that waits on it commit together: the join's
// call waits for one commit after the last element answers, not two.
TEST_P(EngineTest, TheLastElementsResultCommitsWithTheFanInAndTheNextStepsRow) {
  json plan = json::parse(R"({"name": "fan", "steps": [
      {"id": "fan", "agent": "a", "for_each": "${input.xs}", "input": {"x": "${item}"}, "depends_on": []},
      {"id": "join", "agent": "a", "depends_on": ["fan"], "input": {"all": "${steps.fan.output}"}}]})");
  FlakyStore hooked(store_.get(), 0);
  std::mutex mu;
  std::vector<RunWrites> batches;
  hooked.after_apply = [&](const RunWrites& w) {
    std::lock_guard<std::mutex> lock(mu);
    batches.push_back(w);
  };
  Engine engine(loop_.executor(), &hooked, directory_.get(), &caller_, Options(EngineOptions{}));
  std::string id = NewRunOf(plan, {{"xs", {1, 2, 3, 4, 5}}});
  auto f = SubmitTo(engine, Request(id));
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().status, RunStatus::kCompleted);
  engine.Shutdown();
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 7u);  // 5 elements, the fan-in row, the join
  int64_t fan_in_id = 0;
  for (const auto& st : steps) {
    if (st.step_id == "fan" && !st.item_index) fan_in_id = st.id;
  }
  ASSERT_NE(fan_in_id, 0);
  std::lock_guard<std::mutex> lock(mu);
  const RunWrites* with_fan_in_end = nullptr;
  for (const RunWrites& w : batches) {
    for (const RunWrite& op : w.ops) {
      if (op.kind == RunWrite::Kind::kFinishStep && op.finish.id == fan_in_id) with_fan_in_end = &w;
    }
  }
  ASSERT_NE(with_fan_in_end, nullptr);
  int element_results = 0;
  bool join_row = false;
  for (const RunWrite& op : with_fan_in_end->ops) {
    if (op.kind == RunWrite::Kind::kFinishStep && op.finish.id != fan_in_id) ++element_results;
    if (op.kind == RunWrite::Kind::kInsertStep && op.insert.step_id == "join") join_row = true;
  }
  EXPECT_GE(element_results, 1) << "the last element's result is in the fan-in's batch";
  EXPECT_TRUE(join_row) << "the join's RUNNING row is in the fan-in's batch";
}

// The store refuses a start in the first batch for a run that is not new;
// the executor then starts it the general way, with what is stored.
TEST_P(EngineTest, ARequestForARunThatIsNotNewTakesTheGeneralStart) {
  caller_.Set("a", {.reply = [](const AgentCall& c) {
                      AgentReply r;
                      r.output = c.input;
                      return r;
                    }});
  json plan = json::parse(R"({"name": "not-new", "steps": [{"id": "s", "agent": "a", "input": {"x": "${input.x}"}}]})");
  auto wf = store_->CreateWorkflow(NewWorkflow{"not-new", "", plan});
  ASSERT_TRUE(wf.ok()) << wf.status().ToString();
  auto new_run = [&](const json& input) {
    NewRun nr;
    nr.workflow_id = wf->id;
    nr.workflow_version = wf->version;
    nr.input = input;
    return store_->CreateRun(nr).value().run.id;
  };
  auto request = [&](const std::string& id, const json& input) {
    ExecutionRequest er;
    er.run_id = id;
    er.workflow_plan = plan;
    er.input_data = input;
    er.timestamp = NowMs();
    return er;
  };
  auto run = [&](ExecutionRequest er) {
    const std::string id = er.run_id;
    auto f = SubmitTo(*engine_, std::move(er));
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return store_->GetRun(id).value();
  };
  // Its request's input is not the stored one (another publisher): the run
  // executes the stored input.
  std::string other = new_run({{"x", "stored"}});
  af::Run r1 = run(request(other, {{"x", "in the request"}}));
  EXPECT_EQ(r1.status, RunStatus::kCompleted);
  EXPECT_EQ(r1.output["s"], json({{"x", "stored"}}));
  // A run whose lease an executor took before (it died): resumed.
  std::string leased = new_run({{"x", 1}});
  auto held = store_->AcquireRunLease(leased, "dead-executor", 1);
  ASSERT_TRUE(held.ok());
  std::this_thread::sleep_for(10ms);
  af::Run r2 = run(request(leased, {{"x", 1}}));
  EXPECT_EQ(r2.status, RunStatus::kCompleted);
  EXPECT_GT(r2.lease_token, held->token);
  // A run cancelled while its request waited: CANCELLED, its agent never called.
  std::string cancelled = new_run({{"x", 2}});
  ASSERT_TRUE(store_->RequestCancel({cancelled, "ops", "not needed"}).ok());
  const int calls = caller_.Calls("a");
  af::Run r3 = run(request(cancelled, {{"x", 2}}));
  EXPECT_EQ(r3.status, RunStatus::kCancelled);
  EXPECT_EQ(caller_.Calls("a"), calls);
  // A finished run (a redelivered request): left as it is.
  af::Run r4 = run(request(other, {{"x", "stored"}}));
  EXPECT_EQ(r4.status, RunStatus::kCompleted);
  EXPECT_EQ(Steps(other).size(), 1u);
}

TEST_P(EngineTest, ARunLeasedByADeadExecutorIsTakenOverWhenTheLeaseLapses) {
  json plan = json::parse(R"({"name": "lapsed", "steps": [{"id": "s", "agent": "a"}]})");
  std::string id = NewRunOf(plan);
  auto held = store_->AcquireRunLease(id, "dead-executor", 300);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  af::Run run = RunToEnd(id);
  EXPECT_EQ(run.status, RunStatus::kCompleted) << run.error_message;
  EXPECT_GT(run.lease_token, held->token) << "taken with a new fencing token";
  EXPECT_EQ(caller_.Calls("a"), 1);
}

TEST_P(EngineTest, AStaleExecutorIsFencedOutAndStopsWithoutWriting) {
  caller_.Set("slow", {.delay = 800ms});
  json plan = json::parse(R"({"name": "fenced", "steps": [{"id": "s", "agent": "slow"}, {"id": "t", "agent": "a",
    "depends_on": ["s"]}]})");
  std::string id = NewRunOf(plan);
  FlakyStore cut_off(store_.get(), 0);
  cut_off.fail_renewals = true;  // its lease lapses while its agent call runs
  SecondEngine stale(&cut_off, directory_.get(), &caller_, "stale-executor", 200ms);
  auto f = stale.Submit(Request(id));
  for (int i = 0; i < 1000 && Steps(id).empty(); ++i) std::this_thread::sleep_for(2ms);
  ASSERT_EQ(Steps(id).size(), 1u);
  // Another executor takes the run once the stale one's lease has lapsed.
  Result<RunLease> taken = Status::Unavailable("not yet");
  for (int i = 0; i < 200; ++i) {
    taken = store_->AcquireRunLease(id, "new-executor", 60000);
    if (taken.ok()) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get().kind, RunOutcome::Kind::kTakenOver);
  // Its step result was refused and it wrote nothing after: the step is as
  // the new owner found it, step t never started, the run is the new owner's.
  auto steps = Steps(id);
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].status, StepStatus::kRunning);
  EXPECT_EQ(caller_.Calls("a"), 0);
  af::Run run = *store_->GetRun(id);
  EXPECT_EQ(run.status, RunStatus::kRunning);
  EXPECT_EQ(run.lease_owner, "new-executor");
  EXPECT_EQ(run.lease_token, taken->token);
}

TEST_P(EngineTest, ACancellationFromBeforeTheRunsAttemptIsIgnored) {
  caller_.Set("slow", {.delay = 300ms});
  json plan = json::parse(R"({"name": "replayed-cancel", "steps": [{"id": "s", "agent": "slow"}]})");
  std::string id = NewRunOf(plan);
  auto f = Submit(id);
  for (int i = 0; i < 1000 && Steps(id).empty(); ++i) std::this_thread::sleep_for(2ms);
  engine_->Cancel(id, "someone", "an old message", NowMs() - 3'600'000);  // replayed from an hour ago
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);

  std::string id2 = NewRunOf(json::parse(R"({"name": "fresh-cancel", "steps": [{"id": "s", "agent": "slow"}]})"));
  auto f2 = Submit(id2);
  for (int i = 0; i < 1000 && Steps(id2).empty(); ++i) std::this_thread::sleep_for(2ms);
  engine_->Cancel(id2, "someone", "now", NowMs());
  ASSERT_EQ(f2.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(store_->GetRun(id2)->status, RunStatus::kCancelled);
}

TEST_P(EngineTest, TheConsumerDeadLettersMalformedMessagesAndRequestsForUnknownRuns) {
  auto q = OpenEmbeddedQueue(QueueOptions{""});
  ASSERT_TRUE(q.ok());
  Queue* queue = q->get();
  auto dlq = queue->Subscribe({kDeadLetterTopic}, "dlq-reader");
  ASSERT_TRUE(dlq.ok());
  ExecutionConsumer consumer(queue, engine_.get(), ConsumerOptions{});
  ASSERT_TRUE(consumer.Start().ok());

  ASSERT_TRUE(queue->Publish(kExecutionTopic, "k1", "{not json").ok());
  ASSERT_TRUE(queue->Publish(kExecutionTopic, "k2", R"({"message_type": "mystery", "run_id": "x"})").ok());
  json plan = json::parse(R"({"name": "after-bad", "steps": [{"id": "s", "agent": "a"}]})");
  ExecutionRequest ghost;
  ghost.run_id = "run-never-created";
  ghost.workflow_plan = plan;
  ghost.timestamp = NowMs();
  ASSERT_TRUE(queue->Publish(kExecutionTopic, ghost.run_id, SerializeExecutionRequest(ghost)).ok());
  std::string id = NewRunOf(plan);
  ExecutionRequest er;
  er.run_id = id;
  er.workflow_plan = plan;
  ASSERT_TRUE(queue->Publish(kExecutionTopic, id, SerializeExecutionRequest(er)).ok());

  std::vector<json> letters;
  for (int i = 0; i < 200 && letters.size() < 3; ++i) {
    auto got = (*dlq)->Poll(10, 20ms);
    ASSERT_TRUE(got.ok());
    for (auto& m : *got) {
      letters.push_back(json::parse(m.payload));
      EXPECT_EQ(m.key, letters.back()["key"]);
    }
  }
  ASSERT_EQ(letters.size(), 3u);
  std::map<std::string, json> by_key;
  for (auto& l : letters) by_key[l["key"]] = l;
  EXPECT_EQ(by_key["k1"]["payload"], "{not json");
  EXPECT_EQ(by_key["k1"]["topic"], kExecutionTopic);
  EXPECT_FALSE(by_key["k1"]["reason"].get<std::string>().empty());
  EXPECT_TRUE(by_key["k1"]["failed_at"].is_string());
  EXPECT_TRUE(by_key["k1"]["offset"].is_number());
  EXPECT_NE(by_key["k2"]["reason"].get<std::string>().find("message_type"), std::string::npos) << by_key["k2"].dump();
  EXPECT_NE(by_key["run-never-created"]["reason"].get<std::string>().find("run-never-created"), std::string::npos);
  // ... and the consumer kept going.
  for (int i = 0; i < 1000 && !IsTerminal(store_->GetRun(id)->status); ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(store_->GetRun(id)->status, RunStatus::kCompleted);
  // Counted in the dead-letter publish's completion, which may run just
  // after the letter is readable: wait for it (bounded), as for the acks.
  for (int i = 0; i < 1000 && consumer.dead_lettered() < 3u; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(consumer.dead_lettered(), 3u);
  auto unacked = [&] {
    int64_t n = 0;
    for (const auto& t : consumer.Lag()) n += t.messages;
    return n;
  };
  for (int i = 0; i < 1000 && unacked() > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(unacked(), 0) << "dead letters are acked";
  consumer.Stop();
}

// A queue whose asynchronous publishes complete only when the test says so:
// as Kafka's may, in the flush when the queue closes.
class HeldPublishQueue final : public Queue {
 public:
  explicit HeldPublishQueue(Queue* inner) : inner_(inner) {}
  Status Publish(const std::string& topic, const std::string& key, const std::string& payload) override {
    return inner_->Publish(topic, key, payload);
  }
  void PublishAsync(const std::string& topic, const std::string& key, const std::string& payload,
                    PublishDone done) override {
    Status s = inner_->Publish(topic, key, payload);
    std::lock_guard lk(mu_);
    held_.emplace_back([s, done = std::move(done)] { done(s); });
  }
  Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>& topics,
                                                   const std::string& group) override {
    return inner_->Subscribe(topics, group);
  }
  Status Ping() override { return inner_->Ping(); }
  size_t Held() {
    std::lock_guard lk(mu_);
    return held_.size();
  }
  void Complete() {
    std::vector<std::function<void()>> held;
    {
      std::lock_guard lk(mu_);
      held.swap(held_);
    }
    for (auto& f : held) f();
  }

 private:
  Queue* inner_;
  std::mutex mu_;
  std::vector<std::function<void()>> held_;
};

TEST_P(EngineTest, ADeadLetterWrittenAfterTheConsumerIsGoneCompletesSafely) {
  auto q = OpenEmbeddedQueue(QueueOptions{""});
  ASSERT_TRUE(q.ok());
  HeldPublishQueue queue(q->get());
  ASSERT_TRUE(queue.Publish(kExecutionTopic, "k1", "{not json").ok());
  {
    ExecutionConsumer consumer(&queue, engine_.get(), ConsumerOptions{});
    ASSERT_TRUE(consumer.Start().ok());
    for (int i = 0; i < 1000 && queue.Held() == 0; ++i) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(queue.Held(), 1u) << "the dead letter's publish";
    EXPECT_EQ(consumer.dead_lettered(), 0u) << "counted when the write is confirmed";
    consumer.Stop();
  }
  // The consumer is destroyed; its letter's completion runs now (AddressSanitizer
  // reports a use after free if it reaches into the consumer).
  queue.Complete();
  auto dlq = queue.Subscribe({kDeadLetterTopic}, "dlq-reader");
  ASSERT_TRUE(dlq.ok());
  auto got = (*dlq)->Poll(10, 2s);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(json::parse(got->front().payload)["key"], "k1");
}

INSTANTIATE_TEST_SUITE_P(StoreCalls, EngineTest,
                         ::testing::Values(EngineParam{false, false}, EngineParam{true, false}, EngineParam{false, true},
                                           EngineParam{true, true}),
                         [](const ::testing::TestParamInfo<EngineParam>& p) {
                           return std::string(p.param.threads ? "Threads" : "Inline") +
                                  (p.param.plan_in_request ? "PlanInRequest" : "");
                         });

}  // namespace
}  // namespace af
