// Execution semantics through the REST API, against one shared
// `agentflow serve` plus `agentflow demo-agents --register`. Each test uses
// its own workflows, so the tests do not see each other's state.
#include <algorithm>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// Fast retries for test plans.
json FastRetry(int max_attempts) {
  return json{{"max_attempts", max_attempts}, {"initial_backoff_ms", 10}, {"backoff_multiplier", 2.0},
              {"max_backoff_ms", 50}};
}

class RunsE2E : public SharedStackTest {
 protected:
  // Creates a workflow named UniqueName(prefix) from `plan` (name filled in).
  json Create(const std::string& prefix, json plan) {
    plan["name"] = UniqueName(prefix);
    return CreateWorkflow(server(), plan);
  }
  std::string RunToEnd(const std::string& workflow_id, const json& input, json* run_out) {
    json run = StartRun(server(), workflow_id, input);
    std::string id = run["run_id"];
    *run_out = WaitRunTerminal(server(), id);
    return id;
  }
};

// ---- 1. sequential plan ----------------------------------------------------

json SequentialPlan() {
  return json::parse(R"({
    "steps": [
      {"id": "fetch", "agent": "echo", "input": {"text": "${input.topic}"}},
      {"id": "shout", "agent": "upper", "input": {"text": "${steps.fetch.output.echo.text}"}},
      {"id": "wrap", "agent": "echo",
       "input": {"shout": "${steps.shout.output.text}", "n": "${input.n}", "run": "${run.id}"}}
    ],
    "output": {"result": "${steps.shout.output.text}", "n": "${steps.wrap.output.echo.n}",
               "run": "${steps.wrap.output.echo.run}", "msg": "topic=${input.topic} n=${input.n}"}
  })");
}

TEST_F(RunsE2E, SequentialPlanProducesTheOutputTemplateExactly) {
  json wf = Create("seq", SequentialPlan());
  EXPECT_EQ(wf["version"], 1);
  EXPECT_TRUE(wf["warnings"].empty()) << wf.dump();  // every agent is registered

  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"topic", "hello agents"}, {"n", 3}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"result", "HELLO AGENTS"}, {"n", 3}, {"run", id}, {"msg", "topic=hello agents n=3"}}));
  EXPECT_TRUE(run["error_message"].is_null());
  EXPECT_EQ(run["attempt"], 1);

  json steps = Steps(server(), id);
  ASSERT_EQ(steps.size(), 3u) << steps.dump();
  const char* order[] = {"fetch", "shout", "wrap"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(steps[i]["step_id"], order[i]);
    EXPECT_EQ(steps[i]["status"], "COMPLETED");
    EXPECT_EQ(steps[i]["attempt"], 1);
    EXPECT_TRUE(steps[i]["item_index"].is_null());
    if (i > 0) {
      EXPECT_GE(TimeOf(steps[i], "started_at"), TimeOf(steps[i - 1], "completed_at")) << "steps overlap";
    }
  }
  EXPECT_EQ(steps[0]["input"], (json{{"text", "hello agents"}}));
  EXPECT_EQ(steps[1]["output"], (json{{"text", "HELLO AGENTS"}}));
}

// ---- 2. DAG with parallel branches ------------------------------------------

TEST_F(RunsE2E, DagBranchesRunConcurrentlyAndTheJoinWaitsForBoth) {
  json wf = Create("dag", json::parse(R"({
    "steps": [
      {"id": "start", "agent": "echo", "input": {"ms": "${input.ms}"}},
      {"id": "left", "agent": "sleep", "depends_on": ["start"], "input": {"ms": "${steps.start.output.echo.ms}"}},
      {"id": "right", "agent": "sleep", "depends_on": ["start"], "input": {"ms": "${steps.start.output.echo.ms}"}},
      {"id": "join", "agent": "echo", "depends_on": ["left", "right"],
       "input": {"l": "${steps.left.output.slept_ms}", "r": "${steps.right.output.slept_ms}"}}
    ],
    "output": "${steps.join.output.echo}"
  })"));
  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"ms", 300}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"l", 300}, {"r", 300}}));

  json steps = Steps(server(), id);
  json left = RowsOf(steps, "left"), right = RowsOf(steps, "right"), join = RowsOf(steps, "join"),
       start = RowsOf(steps, "start");
  ASSERT_EQ(left.size(), 1u);
  ASSERT_EQ(right.size(), 1u);
  ASSERT_EQ(join.size(), 1u);
  ASSERT_EQ(start.size(), 1u);
  int64_t ls = TimeOf(left[0], "started_at"), lc = TimeOf(left[0], "completed_at");
  int64_t rs = TimeOf(right[0], "started_at"), rc = TimeOf(right[0], "completed_at");
  // The branches overlap in time: each started before the other completed.
  EXPECT_LT(ls, rc) << steps.dump(1);
  EXPECT_LT(rs, lc) << steps.dump(1);
  // Both branches start after their common upstream, the join after both.
  EXPECT_GE(ls, TimeOf(start[0], "completed_at"));
  EXPECT_GE(rs, TimeOf(start[0], "completed_at"));
  EXPECT_GE(TimeOf(join[0], "started_at"), std::max(lc, rc)) << steps.dump(1);
}

// ---- 3. for_each ------------------------------------------------------------

TEST_F(RunsE2E, ForEachOverFortyItemsKeepsOrderAndRecordsEveryItem) {
  constexpr int kItems = 40;
  constexpr int kMaxParallel = 5;
  json wf = Create("fanout", json{{"steps", json::array({json{{"id", "fan"},
                                                               {"agent", "upper"},
                                                               {"for_each", "${input.words}"},
                                                               {"max_parallel", kMaxParallel},
                                                               {"input", {{"text", "${index}:${item}"}}}}})},
                                  {"output", {{"all", "${steps.fan.output}"}}}});
  json words = json::array();
  json expected = json::array();
  for (int i = 0; i < kItems; ++i) {
    words.push_back("word" + std::to_string(i));
    expected.push_back(json{{"text", std::to_string(i) + ":WORD" + std::to_string(i)}});
  }
  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"words", words}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"]["all"], expected);

  json rows = RowsOf(Steps(server(), id), "fan");
  ASSERT_EQ(rows.size(), static_cast<size_t>(kItems + 1)) << rows.dump(1);
  int aggregates = 0;
  std::set<int> items;
  std::vector<std::pair<int64_t, int>> events;  // (time, +1 start / -1 end)
  for (const auto& r : rows) {
    EXPECT_EQ(r["status"], "COMPLETED") << r.dump();
    EXPECT_EQ(r["attempt"], 1) << r.dump();
    if (r["item_index"].is_null()) {
      ++aggregates;
      EXPECT_EQ(r["output"], expected);
      continue;
    }
    int i = r["item_index"];
    items.insert(i);
    EXPECT_EQ(r["input"], (json{{"text", std::to_string(i) + ":word" + std::to_string(i)}}));
    events.push_back({TimeOf(r, "started_at"), +1});
    events.push_back({TimeOf(r, "completed_at"), -1});
  }
  EXPECT_EQ(aggregates, 1);
  EXPECT_EQ(items.size(), static_cast<size_t>(kItems));
  EXPECT_EQ(*items.begin(), 0);
  EXPECT_EQ(*items.rbegin(), kItems - 1);
  // max_parallel holds: never more than kMaxParallel item calls recorded as
  // in flight at once (ends sort before starts at the same millisecond).
  std::sort(events.begin(), events.end());
  int in_flight = 0, peak = 0;
  for (const auto& [t, delta] : events) {
    in_flight += delta;
    peak = std::max(peak, in_flight);
  }
  EXPECT_LE(peak, kMaxParallel);
}

// ---- 4. when / skip ---------------------------------------------------------

TEST_F(RunsE2E, WhenFalseSkipsTheStepAndDownstreamSeesNull) {
  json wf = Create("when", json::parse(R"({
    "steps": [
      {"id": "check", "agent": "echo", "input": {"flag": "${input.flag}", "n": "${input.n}"}},
      {"id": "maybe", "agent": "echo", "depends_on": ["check"],
       "when": "${steps.check.output.echo.flag} == true", "input": {"x": 1}},
      {"id": "big", "agent": "upper", "depends_on": ["check"],
       "when": "${steps.check.output.echo.n} > 10 && ${input.flag}", "input": {"text": "big"}},
      {"id": "after", "agent": "echo", "depends_on": ["maybe", "big"],
       "input": {"maybe": "${steps.maybe.output}", "big": "${steps.big.output}"}}
    ],
    "output": "${steps.after.output.echo}"
  })"));

  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"flag", true}, {"n", 3}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"maybe", {{"echo", {{"x", 1}}}}}, {"big", nullptr}}));
  json steps = Steps(server(), id);
  json big = RowsOf(steps, "big");
  ASSERT_EQ(big.size(), 1u) << steps.dump(1);
  EXPECT_EQ(big[0]["status"], "SKIPPED");
  EXPECT_TRUE(big[0]["output"].is_null());
  ASSERT_EQ(RowsOf(steps, "maybe").size(), 1u);
  EXPECT_EQ(RowsOf(steps, "maybe")[0]["status"], "COMPLETED");
  EXPECT_EQ(RowsOf(steps, "after")[0]["status"], "COMPLETED");

  // Both conditions false this time; then both true.
  std::string id2 = RunToEnd(wf["workflow_id"], {{"flag", false}, {"n", 30}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"maybe", nullptr}, {"big", nullptr}}));
  EXPECT_EQ(RowsOf(Steps(server(), id2), "maybe")[0]["status"], "SKIPPED");
  EXPECT_EQ(RowsOf(Steps(server(), id2), "big")[0]["status"], "SKIPPED");

  RunToEnd(wf["workflow_id"], {{"flag", true}, {"n", 30}}, &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"maybe", {{"echo", {{"x", 1}}}}}, {"big", {{"text", "BIG"}}}}));
}

// ---- 5. retries recover a flaky agent ----------------------------------------

TEST_F(RunsE2E, FlakyAgentIsRecoveredByRetries) {
  json wf = Create("flaky", json{{"steps", json::array({json{{"id", "shaky"},
                                                              {"agent", "flaky"},
                                                              {"input", {{"failures", 2}, {"tag", "x"}}},
                                                              {"retry", FastRetry(4)}}})}});
  json run;
  std::string id = RunToEnd(wf["workflow_id"], json::object(), &run);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  // Without an output template the output is every step's output by id.
  EXPECT_EQ(run["output"], (json{{"shaky", {{"attempts", 3}, {"input", {{"failures", 2}, {"tag", "x"}}}}}}));

  json rows = RowsOf(Steps(server(), id), "shaky");
  ASSERT_EQ(rows.size(), 3u) << rows.dump(1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rows[i]["attempt"], i + 1) << rows.dump(1);
    EXPECT_EQ(rows[i]["status"], i < 2 ? "FAILED" : "COMPLETED") << rows.dump(1);
  }
  EXPECT_THAT(rows[0]["error_message"].get<std::string>(), HasSubstr("HTTP 503"));
  EXPECT_TRUE(rows[2]["error_message"].is_null());
  // Each retry started after the previous attempt ended.
  EXPECT_GE(TimeOf(rows[1], "started_at"), TimeOf(rows[0], "completed_at"));
  EXPECT_GE(TimeOf(rows[2], "started_at"), TimeOf(rows[1], "completed_at"));
}

// ---- 6. failing agent --------------------------------------------------------

TEST_F(RunsE2E, FailingAgentFailsTheRunNamingStepAgentAndCause) {
  json wf = Create("failing", json{{"steps", json::array({json{{"id", "prepare"}, {"agent", "echo"}},
                                                          json{{"id", "boom"},
                                                               {"agent", "fail"},
                                                               {"input", {{"permanent", "${input.permanent}"}}},
                                                               {"retry", FastRetry(3)}},
                                                          json{{"id", "never"}, {"agent", "echo"}}})}});
  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"permanent", false}}, &run);
  ASSERT_EQ(run["status"], "FAILED") << run.dump();
  std::string err = run["error_message"];
  EXPECT_THAT(err, HasSubstr("boom"));
  EXPECT_THAT(err, HasSubstr("'fail'"));
  EXPECT_THAT(err, HasSubstr("HTTP 500"));
  EXPECT_THAT(err, HasSubstr("failed on purpose"));  // the agent's own message
  EXPECT_TRUE(run["output"].is_null()) << run.dump();
  json steps = Steps(server(), id);
  json boom = RowsOf(steps, "boom");
  ASSERT_EQ(boom.size(), 3u) << steps.dump(1);  // attempts == max_attempts
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(boom[i]["attempt"], i + 1);
    EXPECT_EQ(boom[i]["status"], "FAILED");
    EXPECT_THAT(boom[i]["error_message"].get<std::string>(), HasSubstr("HTTP 500"));
  }
  EXPECT_TRUE(RowsOf(steps, "never").empty()) << "a step after the failure ran: " << steps.dump(1);

  // A permanent error (HTTP 400) is not retried.
  std::string id2 = RunToEnd(wf["workflow_id"], {{"permanent", true}}, &run);
  ASSERT_EQ(run["status"], "FAILED") << run.dump();
  err = run["error_message"];
  EXPECT_THAT(err, HasSubstr("boom"));
  EXPECT_THAT(err, HasSubstr("'fail'"));
  EXPECT_THAT(err, HasSubstr("HTTP 400"));
  boom = RowsOf(Steps(server(), id2), "boom");
  ASSERT_EQ(boom.size(), 1u) << boom.dump(1);
  EXPECT_EQ(boom[0]["status"], "FAILED");
}

// ---- 7. timeout ----------------------------------------------------------------

TEST_F(RunsE2E, AttemptLongerThanTimeoutFailsWithATimeoutMessage) {
  json wf = Create("timeout", json{{"steps", json::array({json{{"id", "slow"},
                                                              {"agent", "sleep"},
                                                              {"input", {{"ms", 5000}}},
                                                              {"timeout_ms", 200},
                                                              {"retry", FastRetry(2)}}})}});
  json run;
  std::string id = RunToEnd(wf["workflow_id"], json::object(), &run);
  ASSERT_EQ(run["status"], "FAILED") << run.dump();
  EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr("slow"));
  EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr("timed out"));
  json rows = RowsOf(Steps(server(), id), "slow");
  ASSERT_EQ(rows.size(), 2u) << rows.dump(1);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(rows[i]["attempt"], i + 1);
    EXPECT_EQ(rows[i]["status"], "FAILED");
    EXPECT_THAT(rows[i]["error_message"].get<std::string>(), HasSubstr("timed out after 200 ms"));
  }
}

// ---- 8. cancellation ---------------------------------------------------------------

json LongSleepPlan() {
  return json::parse(R"({
    "steps": [
      {"id": "first", "agent": "echo", "input": {"a": 1}},
      {"id": "nap", "agent": "sleep", "input": {"ms": 30000}},
      {"id": "after", "agent": "echo", "input": {"b": 2}}
    ]
  })");
}

bool IsRunningRowOf(const json& row, const std::string& step) {
  return row["step_id"] == step && row["status"] == "RUNNING";
}

TEST_F(RunsE2E, CancellingARunInALongStepEndsItPromptly) {
  json wf = Create("cancel", LongSleepPlan());
  json started = StartRun(server(), wf["workflow_id"], json::object());
  std::string id = started["run_id"];
  WaitForStepRow(server(), id, [](const json& r) { return IsRunningRowOf(r, "nap"); });

  HttpResponse c = server().Post("/runs/" + id + "/cancel", {{"reason", "test is over"}, {"cancelled_by", "e2e"}});
  ASSERT_EQ(c.status, 202) << c.Describe();
  EXPECT_EQ(c.body_json["cancelled_by"], "e2e");
  EXPECT_EQ(c.body_json["cancel_reason"], "test is over");

  // Outcome within one second: a 1 s long-poll already sees CANCELLED.
  HttpResponse r = server().Get("/runs/" + id + "?wait=1");
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.body_json["status"], "CANCELLED") << r.body;
  json run = WaitRunTerminal(server(), id);
  ASSERT_EQ(run["status"], "CANCELLED") << run.dump();
  EXPECT_EQ(run["cancelled_by"], "e2e");
  EXPECT_EQ(run["cancel_reason"], "test is over");
  EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr("e2e"));
  EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr("test is over"));
  EXPECT_FALSE(run["completed_at"].is_null());

  json steps = Steps(server(), id);
  json nap = RowsOf(steps, "nap");
  ASSERT_EQ(nap.size(), 1u) << steps.dump(1);
  EXPECT_EQ(nap[0]["status"], "CANCELLED");
  EXPECT_FALSE(nap[0]["completed_at"].is_null());
  EXPECT_EQ(RowsOf(steps, "first")[0]["status"], "COMPLETED");
  EXPECT_TRUE(RowsOf(steps, "after").empty()) << steps.dump(1);

  // Cancelling again: the run is finished.
  HttpResponse again = server().Post("/runs/" + id + "/cancel", {{"reason", "twice"}});
  EXPECT_EQ(again.status, 409) << again.Describe();
  EXPECT_EQ(again.body_json["error"]["code"], "FAILED_PRECONDITION") << again.body;
  // ... and the recorded canceller is unchanged.
  EXPECT_EQ(WaitRunTerminal(server(), id)["cancelled_by"], "e2e");
}

// ---- 9. retry of a failed run ----------------------------------------------------------

TEST_F(RunsE2E, RetryContinuesAttemptsAndDoesNotRerunCompletedSteps) {
  // flaky fails 3 times per key; 2 attempts per run attempt: the first run
  // fails (attempts 1, 2), the retry fails once more (3) and succeeds (4).
  json wf = Create("retry", json{{"steps", json::array({json{{"id", "up"}, {"agent", "echo"}, {"input", {{"v", 1}}}},
                                                        json{{"id", "shaky"},
                                                             {"agent", "flaky"},
                                                             {"input", {{"failures", 3}}},
                                                             {"retry", FastRetry(2)}}})}});
  json run;
  std::string id = RunToEnd(wf["workflow_id"], json::object(), &run);
  ASSERT_EQ(run["status"], "FAILED") << run.dump();
  EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr("shaky"));

  HttpResponse r = server().Post("/runs/" + id + "/retry", json::object());
  ASSERT_EQ(r.status, 202) << r.Describe();
  EXPECT_EQ(r.body_json["attempt"], 2);
  EXPECT_TRUE(r.body_json["status"] == "PENDING" || r.body_json["status"] == "RUNNING") << r.body;
  EXPECT_TRUE(r.body_json["error_message"].is_null()) << r.body;

  run = WaitRunTerminal(server(), id);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["attempt"], 2);
  EXPECT_EQ(run["output"]["shaky"]["attempts"], 4);
  EXPECT_TRUE(run["error_message"].is_null());

  json steps = Steps(server(), id);
  json up = RowsOf(steps, "up");
  ASSERT_EQ(up.size(), 1u) << "the COMPLETED upstream step ran again: " << steps.dump(1);
  EXPECT_EQ(up[0]["status"], "COMPLETED");
  json shaky = RowsOf(steps, "shaky");
  ASSERT_EQ(shaky.size(), 4u) << steps.dump(1);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(shaky[i]["attempt"], i + 1) << steps.dump(1);
    EXPECT_EQ(shaky[i]["status"], i < 3 ? "FAILED" : "COMPLETED") << steps.dump(1);
  }

  // A COMPLETED run cannot be retried.
  HttpResponse again = server().Post("/runs/" + id + "/retry", json::object());
  EXPECT_EQ(again.status, 409) << again.Describe();
  EXPECT_EQ(again.body_json["error"]["code"], "FAILED_PRECONDITION") << again.body;
}

TEST_F(RunsE2E, RetryWithNewInputRoutesAroundTheFailingStep) {
  json wf = Create("reroute", json::parse(R"({
    "steps": [
      {"id": "up", "agent": "echo", "input": {"mode": "${input.mode}"}},
      {"id": "risky", "agent": "fail", "depends_on": ["up"], "when": "${input.mode} == 'fail'",
       "retry": {"max_attempts": 1}},
      {"id": "done", "agent": "echo", "depends_on": ["risky"], "input": {"risky": "${steps.risky.output}"}}
    ],
    "output": {"mode": "${input.mode}", "risky": "${steps.done.output.echo.risky}"}
  })"));
  json run;
  std::string id = RunToEnd(wf["workflow_id"], {{"mode", "fail"}}, &run);
  ASSERT_EQ(run["status"], "FAILED") << run.dump();

  HttpResponse r = server().Post("/runs/" + id + "/retry", {{"input", {{"mode", "ok"}}}});
  ASSERT_EQ(r.status, 202) << r.Describe();
  EXPECT_EQ(r.body_json["input"], (json{{"mode", "ok"}}));
  run = WaitRunTerminal(server(), id);
  ASSERT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"mode", "ok"}, {"risky", nullptr}}));

  json steps = Steps(server(), id);
  EXPECT_EQ(RowsOf(steps, "up").size(), 1u) << steps.dump(1);
  json risky = RowsOf(steps, "risky");
  ASSERT_EQ(risky.size(), 2u) << steps.dump(1);
  EXPECT_EQ(risky[0]["status"], "FAILED");
  EXPECT_EQ(risky[1]["status"], "SKIPPED");
  EXPECT_EQ(risky[1]["attempt"], 2);
}

// ---- 12. idempotent trigger ---------------------------------------------------------------

TEST_F(RunsE2E, SameIdempotencyKeyReturnsTheSameRun) {
  json wf = Create("idem", SequentialPlan());
  std::string wf_id = wf["workflow_id"];
  std::string key = UniqueName("key");
  json a = StartRun(server(), wf_id, {{"topic", "once"}, {"n", 1}}, key);
  json b = StartRun(server(), wf_id, {{"topic", "once"}, {"n", 1}}, key);
  EXPECT_EQ(a["run_id"], b["run_id"]);
  EXPECT_EQ(b["idempotency_key"], key);
  json run = WaitRunTerminal(server(), a["run_id"]);
  EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
  // Once the run has finished, the same key still answers with it.
  json c = StartRun(server(), wf_id, {{"topic", "once"}, {"n", 1}}, key);
  EXPECT_EQ(c["run_id"], a["run_id"]);
  EXPECT_EQ(c["status"], "COMPLETED");

  HttpResponse list = server().Get("/runs?workflow_id=" + wf_id);
  ASSERT_EQ(list.status, 200) << list.Describe();
  ASSERT_EQ(list.body_json["items"].size(), 1u) << list.body;
  EXPECT_EQ(list.body_json["items"][0]["run_id"], a["run_id"]);
  // The steps ran once.
  EXPECT_EQ(Steps(server(), a["run_id"]).size(), 3u);

  // Another key is another run.
  json d = StartRun(server(), wf_id, {{"topic", "twice"}, {"n", 2}}, key + "-other");
  EXPECT_NE(d["run_id"], a["run_id"]);
  WaitRunTerminal(server(), d["run_id"]);
  list = server().Get("/runs?workflow_id=" + wf_id);
  EXPECT_EQ(list.body_json["items"].size(), 2u) << list.body;
}

// ---- 14. long-poll ------------------------------------------------------------------------

TEST_F(RunsE2E, LongPollReturnsTheFinishedRunOrTheCurrentState) {
  json wf = Create("poll", json{{"steps", json::array({json{{"id", "nap"},
                                                           {"agent", "sleep"},
                                                           {"input", {{"ms", "${input.ms}"}}}}})}});
  std::string wf_id = wf["workflow_id"];

  json started = StartRun(server(), wf_id, {{"ms", 500}});
  EXPECT_TRUE(started["status"] == "PENDING" || started["status"] == "RUNNING") << started.dump();
  HttpResponse got = server().Get("/runs/" + started["run_id"].get<std::string>() + "?wait=5");
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body_json["status"], "COMPLETED") << got.body;
  EXPECT_EQ(got.body_json["output"], (json{{"nap", {{"slept_ms", 500}}}}));

  HttpResponse trig = server().Post("/workflows/" + wf_id + "/runs?wait=5", {{"input", {{"ms", 500}}}});
  ASSERT_EQ(trig.status, 200) << trig.Describe();
  EXPECT_EQ(trig.body_json["status"], "COMPLETED") << trig.body;
  EXPECT_EQ(trig.body_json["output"], (json{{"nap", {{"slept_ms", 500}}}}));

  // A long run: a short wait answers with the current, unfinished state.
  HttpResponse slow = server().Post("/workflows/" + wf_id + "/runs?wait=0.3", {{"input", {{"ms", 30000}}}});
  ASSERT_TRUE(slow.status == 202 || slow.status == 200) << slow.Describe();
  EXPECT_TRUE(slow.body_json["status"] == "PENDING" || slow.body_json["status"] == "RUNNING") << slow.body;
  std::string slow_id = slow.body_json["run_id"];
  HttpResponse peek = server().Get("/runs/" + slow_id + "?wait=0.3");
  ASSERT_EQ(peek.status, 200) << peek.Describe();
  EXPECT_TRUE(peek.body_json["status"] == "PENDING" || peek.body_json["status"] == "RUNNING") << peek.body;
  EXPECT_TRUE(peek.body_json["completed_at"].is_null());
  // Clean up: do not leave a 30 s run behind.
  HttpResponse c = server().Post("/runs/" + slow_id + "/cancel", json::object());
  EXPECT_EQ(c.status, 202) << c.Describe();
  EXPECT_EQ(WaitRunTerminal(server(), slow_id)["status"], "CANCELLED");
}

// ---- 15. listing, paging, versions, delete -------------------------------------------------

TEST_F(RunsE2E, RunsListFiltersAndPagesNewestFirstWithoutDuplicates) {
  json wf = Create("list", json::parse(R"({
    "steps": [
      {"id": "ok", "agent": "echo", "when": "${input.mode} == 'ok'", "input": {"i": "${input.i}"}},
      {"id": "bad", "agent": "fail", "when": "${input.mode} == 'bad'", "retry": {"max_attempts": 1}}
    ]
  })"));
  std::string wf_id = wf["workflow_id"];
  std::vector<std::string> created;  // in creation order
  std::set<std::string> failed;
  for (int i = 0; i < 7; ++i) {
    std::string mode = (i == 2 || i == 5) ? "bad" : "ok";
    json run;
    std::string id = RunToEnd(wf_id, {{"mode", mode}, {"i", i}}, &run);
    ASSERT_EQ(run["status"], mode == "ok" ? "COMPLETED" : "FAILED") << run.dump();
    created.push_back(id);
    if (mode == "bad") failed.insert(id);
  }

  // Page through 3 at a time; a run created meanwhile (newer than every
  // page) must not make pages repeat or skip runs.
  std::vector<json> listed;
  std::string token;
  int pages = 0;
  std::string extra_id;
  while (true) {
    std::string path = "/runs?workflow_id=" + wf_id + "&limit=3" + (token.empty() ? "" : "&page_token=" + token);
    HttpResponse r = server().Get(path);
    ASSERT_EQ(r.status, 200) << r.Describe();
    ++pages;
    ASSERT_LE(r.body_json["items"].size(), 3u);
    for (const auto& item : r.body_json["items"]) listed.push_back(item);
    if (pages == 1) extra_id = StartRun(server(), wf_id, {{"mode", "ok"}, {"i", 99}})["run_id"];
    if (r.body_json["next_page_token"].is_null()) break;
    token = r.body_json["next_page_token"];
    ASSERT_LT(pages, 10) << "paging does not end";
  }
  EXPECT_EQ(pages, 3);
  std::vector<std::string> ids;
  std::set<std::string> unique;
  for (const auto& item : listed) {
    ids.push_back(item["run_id"]);
    unique.insert(item["run_id"].get<std::string>());
    EXPECT_EQ(item["workflow_id"], wf_id);
  }
  EXPECT_EQ(unique.size(), ids.size()) << "duplicates across pages";
  EXPECT_EQ(unique, std::set<std::string>(created.begin(), created.end()));
  for (size_t i = 1; i < listed.size(); ++i) {
    EXPECT_GE(TimeOf(listed[i - 1], "created_at"), TimeOf(listed[i], "created_at")) << "not newest first";
  }
  std::vector<std::string> newest_first(created.rbegin(), created.rend());
  bool distinct_times = true;
  for (size_t i = 1; i < listed.size(); ++i) {
    distinct_times = distinct_times && TimeOf(listed[i - 1], "created_at") != TimeOf(listed[i], "created_at");
  }
  if (distinct_times) {
    EXPECT_EQ(ids, newest_first);
  }
  WaitRunTerminal(server(), extra_id);

  // Filters: status, and the workflow by name.
  HttpResponse f = server().Get("/runs?workflow_id=" + wf_id + "&status=FAILED");
  ASSERT_EQ(f.status, 200) << f.Describe();
  std::set<std::string> got;
  for (const auto& item : f.body_json["items"]) {
    EXPECT_EQ(item["status"], "FAILED");
    got.insert(item["run_id"].get<std::string>());
  }
  EXPECT_EQ(got, failed);
  HttpResponse c = server().Get("/runs?workflow_id=" + wf["name"].get<std::string>() + "&status=COMPLETED");
  ASSERT_EQ(c.status, 200) << c.Describe();
  EXPECT_EQ(c.body_json["items"].size(), 6u) << c.body;  // 5 + the extra run
  for (const auto& item : c.body_json["items"]) EXPECT_EQ(item["status"], "COMPLETED");
}

TEST_F(RunsE2E, WorkflowUpdateCreatesVersionTwoAndRunsKeepTheirVersion) {
  json plan_v1 = json{{"steps", json::array({json{{"id", "a"}, {"agent", "echo"}, {"input", {{"v", 1}}}}})},
                      {"output", {{"version", "${steps.a.output.echo.v}"}}}};
  json wf = Create("versions", plan_v1);
  std::string wf_id = wf["workflow_id"];
  json run1;
  std::string id1 = RunToEnd(wf_id, json::object(), &run1);
  EXPECT_EQ(run1["workflow_version"], 1);
  EXPECT_EQ(run1["output"], (json{{"version", 1}}));

  json plan_v2 = plan_v1;
  plan_v2["name"] = wf["name"];
  plan_v2["description"] = "second";
  plan_v2["steps"][0]["input"]["v"] = 2;
  HttpResponse put = server().Put("/workflows/" + wf_id, plan_v2);
  ASSERT_EQ(put.status, 200) << put.Describe();
  EXPECT_EQ(put.body_json["version"], 2);
  EXPECT_EQ(put.body_json["latest_version"], 2);
  EXPECT_EQ(put.body_json["workflow_id"], wf_id);

  json run2;
  std::string id2 = RunToEnd(wf_id, json::object(), &run2);
  EXPECT_EQ(run2["workflow_version"], 2);
  EXPECT_EQ(run2["output"], (json{{"version", 2}}));
  // The first run keeps its version.
  HttpResponse old = server().Get("/runs/" + id1);
  EXPECT_EQ(old.body_json["workflow_version"], 1);
  EXPECT_EQ(old.body_json["output"], (json{{"version", 1}}));

  HttpResponse v1 = server().Get("/workflows/" + wf_id + "?version=1");
  ASSERT_EQ(v1.status, 200) << v1.Describe();
  EXPECT_EQ(v1.body_json["version"], 1);
  EXPECT_EQ(v1.body_json["plan"]["steps"][0]["input"]["v"], 1);
  HttpResponse latest = server().Get("/workflows/" + wf_id);
  EXPECT_EQ(latest.body_json["version"], 2);
  EXPECT_EQ(latest.body_json["description"], "second");
  HttpResponse versions = server().Get("/workflows/" + wf_id + "/versions");
  ASSERT_EQ(versions.status, 200) << versions.Describe();
  ASSERT_EQ(versions.body_json["items"].size(), 2u);
  EXPECT_EQ(versions.body_json["items"][0]["version"], 2);  // newest first
  EXPECT_EQ(versions.body_json["items"][1]["version"], 1);

  // Deleting hides the workflow but keeps its runs readable.
  HttpResponse del = server().Delete("/workflows/" + wf_id);
  EXPECT_EQ(del.status, 204) << del.Describe();
  EXPECT_TRUE(del.body.empty()) << del.body;
  HttpResponse gone = server().Get("/workflows/" + wf_id);
  EXPECT_EQ(gone.status, 404) << gone.Describe();
  EXPECT_EQ(gone.body_json["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(server().Get("/workflows/" + wf["name"].get<std::string>()).status, 404);
  EXPECT_EQ(server().Delete("/workflows/" + wf_id).status, 404);
  HttpResponse still = server().Get("/runs/" + id2);
  EXPECT_EQ(still.status, 200) << still.Describe();
  EXPECT_EQ(server().Post("/workflows/" + wf_id + "/runs", json::object()).status, 404);
  // The name is free again.
  json again = plan_v1;
  again["name"] = wf["name"];
  EXPECT_EQ(server().Post("/workflows", again).status, 201);
}

}  // namespace
}  // namespace af::e2e
