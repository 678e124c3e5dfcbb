// Runs against agents that misbehave (e2e/misbehaving_agent.h: 500, hang
// past the step timeout, close mid-response, malformed JSON, a 20 MB body
// with and without Content-Length, a trickled body, a flaky agent), all at
// once on one `agentflow serve`. For each: the step ends FAILED after the
// attempts its retry policy allows, with a clear error_message (or the run
// COMPLETES when a retry succeeds); every run ends; the step before the bad
// one is called once per run, also across a retry of the run; serve stays
// healthy and its peak memory stays far below what reading the 20 MB bodies
// would take. The test prints what it did and what it counted.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "e2e/harness.h"
#include "e2e/misbehaving_agent.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A field of /proc/PID/status in KiB ("VmHWM", "VmRSS"); 0 if unreadable.
int64_t ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return 0;
}

struct Misbehaviour {
  std::string name;      // also the agent's name suffix
  std::string url_mode;  // MisbehavingAgent mode and query
  json retry;            // the bad step's retry policy
  int64_t timeout_ms;    // the bad step's timeout
  std::string run_status;
  int attempts;      // calls of the bad step per run
  std::string says;  // in the run's error_message (FAILED runs)
};

constexpr size_t kOutputLimit = 2 << 20;  // serve --max-step-output-bytes
constexpr int kRunsPerMode = 2;

TEST(MisbehavingAgentsE2E, EveryRunEndsWithAClearErrorAndServeStaysHealthy) {
  TempDir dir;
  Server::Options o;
  o.data_dir = dir.File("data");
  o.log_dir = dir.path().string();
  o.command = {"serve", "--data-dir", o.data_dir, "--max-step-output-bytes", std::to_string(kOutputLimit)};
  Server serve(o);
  serve.Start();
  MisbehavingAgent agent;
  const int64_t hwm_before = ProcStatusKb(serve.pid(), "VmHWM");

  const json fast_retry2 = {{"max_attempts", 2}, {"initial_backoff_ms", 10}};
  const json fast_retry3 = {{"max_attempts", 3}, {"initial_backoff_ms", 10}};
  const std::vector<Misbehaviour> modes = {
      {"500", "500", fast_retry3, 5000, "FAILED", 3, "failed after 3 attempts: HTTP 500: {\"error\": \"misbehaving agent: 500 on purpose\"}"},
      {"hang", "hang", fast_retry2, 300, "FAILED", 2, "failed after 2 attempts: timed out after 300 ms"},
      {"close", "close", fast_retry2, 5000, "FAILED", 2, "closed in the middle of the response"},
      {"badjson", "badjson", fast_retry3, 5000, "FAILED", 1, "agent returned a non-JSON body (HTTP 200"},
      {"huge", "huge?mb=20", fast_retry3, 20000, "FAILED", 1,
       "agent response is 20971520 bytes, over the limit of 2097152 bytes"},
      {"hugechunked", "hugechunked?mb=20", fast_retry3, 20000, "FAILED", 1,
       "agent response is larger (it sent no Content-Length; reading stopped), over the limit of 2097152 bytes"},
      {"trickle", "trickle", fast_retry2, 300, "FAILED", 2, "failed after 2 attempts: timed out after 300 ms"},
      {"flaky", "flaky?failures=2", fast_retry3, 5000, "COMPLETED", 3, ""},
  };

  HttpResponse put = serve.Put("/agents/mb-ok", {{"url", agent.Url("ok")}});
  ASSERT_EQ(put.status, 200) << put.Describe();
  for (const auto& m : modes) {
    put = serve.Put("/agents/mb-" + m.name, {{"url", agent.Url(m.url_mode)}});
    ASSERT_EQ(put.status, 200) << put.Describe();
    json plan = {{"name", "misbehave-" + m.name},
                 {"steps", json::array({{{"id", "first"}, {"agent", "mb-ok"}},
                                        {{"id", "bad"},
                                         {"agent", "mb-" + m.name},
                                         {"input", {{"n", "${input.n}"}}},
                                         {"retry", m.retry},
                                         {"timeout_ms", m.timeout_ms}}})}};
    CreateWorkflow(serve, plan);
  }

  // Every run at once.
  std::map<std::string, std::vector<std::string>> runs;  // mode → run ids
  for (int i = 0; i < kRunsPerMode; ++i) {
    for (const auto& m : modes) runs[m.name].push_back(StartRun(serve, "misbehave-" + m.name, {{"n", i}})["run_id"]);
  }

  int started = 0, terminal = 0, completed = 0, failed = 0, failed_attempts = 0;
  for (const auto& m : modes) {
    for (const std::string& id : runs[m.name]) {
      SCOPED_TRACE(m.name + " run " + id);
      ++started;
      json run = WaitRunTerminal(serve, id, 120s);
      ++terminal;
      completed += run["status"] == "COMPLETED";
      failed += run["status"] == "FAILED";
      EXPECT_EQ(run["status"], m.run_status) << run.dump();
      if (!m.says.empty()) {
        EXPECT_THAT(run["error_message"].get<std::string>(), HasSubstr(m.says));
      }
      json steps = Steps(serve, id);
      json first = RowsOf(steps, "first");
      ASSERT_EQ(first.size(), 1u) << steps.dump();
      EXPECT_EQ(first[0]["status"], "COMPLETED");
      EXPECT_EQ(agent.CallsWithKey(id + "/first"), 1);
      json bad = RowsOf(steps, "bad");
      EXPECT_EQ(static_cast<int>(bad.size()), m.attempts) << bad.dump();
      EXPECT_EQ(agent.CallsWithKey(id + "/bad"), m.attempts);
      for (size_t k = 0; k < bad.size(); ++k) {
        bool last = k + 1 == bad.size();
        EXPECT_EQ(bad[k]["status"], last && m.run_status == "COMPLETED" ? "COMPLETED" : "FAILED") << bad[k].dump();
        if (bad[k]["status"] == "FAILED") {
          ++failed_attempts;
          EXPECT_TRUE(bad[k]["error_message"].is_string() && !bad[k]["error_message"].get<std::string>().empty());
        }
      }
    }
    std::printf(
        "  %-12s %d runs %s; bad step: %d attempt(s) each; error: %s\n", m.name.c_str(), kRunsPerMode,
        m.run_status.c_str(), m.attempts,
        m.says.empty() ? "-" : WaitRunTerminal(serve, runs[m.name][0])["error_message"].get<std::string>().c_str());
  }

  // Retrying a failed run: 'first' is not called again, 'bad' gets a fresh budget.
  const std::string retried = runs["500"][0];
  HttpResponse retry = serve.Post("/runs/" + retried + "/retry");
  ASSERT_EQ(retry.status, 202) << retry.Describe();
  json again = WaitRunTerminal(serve, retried, 60s);
  EXPECT_EQ(again["status"], "FAILED");
  EXPECT_EQ(agent.CallsWithKey(retried + "/first"), 1) << "a COMPLETED step was called again";
  EXPECT_EQ(agent.CallsWithKey(retried + "/bad"), 6);
  json bad_rows = RowsOf(Steps(serve, retried), "bad");
  ASSERT_EQ(bad_rows.size(), 6u);
  EXPECT_EQ(bad_rows[5]["attempt"], 6);

  // Healthy, still running runs, memory bounded.
  EXPECT_TRUE(serve.Alive());
  EXPECT_EQ(Fetch("GET", serve.url() + "/healthz").status, 200);
  CreateWorkflow(serve, {{"name", "after"}, {"steps", json::array({{{"id", "a"}, {"agent", "mb-ok"}}})}});
  EXPECT_EQ(WaitRunTerminal(serve, StartRun(serve, "after", json::object())["run_id"])["status"], "COMPLETED");
  const int64_t hwm_after = ProcStatusKb(serve.pid(), "VmHWM");
  const int64_t rss_after = ProcStatusKb(serve.pid(), "VmRSS");
  const int64_t huge_offered = 2LL * kRunsPerMode * (20 << 20);

  std::printf(
      "misbehaving agents: %d runs started, %d terminal (%d COMPLETED, %d FAILED), %d failed step attempts, "
      "1 retried run\n  agent calls: %s\n  20 MB bodies: %lld MB offered, %lld MB sent before agentflow closed the "
      "connection\n  serve peak RSS: %lld MB before, %lld MB after (RSS now %lld MB)\n",
      started, terminal, completed, failed, failed_attempts, agent.Summary().c_str(),
      static_cast<long long>(huge_offered >> 20), static_cast<long long>(agent.HugeBytesSent() >> 20),
      static_cast<long long>(hwm_before >> 10), static_cast<long long>(hwm_after >> 10),
      static_cast<long long>(rss_after >> 10));

  EXPECT_EQ(terminal, started);
  EXPECT_EQ(started, kRunsPerMode * static_cast<int>(modes.size()));
  // Reading the four 20 MB bodies whole would add 80 MB and more (a string
  // doubling as it grows); bounded reads add a few MB.
  if (hwm_before > 0) {
    EXPECT_LT(hwm_after - hwm_before, 60 * 1024) << "serve's peak memory grew too much";
  }
  EXPECT_LT(agent.HugeBytesSent(), huge_offered);
  if (HasFailure()) std::fprintf(stderr, "---- serve log\n%s\n", Tail(serve.stderr_path()).c_str());
  serve.Stop();
  agent.Stop();
}

}  // namespace
}  // namespace af::e2e
