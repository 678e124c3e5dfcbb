// Crash recovery: `agentflow serve` is killed with SIGKILL and restarted on
// the same data directory. Each test has its own server (it kills it); the
// demo agents run in their own process and survive the crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class CrashE2E : public E2ETest {
 protected:
  void SetUp() override { stack_.Start(); }
  Stack& stack() override { return stack_; }
  Server& server() { return stack_.server(); }
  Stack stack_;
};

json ThreeStepPlan(const std::string& name, int sleep_ms) {
  return json{{"name", name},
              {"steps", json::array({json{{"id", "step1"}, {"agent", "echo"}, {"input", {{"v", "${input.v}"}}}},
                                     json{{"id", "step2"}, {"agent", "sleep"}, {"input", {{"ms", sleep_ms}}}},
                                     json{{"id", "step3"},
                                          {"agent", "echo"},
                                          {"input", {{"v", "${steps.step1.output.echo.v}"},
                                                     {"slept", "${steps.step2.output.slept_ms}"}}}}})},
              {"output", "${steps.step3.output.echo}"}};
}

TEST_F(CrashE2E, RunResumesAfterServeIsKilledMidStep) {
  json wf = CreateWorkflow(server(), ThreeStepPlan("resume", 2000));
  json run = StartRun(server(), wf["workflow_id"], {{"v", "kept"}});
  std::string id = run["run_id"];
  // Kill while step2 is in flight (its row is RUNNING).
  WaitForStepRow(server(), id, [](const json& r) { return r["step_id"] == "step2" && r["status"] == "RUNNING"; });
  server().Crash();

  server().Start(server().port());
  json done = WaitRunTerminal(server(), id);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  EXPECT_EQ(done["output"], (json{{"v", "kept"}, {"slept", 2000}}));

  json steps = Steps(server(), id);
  json s1 = RowsOf(steps, "step1");
  ASSERT_EQ(s1.size(), 1u) << "step1 ran again after the restart: " << steps.dump(1);
  EXPECT_EQ(s1[0]["status"], "COMPLETED");

  json s2 = RowsOf(steps, "step2");
  ASSERT_EQ(s2.size(), 2u) << steps.dump(1);
  EXPECT_EQ(s2[0]["attempt"], 1);
  EXPECT_EQ(s2[0]["status"], "FAILED");
  EXPECT_THAT(s2[0]["error_message"].get<std::string>(), HasSubstr("interrupted"));
  EXPECT_FALSE(s2[0]["completed_at"].is_null());
  EXPECT_EQ(s2[1]["attempt"], 2);
  EXPECT_EQ(s2[1]["status"], "COMPLETED");

  json s3 = RowsOf(steps, "step3");
  ASSERT_EQ(s3.size(), 1u) << steps.dump(1);
  EXPECT_EQ(s3[0]["status"], "COMPLETED");
  for (const auto& row : steps) EXPECT_NE(row["status"], "RUNNING") << row.dump();
}

TEST_F(CrashE2E, RunAcceptedJustBeforeTheCrashCompletesAfterRestart) {
  json wf = CreateWorkflow(server(), ThreeStepPlan("accepted", 300));
  json run = StartRun(server(), wf["workflow_id"], {{"v", 7}});
  std::string id = run["run_id"];
  server().Crash();  // right after the 202

  server().Start(server().port());
  json done = WaitRunTerminal(server(), id);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  EXPECT_EQ(done["output"], (json{{"v", 7}, {"slept", 300}}));
  json steps = Steps(server(), id);
  for (const char* step : {"step1", "step2", "step3"}) {
    int completed = 0;
    for (const auto& row : RowsOf(steps, step)) completed += row["status"] == "COMPLETED" ? 1 : 0;
    EXPECT_EQ(completed, 1) << step << ": " << steps.dump(1);
  }
  // One run only, not a duplicate from re-queueing.
  HttpResponse list = server().Get("/runs?workflow_id=" + wf["workflow_id"].get<std::string>());
  EXPECT_EQ(list.body_json["items"].size(), 1u) << list.body;
}

TEST_F(CrashE2E, CleanShutdownOnSigtermThenRestartKeepsData) {
  json wf = CreateWorkflow(server(), ThreeStepPlan("sigterm", 10));
  json run = StartRun(server(), wf["workflow_id"], {{"v", 1}});
  std::string id = run["run_id"];
  ASSERT_EQ(WaitRunTerminal(server(), id)["status"], "COMPLETED");
  EXPECT_EQ(server().Stop(), 0) << "serve should exit 0 on SIGTERM";
  server().Start(server().port());
  HttpResponse got = server().Get("/runs/" + id);
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.body_json["status"], "COMPLETED");
  EXPECT_EQ(server().Get("/workflows/resume-does-not-exist").status, 404);
  EXPECT_EQ(server().Get("/workflows/sigterm").body_json["workflow_id"], wf["workflow_id"]);
}

// `serve --accept-only` stores and queues runs without executing them; the
// next serve on the data directory executes them, once each.
TEST_F(CrashE2E, RunsAcceptedByAnAcceptOnlyServeRunWhenServeStartsWithoutIt) {
  json wf = CreateWorkflow(server(), ThreeStepPlan("accept-only", 10));
  const uint16_t port = server().port();
  ASSERT_EQ(server().Stop(), 0);

  Server::Options o;
  o.data_dir = stack_.dir().File("data");
  o.log_dir = stack_.dir().path().string();
  o.command = {"serve", "--data-dir", o.data_dir, "--accept-only"};
  o.name = "serve-accept-only";
  Server accept_only(o);
  accept_only.Start(port);
  std::vector<std::string> ids;
  for (int v = 0; v < 3; ++v) ids.push_back(StartRun(accept_only, wf["workflow_id"], {{"v", v}})["run_id"]);
  // Every request reached the queue ...
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string page = Fetch("GET", accept_only.url() + "/metrics").body;
        auto at = page.find("\nagentflow_outbox_published_total ");
        return at != std::string::npos && std::stod(page.substr(page.find(' ', at + 1))) >= 3;
      },
      20s))
      << Tail(accept_only.stderr_path());
  // ... and none ran (a 10 ms run would have ended long before).
  std::this_thread::sleep_for(500ms);
  for (const auto& id : ids) {
    HttpResponse got = accept_only.Get("/runs/" + id);
    ASSERT_EQ(got.status, 200) << got.Describe();
    EXPECT_EQ(got.body_json["status"], "PENDING") << got.body;
    EXPECT_EQ(Steps(accept_only, id).size(), 0u);
  }
  EXPECT_THAT(ReadFile(accept_only.stdout_path()), HasSubstr("Accept-only"));
  ASSERT_EQ(accept_only.Stop(), 0);

  server().Start(port);
  for (int v = 0; v < 3; ++v) {
    json done = WaitRunTerminal(server(), ids[static_cast<size_t>(v)]);
    ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
    EXPECT_EQ(done["output"], (json{{"v", v}, {"slept", 10}}));
    json steps = Steps(server(), ids[static_cast<size_t>(v)]);
    EXPECT_EQ(steps.size(), 3u) << steps.dump(1);
  }
}

}  // namespace
}  // namespace af::e2e
