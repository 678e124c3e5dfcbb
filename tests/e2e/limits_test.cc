// Every limit of docs/reliability.md ("Bad input and limits") against
// `agentflow serve` started with small values, so each is crossed cheaply:
// the error names the limit, nothing beyond it is done (no agent call, no
// element started), and the server keeps serving.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <thread>

#include "e2e/harness.h"
#include "e2e/misbehaving_agent.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class LimitsE2E : public ::testing::Test {
 protected:
  // serve with these limit flags (on top of --data-dir, --host, --port).
  void StartServe(const std::vector<std::string>& flags) {
    Server::Options o;
    o.data_dir = dir_.File("data");
    o.log_dir = dir_.path().string();
    o.command = {"serve", "--data-dir", o.data_dir};
    o.command.insert(o.command.end(), flags.begin(), flags.end());
    server_ = std::make_unique<Server>(o);
    server_->Start();
  }
  void TearDown() override {
    if (HasFailure() && server_) std::fprintf(stderr, "---- serve log\n%s\n", Tail(server_->stderr_path()).c_str());
    if (server_) server_->Stop();
    agent_.Stop();
  }
  void RegisterAgent(const std::string& name, const std::string& mode, int max_concurrency = 0) {
    HttpResponse r =
        server_->Put("/agents/" + name, json{{"url", agent_.Url(mode)}, {"max_concurrency", max_concurrency}});
    Require(r.status == 200, "PUT /agents/" + name + ": " + r.Describe());
  }
  Server& s() { return *server_; }

  TempDir dir_;
  std::unique_ptr<Server> server_;
  MisbehavingAgent agent_;
};

TEST_F(LimitsE2E, PlansOverTheSizeOrStepLimitAreRejectedAtCreationNamingTheLimit) {
  StartServe({"--max-plan-bytes", "2000", "--max-plan-steps", "5"});
  json steps = json::array();
  for (int i = 0; i < 6; ++i) steps.push_back({{"id", "s" + std::to_string(i)}, {"agent", "ok"}});
  HttpResponse many = s().Post("/workflows", {{"name", "many"}, {"steps", steps}});
  EXPECT_EQ(many.status, 400) << many.Describe();
  EXPECT_EQ(many.body_json["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_THAT(many.body, HasSubstr("too many steps (6; the limit is 5)"));

  json big = {{"name", "big"},
              {"description", std::string(3000, 'd')},
              {"steps", json::array({{{"id", "a"}, {"agent", "ok"}}})}};
  HttpResponse large = s().Post("/workflows", big);
  EXPECT_EQ(large.status, 400) << large.Describe();
  EXPECT_THAT(large.body, HasSubstr("bytes as compact JSON, over the limit of 2000 bytes"));
  // PUT is held to the same limits.
  HttpResponse created =
      s().Post("/workflows", {{"name", "small"}, {"steps", json::array({{{"id", "a"}, {"agent", "ok"}}})}});
  ASSERT_EQ(created.status, 201) << created.Describe();
  HttpResponse put = s().Put("/workflows/small", big);
  EXPECT_EQ(put.status, 400) << put.Describe();
  EXPECT_THAT(put.body, HasSubstr("over the limit of 2000 bytes"));
  std::printf("6 steps: %s\n3 KB plan: %s\n", many.body.substr(0, 200).c_str(), large.body.substr(0, 220).c_str());
  EXPECT_EQ(s().Get("/runs?limit=1").status, 200);
}

TEST_F(LimitsE2E, OutOfRangeLimitFlagsStopServeAtStart) {
  CliResult r =
      RunCli({"serve", "--data-dir", dir_.File("x"), "--port", "0", "--max-plan-steps", "20000"}, dir_, {}, 20s);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err + r.out, HasSubstr("--max-plan-steps")) << r.Describe();
}

TEST_F(LimitsE2E, RequestBodyOverTheLimitIs413NamingTheLimit) {
  StartServe({"--max-body-bytes", "10000"});
  HttpResponse r = Fetch("POST", s().api() + "/workflows", std::string(20000, ' ') + "{}");
  EXPECT_EQ(r.status, 413) << r.Describe();
  EXPECT_EQ(r.body_json["error"]["code"], "TOO_LARGE");
  EXPECT_EQ(r.body_json["error"]["message"], "request body is 20002 bytes, over the limit of 10000 bytes");
  EXPECT_EQ(s().Get("/runs?limit=1").status, 200);
}

TEST_F(LimitsE2E, StepInputOverTheLimitFailsTheStepWithoutCallingTheAgent) {
  StartServe({"--max-step-input-bytes", "600"});
  RegisterAgent("ok", "ok");
  json plan = {{"name", "input-limit"},
               {"steps", json::array({{{"id", "first"}, {"agent", "ok"}, {"input", {{"small", "${input.small}"}}}},
                                      {{"id", "second"}, {"agent", "ok"}, {"input", {{"text", "${input.text}"}}}}})}};
  CreateWorkflow(s(), plan);
  json run = StartRun(s(), "input-limit", {{"small", "x"}, {"text", std::string(1000, 't')}});
  json done = WaitRunTerminal(s(), run["run_id"]);
  EXPECT_EQ(done["status"], "FAILED") << done.dump();
  EXPECT_THAT(done["error_message"].get<std::string>(),
              HasSubstr("step 'second': input is 1011 bytes, over the limit of 600 bytes; the agent was not called"));
  json rows = RowsOf(Steps(s(), run["run_id"]), "second");
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0]["status"], "FAILED");
  EXPECT_TRUE(rows[0]["input"].is_null()) << "the oversized input is not stored";
  EXPECT_EQ(agent_.Calls("ok"), 1) << "only 'first' called the agent; " << agent_.Summary();
  std::printf("run %s: %s\n", done["run_id"].get<std::string>().c_str(),
              done["error_message"].get<std::string>().c_str());
}

TEST_F(LimitsE2E, ForEachOverTheLimitFailsBeforeAnyElementStarts) {
  StartServe({"--max-for-each-items", "3"});
  RegisterAgent("ok", "ok");
  json plan = {
      {"name", "fanout"},
      {"steps",
       json::array(
           {{{"id", "each"}, {"agent", "ok"}, {"for_each", "${input.items}"}, {"input", {{"v", "${item}"}}}}})}};
  CreateWorkflow(s(), plan);
  json fine = WaitRunTerminal(s(), StartRun(s(), "fanout", {{"items", {1, 2, 3}}})["run_id"]);
  EXPECT_EQ(fine["status"], "COMPLETED") << fine.dump();
  EXPECT_EQ(agent_.Calls("ok"), 3);
  json over = WaitRunTerminal(s(), StartRun(s(), "fanout", {{"items", {1, 2, 3, 4}}})["run_id"]);
  EXPECT_EQ(over["status"], "FAILED") << over.dump();
  EXPECT_THAT(over["error_message"].get<std::string>(),
              HasSubstr("step 'each': for_each has 4 elements, over the limit of 3; no element was started"));
  EXPECT_EQ(agent_.Calls("ok"), 3) << "no element of the second run was called";
}

TEST_F(LimitsE2E, AgentReplyOverTheLimitFailsTheStepNamingSizeAndLimit) {
  StartServe({"--max-step-output-bytes", "100000"});
  RegisterAgent("big", "huge?mb=1");
  RegisterAgent("bigchunked", "hugechunked?mb=1");
  json plan = {{"name", "reply-limit"}, {"steps", json::array({{{"id", "a"}, {"agent", "big"}}})}};
  CreateWorkflow(s(), plan);
  json chunked = {{"name", "reply-limit-chunked"}, {"steps", json::array({{{"id", "a"}, {"agent", "bigchunked"}}})}};
  CreateWorkflow(s(), chunked);
  json a = WaitRunTerminal(s(), StartRun(s(), "reply-limit", json::object())["run_id"]);
  EXPECT_EQ(a["status"], "FAILED");
  EXPECT_THAT(a["error_message"].get<std::string>(),
              HasSubstr("agent response is 1048576 bytes, over the limit of 100000 bytes"));
  json b = WaitRunTerminal(s(), StartRun(s(), "reply-limit-chunked", json::object())["run_id"]);
  EXPECT_EQ(b["status"], "FAILED");
  EXPECT_THAT(b["error_message"].get<std::string>(), HasSubstr("over the limit of 100000 bytes"));
  // Permanent: one attempt each, not the default three.
  EXPECT_EQ(agent_.Calls("huge"), 1);
  EXPECT_EQ(agent_.Calls("hugechunked"), 1);
  std::printf("%s\n%s\n", a["error_message"].get<std::string>().c_str(), b["error_message"].get<std::string>().c_str());
}

// Regression (found by this test): the consumer compared --max-runs with
// Engine::ActiveRuns(), which lags behind Submit (it only posts to the
// engine), so one poll after another took more requests: 3 runs in flight
// with --max-runs 2. It now also counts what it submitted and has not heard
// back about (src/executor/consumer.cc).
TEST_F(LimitsE2E, MaxRunsBoundsTheRunsExecutingAtOnce) {
  StartServe({"--max-runs", "2"});
  RegisterAgent("slow", "slow?ms=300");
  CreateWorkflow(s(), {{"name", "slowly"}, {"steps", json::array({{{"id", "a"}, {"agent", "slow"}}})}});
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(StartRun(s(), "slowly", {{"i", i}})["run_id"]);
  for (const auto& id : ids) EXPECT_EQ(WaitRunTerminal(s(), id)["status"], "COMPLETED");
  std::printf("6 runs with --max-runs 2: at most %lld agent calls in flight\n",
              static_cast<long long>(agent_.MaxInFlight("slow")));
  EXPECT_LE(agent_.MaxInFlight("slow"), 2);
  EXPECT_GE(agent_.MaxInFlight("slow"), 1);
  EXPECT_EQ(agent_.Calls("slow"), 6);
}

TEST_F(LimitsE2E, AgentMaxConcurrencyHoldsAcrossRunsAndForEachElements) {
  StartServe({});
  RegisterAgent("one-at-a-time", "slow?ms=100", /*max_concurrency=*/1);
  CreateWorkflow(s(), {{"name", "fan"},
                       {"steps", json::array({{{"id", "each"},
                                               {"agent", "one-at-a-time"},
                                               {"for_each", "${input.items}"},
                                               {"input", {{"v", "${item}"}}}}})}});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(StartRun(s(), "fan", {{"items", {1, 2, 3, 4}}})["run_id"]);
  for (const auto& id : ids) EXPECT_EQ(WaitRunTerminal(s(), id)["status"], "COMPLETED");
  std::printf("3 runs x 4 elements on an agent with max_concurrency 1: %lld calls, at most %lld at once\n",
              static_cast<long long>(agent_.Calls("slow")), static_cast<long long>(agent_.MaxInFlight("slow")));
  EXPECT_EQ(agent_.Calls("slow"), 12);
  EXPECT_EQ(agent_.MaxInFlight("slow"), 1);
}

}  // namespace
}  // namespace af::e2e
