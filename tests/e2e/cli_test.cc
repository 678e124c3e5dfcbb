// The agentflow CLI against a running server (the shared stack), and the
// standalone `agentflow executor`.
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class CliE2E : public SharedStackTest {
 protected:
  // `agentflow --server URL args...`
  CliResult Cli(std::vector<std::string> args, const EnvOverrides& env = {}) {
    args.insert(args.begin(), {"--server", server().url()});
    return RunCli(args, dir_, env);
  }
  // Same with --json; the stdout must parse as one JSON document.
  json CliJson(std::vector<std::string> args) {
    args.insert(args.begin(), "--json");
    CliResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << r.Describe();
    return j;
  }
  std::string PlanFile(const json& plan) { return dir_.Write(UniqueName("plan") + ".json", plan.dump(2)); }

  TempDir dir_;
};

json SummarizePlan(const std::string& name) {
  return json{{"name", name},
              {"steps", json::array({json{{"id", "fetch"}, {"agent", "echo"}, {"input", {{"text", "${input.topic}"}}}},
                                     json{{"id", "shout"},
                                          {"agent", "upper"},
                                          {"input", {{"text", "${steps.fetch.output.echo.text}"}}}}})},
              {"output", {{"result", "${steps.shout.output.text}"}}}};
}

json FailingPlan(const std::string& name) {
  return json{{"name", name},
              {"steps", json::array({json{{"id", "boom"}, {"agent", "fail"}, {"retry", {{"max_attempts", 1}}}}})}};
}

// Test 1 via the CLI: run start --watch.
TEST_F(CliE2E, RunStartWatchPrintsTheOutputAndExitsZero) {
  std::string name = UniqueName("cli-seq");
  CreateWorkflow(server(), SummarizePlan(name));
  CliResult r = Cli({"run", "start", name, "--input", R"({"topic": "hello cli"})", "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("COMPLETED"));
  EXPECT_THAT(r.out, HasSubstr("fetch"));
  EXPECT_THAT(r.out, HasSubstr("shout"));
  EXPECT_THAT(r.out, HasSubstr("output:"));
  EXPECT_THAT(r.out, HasSubstr("\"result\": \"HELLO CLI\""));

  // --json --watch: one JSON event per line, the last one the finished run.
  std::string input_file = dir_.Write("input.json", R"({"topic": "from a file"})");
  r = Cli({"--json", "run", "start", name, "--input", "@" + input_file, "--watch"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  std::istringstream lines(r.out);
  std::string line;
  json last;
  int steps = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    json event = json::parse(line, nullptr, false);
    ASSERT_FALSE(event.is_discarded()) << "not a JSON line: " << line;
    if (event["event"] == "step") ++steps;
    last = event;
  }
  EXPECT_GE(steps, 2);
  ASSERT_EQ(last["event"], "run") << r.out;
  EXPECT_EQ(last["run"]["status"], "COMPLETED");
  EXPECT_EQ(last["run"]["output"], (json{{"result", "FROM A FILE"}}));
}

TEST_F(CliE2E, WorkflowAndRunCommands) {
  std::string name = UniqueName("cli-wf");
  std::string file = PlanFile(SummarizePlan(name));
  CliResult created = Cli({"workflow", "create", "-f", file});
  ASSERT_EQ(created.exit_code, 0) << created.Describe();
  EXPECT_THAT(created.out, HasSubstr("created workflow"));
  EXPECT_THAT(created.out, HasSubstr(name));
  EXPECT_THAT(created.out, HasSubstr("version 1"));

  // The same file again: a conflict, exit code 1, the server's message.
  CliResult dup = Cli({"workflow", "create", "-f", file});
  EXPECT_EQ(dup.exit_code, 1) << dup.Describe();
  EXPECT_THAT(dup.err, HasSubstr("error:"));

  CliResult list = Cli({"workflow", "list", "--limit", "1000"});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  EXPECT_THAT(list.out, HasSubstr("WORKFLOW_ID"));
  EXPECT_THAT(list.out, HasSubstr(name));
  json wl = CliJson({"workflow", "list", "--limit", "1000"});
  bool found = false;
  for (const auto& w : wl["items"]) found = found || w["name"] == name;
  EXPECT_TRUE(found) << wl.dump();

  json wf = CliJson({"workflow", "get", name});
  EXPECT_EQ(wf["name"], name);
  EXPECT_EQ(wf["plan"]["steps"].size(), 2u);
  CliResult get_text = Cli({"workflow", "get", name});
  EXPECT_EQ(get_text.exit_code, 0);
  EXPECT_THAT(get_text.out, HasSubstr(wf["workflow_id"].get<std::string>()));

  json started = CliJson({"run", "start", name, "--input", R"({"topic": "json run"})"});
  std::string run_id = started["run_id"];
  ASSERT_FALSE(run_id.empty());
  json run = CliJson({"run", "get", run_id, "--wait", "10"});
  EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"], (json{{"result", "JSON RUN"}}));
  CliResult get_text_run = Cli({"run", "get", run_id});
  EXPECT_EQ(get_text_run.exit_code, 0) << get_text_run.Describe();
  EXPECT_THAT(get_text_run.out, HasSubstr("COMPLETED"));
  EXPECT_THAT(get_text_run.out, HasSubstr("JSON RUN"));

  CliResult runs = Cli({"run", "list", "--workflow", name});
  ASSERT_EQ(runs.exit_code, 0) << runs.Describe();
  EXPECT_THAT(runs.out, HasSubstr("RUN_ID"));
  EXPECT_THAT(runs.out, HasSubstr(run_id));
  json rl = CliJson({"run", "list", "--workflow", name, "--status", "COMPLETED"});
  ASSERT_EQ(rl["items"].size(), 1u) << rl.dump();
  EXPECT_EQ(rl["items"][0]["run_id"], run_id);

  CliResult steps = Cli({"run", "steps", run_id});
  ASSERT_EQ(steps.exit_code, 0) << steps.Describe();
  EXPECT_THAT(steps.out, HasSubstr("STEP"));
  EXPECT_THAT(steps.out, HasSubstr("fetch"));
  EXPECT_THAT(steps.out, HasSubstr("shout"));
  EXPECT_THAT(steps.out, HasSubstr("COMPLETED"));
  json sj = CliJson({"run", "steps", run_id});
  EXPECT_EQ(sj["run_id"], run_id);
  EXPECT_EQ(sj["items"].size(), 2u);

  // Idempotency through the CLI.
  std::string key = UniqueName("cli-key");
  json a = CliJson({"run", "start", name, "--idempotency-key", key});
  json b = CliJson({"run", "start", name, "--idempotency-key", key});
  EXPECT_EQ(a["run_id"], b["run_id"]);

  // AGENTFLOW_SERVER stands in for --server.
  CliResult env = RunCli({"run", "get", run_id}, dir_, {{"AGENTFLOW_SERVER", server().url()}});
  EXPECT_EQ(env.exit_code, 0) << env.Describe();
  EXPECT_THAT(env.out, HasSubstr(run_id));

  // Not found, and an invalid plan file, are errors with exit code 1.
  CliResult missing = Cli({"run", "get", "run-does-not-exist"});
  EXPECT_EQ(missing.exit_code, 1) << missing.Describe();
  EXPECT_THAT(missing.err, HasSubstr("error:"));
  json bad = json{{"name", UniqueName("cli-bad")},
                  {"steps", json::array({json{{"id", "a"}, {"agent", "echo"}, {"depends_on", {"nope"}}}})}};
  CliResult invalid = Cli({"workflow", "create", "-f", PlanFile(bad)});
  EXPECT_EQ(invalid.exit_code, 1) << invalid.Describe();
  EXPECT_THAT(invalid.err, HasSubstr("nope"));
  CliResult bad_input = Cli({"run", "start", name, "--input", "{not json"});
  EXPECT_EQ(bad_input.exit_code, 1) << bad_input.Describe();
}

TEST_F(CliE2E, AgentRegisterAndList) {
  std::string agent = UniqueName("cli-agent");
  CliResult reg = Cli({"agent", "register", "--name", agent, "--url", "http://127.0.0.1:9/agents/x", "--timeout-ms",
                       "1234"});
  ASSERT_EQ(reg.exit_code, 0) << reg.Describe();
  EXPECT_THAT(reg.out, HasSubstr(agent));
  CliResult list = Cli({"agent", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.Describe();
  EXPECT_THAT(list.out, HasSubstr("NAME"));
  EXPECT_THAT(list.out, HasSubstr(agent));
  EXPECT_THAT(list.out, HasSubstr("echo"));  // registered by demo-agents --register
  json lj = CliJson({"agent", "list"});
  bool found = false;
  for (const auto& a : lj["items"]) {
    if (a["name"] == agent) {
      found = true;
      EXPECT_EQ(a["url"], "http://127.0.0.1:9/agents/x");
      EXPECT_EQ(a["timeout_ms"], 1234);
    }
  }
  EXPECT_TRUE(found) << lj.dump();
  CliResult bad = Cli({"agent", "register", "--name", agent, "--url", "not a url"});
  EXPECT_EQ(bad.exit_code, 1) << bad.Describe();
}

TEST_F(CliE2E, WatchExitsOneForAFailedRun) {
  std::string name = UniqueName("cli-fail");
  CreateWorkflow(server(), FailingPlan(name));
  CliResult started = Cli({"run", "start", name, "--watch"});
  EXPECT_EQ(started.exit_code, 1) << started.Describe();
  EXPECT_THAT(started.out, HasSubstr("FAILED"));
  EXPECT_THAT(started.out, HasSubstr("HTTP 500"));

  json run = StartRun(server(), name, json::object());
  std::string id = run["run_id"];
  CliResult watch = Cli({"run", "watch", id});
  EXPECT_EQ(watch.exit_code, 1) << watch.Describe();
  EXPECT_THAT(watch.out, HasSubstr("run " + id + " FAILED"));
  EXPECT_THAT(watch.out, HasSubstr("error:"));
}

// Test 8 via the CLI.
TEST_F(CliE2E, RunCancelRecordsWhoAndWhy) {
  std::string name = UniqueName("cli-cancel");
  CreateWorkflow(server(), json{{"name", name},
                                {"steps", json::array({json{{"id", "nap"}, {"agent", "sleep"}, {"input", {{"ms", 30000}}}}})}});
  json run = StartRun(server(), name, json::object());
  std::string id = run["run_id"];
  WaitForStepRow(server(), id, [](const json& r) { return r["step_id"] == "nap" && r["status"] == "RUNNING"; });
  CliResult c = Cli({"run", "cancel", id, "--reason", "cli says stop", "--by", "tester"});
  ASSERT_EQ(c.exit_code, 0) << c.Describe();
  EXPECT_THAT(c.out, HasSubstr("cancellation of run " + id + " requested"));
  HttpResponse r = server().Get("/runs/" + id + "?wait=1");
  EXPECT_EQ(r.body_json["status"], "CANCELLED") << r.body;
  json done = WaitRunTerminal(server(), id);
  EXPECT_EQ(done["status"], "CANCELLED");
  EXPECT_EQ(done["cancelled_by"], "tester");
  EXPECT_EQ(done["cancel_reason"], "cli says stop");
  EXPECT_EQ(RowsOf(Steps(server(), id), "nap")[0]["status"], "CANCELLED");

  CliResult again = Cli({"run", "cancel", id});
  EXPECT_EQ(again.exit_code, 1) << again.Describe();
  EXPECT_THAT(again.err, HasSubstr("already finished"));
  // `run watch` of a cancelled run: not COMPLETED, so exit code 1.
  CliResult watch = Cli({"run", "watch", id});
  EXPECT_EQ(watch.exit_code, 1) << watch.Describe();
  EXPECT_THAT(watch.out, HasSubstr("CANCELLED"));
}

// Test 9 via the CLI: retry with a new input that avoids the failing step.
TEST_F(CliE2E, RunRetryWithNewInput) {
  std::string name = UniqueName("cli-retry");
  json plan = json::parse(R"({"steps": [
      {"id": "up", "agent": "echo", "input": {"m": "${input.mode}"}},
      {"id": "risky", "agent": "fail", "when": "${input.mode} == 'fail'", "retry": {"max_attempts": 1}}]})");
  plan["name"] = name;
  CreateWorkflow(server(), plan);
  json run = StartRun(server(), name, {{"mode", "fail"}});
  std::string id = run["run_id"];
  ASSERT_EQ(WaitRunTerminal(server(), id)["status"], "FAILED");
  CliResult r = Cli({"run", "retry", id, "--input", R"({"mode": "ok"})", "--watch"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("COMPLETED"));
  json steps = Steps(server(), id);
  EXPECT_EQ(RowsOf(steps, "up").size(), 1u) << steps.dump(1);
  CliResult again = Cli({"run", "retry", id});
  EXPECT_EQ(again.exit_code, 1) << again.Describe();
  EXPECT_THAT(again.err, HasSubstr("COMPLETED"));
}

// `executor --agent NAME=URL` against the shared demo agents process.
TEST_F(CliE2E, ExecutorUsesAgentsGivenOnTheCommandLine) {
  std::string plan = PlanFile(SummarizePlan("exec-agents"));
  std::string base = stack().agents().url() + "/agents/";
  CliResult r = RunCli({"executor", "--plan", plan, "--input", R"({"topic": "given agents"})", "--agent",
                        "echo=" + base + "echo", "--agent", "upper=" + base + "upper"},
                       dir_);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("\"result\": \"GIVEN AGENTS\""));
  // Without the agents the plan cannot run.
  CliResult none = RunCli({"executor", "--plan", plan, "--input", R"({"topic": "no agents"})"}, dir_);
  EXPECT_EQ(none.exit_code, 1) << none.Describe();
  EXPECT_THAT(none.out, HasSubstr("agent 'echo'"));
  EXPECT_THAT(none.out, HasSubstr("--agent"));
}

TEST_F(CliE2E, UnreachableServerIsAClearError) {
  CliResult r = RunCli({"--server", "http://127.0.0.1:" + std::to_string(PickFreePort()), "workflow", "list"}, dir_);
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("cannot reach"));
}

// ---- agentflow executor (no server) ----

class ExecutorE2E : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(ExecutorE2E, RunsAPlanWithTheDemoAgents) {
  std::string plan = dir_.Write("plan.json", SummarizePlan("exec").dump());
  CliResult r = RunCli({"executor", "--plan", plan, "--input", R"({"topic": "standalone"})", "--demo"}, dir_);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("COMPLETED"));
  EXPECT_THAT(r.out, HasSubstr("\"result\": \"STANDALONE\""));

  CliResult j = RunCli({"--json", "executor", "--plan", plan, "--input", R"({"topic": "as json"})", "--demo"}, dir_);
  ASSERT_EQ(j.exit_code, 0) << j.Describe();
  json out = json::parse(j.out, nullptr, false);
  ASSERT_FALSE(out.is_discarded()) << j.Describe();
  EXPECT_EQ(out["status"], "COMPLETED");
  EXPECT_EQ(out["output"], (json{{"result", "AS JSON"}}));
  EXPECT_EQ(out["steps"].size(), 2u);
}

TEST_F(ExecutorE2E, FailingPlanExitsOneAndInvalidPlanExitsTwo) {
  std::string failing = dir_.Write("fail.json", FailingPlan("exec-fail").dump());
  CliResult f = RunCli({"executor", "--plan", failing, "--demo"}, dir_);
  EXPECT_EQ(f.exit_code, 1) << f.Describe();
  EXPECT_THAT(f.out, HasSubstr("FAILED"));
  EXPECT_THAT(f.out, HasSubstr("boom"));

  std::string invalid = dir_.Write("invalid.json", R"({"name": "x", "steps": [{"id": "a"}]})");
  CliResult i = RunCli({"executor", "--plan", invalid, "--demo"}, dir_);
  EXPECT_EQ(i.exit_code, 2) << i.Describe();
  EXPECT_THAT(i.err, HasSubstr("agent"));
  std::string not_json = dir_.Write("garbage.json", "{{{");
  EXPECT_EQ(RunCli({"executor", "--plan", not_json, "--demo"}, dir_).exit_code, 2);
  EXPECT_EQ(RunCli({"executor", "--plan", dir_.File("missing.json"), "--demo"}, dir_).exit_code, 2);
  std::string ok = dir_.Write("ok.json", SummarizePlan("exec-ok").dump());
  EXPECT_EQ(RunCli({"executor", "--plan", ok, "--input", "[1]", "--demo"}, dir_).exit_code, 2);
}

}  // namespace
}  // namespace af::e2e
