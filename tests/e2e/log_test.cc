// LOG_FORMAT=json: every line `agentflow serve` writes to stderr is one JSON
// object with ts, level and msg; lines about a run carry its run_id.
#include <set>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/time.h"
#include "e2e/harness.h"

namespace af::e2e {
namespace {

class JsonLogE2E : public E2ETest {
 protected:
  JsonLogE2E() : stack_(EnvOverrides{{"LOG_FORMAT", "json"}}) {}
  void SetUp() override { stack_.Start(); }
  Stack& stack() override { return stack_; }
  Stack stack_;
};

TEST_F(JsonLogE2E, ServeStderrIsOneJsonObjectPerLine) {
  Server& s = stack_.server();
  json wf = CreateWorkflow(s, json{{"name", "logged"},
                                   {"steps", json::array({json{{"id", "hello"}, {"agent", "echo"}},
                                                          json{{"id", "boom"},
                                                               {"agent", "fail"},
                                                               {"retry", {{"max_attempts", 2},
                                                                          {"initial_backoff_ms", 10}}}}})}});
  json run = StartRun(s, wf["workflow_id"], {{"text", "line\nbreak \"quoted\""}});
  std::string id = run["run_id"];
  ASSERT_EQ(WaitRunTerminal(s, id)["status"], "FAILED");
  // Bad requests must not produce non-JSON lines either.
  Fetch("POST", s.api() + "/workflows", "{broken");
  ASSERT_EQ(s.Stop(), 0);  // flushes everything; logs the shutdown too

  std::string err = ReadFile(s.stderr_path());
  ASSERT_FALSE(err.empty());
  std::istringstream lines(err);
  std::string line;
  int count = 0;
  std::set<std::string> run_msgs;
  bool step_line = false;
  while (std::getline(lines, line)) {
    ++count;
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "line " << count << " is not JSON: " << line;
    ASSERT_TRUE(j.is_object()) << line;
    ASSERT_TRUE(j.contains("ts") && j["ts"].is_string()) << line;
    EXPECT_TRUE(af::ParseIso8601(j["ts"].get<std::string>()).has_value()) << line;
    ASSERT_TRUE(j.contains("level") && j["level"].is_string()) << line;
    EXPECT_TRUE(std::set<std::string>({"DEBUG", "INFO", "WARNING", "ERROR"}).count(j["level"].get<std::string>()))
        << line;
    ASSERT_TRUE(j.contains("msg") && j["msg"].is_string()) << line;
    if (j.value("run_id", "") == id) {
      run_msgs.insert(j["msg"].get<std::string>());
      if (j.value("step_id", "") == "boom" && j.value("agent", "") == "fail") step_line = true;
    }
    // A line that talks about our run names it in run_id, not only in msg.
    if (j["msg"].get<std::string>().find(id) != std::string::npos) {
      EXPECT_EQ(j.value("run_id", ""), id) << line;
    }
  }
  EXPECT_GT(count, 0);
  EXPECT_TRUE(run_msgs.count("run started")) << err;
  bool accepted = false, failed = false;
  for (const auto& m : run_msgs) {
    accepted = accepted || m.find("run accepted") != std::string::npos;
    failed = failed || m.find("run FAILED") != std::string::npos;
  }
  EXPECT_TRUE(accepted) << err;
  EXPECT_TRUE(failed) << err;
  EXPECT_TRUE(step_line) << "no line with run_id, step_id and agent for the failing step:\n" << err;
}

}  // namespace
}  // namespace af::e2e
