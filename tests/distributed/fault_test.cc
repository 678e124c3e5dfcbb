// Fault injection against the seed's topology (docs/reliability.md, "How
// the guarantees are tested"): consumers killed with SIGKILL mid-run, the
// broker stopped while runs are triggered, `agentflow api` killed right
// after accepting triggers. (PostgreSQL restarted with runs in flight is in
// distributed_test.cc; misbehaving agents in tests/e2e.)
//
// Each test prints what it did and what it counted, from the database, and
// requires: every accepted run present and COMPLETED, every step COMPLETED
// exactly once, and no step called again after its completion was recorded.
// Bounded in count and time; loopback only. `ctest -L distributed`.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <sys/types.h>
#include <thread>

#include "distributed/cluster.h"
#include "e2e/harness.h"

namespace af::e2e {
namespace {

// What the database says about the runs of one test (each cluster has a
// database of its own, so every run in it is the test's).
struct Tally {
  size_t accepted = 0;       // runs the API answered 202 for
  size_t stored = 0;         // runs in workflow_runs
  size_t completed = 0, failed = 0, cancelled = 0, unfinished = 0;
  size_t steps_completed = 0;          // step_executions rows COMPLETED
  size_t steps_completed_twice = 0;    // (run, step, item) with more than one COMPLETED row
  size_t called_after_completion = 0;  // attempts started after that step's COMPLETED attempt
  size_t interrupted = 0;              // attempts cut short by a kill (FAILED "interrupted: ...")

  std::string ToString() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "accepted=%zu stored=%zu lost=%zu completed=%zu failed=%zu cancelled=%zu unfinished=%zu "
                  "steps_completed=%zu completed_twice=%zu recalled_after_completion=%zu interrupted_attempts=%zu",
                  accepted, stored, accepted > stored ? accepted - stored : 0, completed, failed, cancelled,
                  unfinished, steps_completed, steps_completed_twice, called_after_completion, interrupted);
    return buf;
  }
};

size_t Num(const std::vector<std::vector<std::string>>& rows) { return rows.empty() ? 0 : std::stoul(rows[0][0]); }

Tally Count(Cluster& c, size_t accepted) {
  Tally t;
  t.accepted = accepted;
  for (const auto& row : c.Query("SELECT status, count(*) FROM workflow_runs GROUP BY status")) {
    size_t n = std::stoul(row[1]);
    t.stored += n;
    if (row[0] == "COMPLETED") {
      t.completed = n;
    } else if (row[0] == "FAILED") {
      t.failed = n;
    } else if (row[0] == "CANCELLED") {
      t.cancelled = n;
    } else {
      t.unfinished += n;
    }
  }
  t.steps_completed = Num(c.Query("SELECT count(*) FROM step_executions WHERE status = 'COMPLETED'"));
  t.steps_completed_twice = Num(
      c.Query("SELECT count(*) FROM (SELECT 1 FROM step_executions WHERE status = 'COMPLETED' "
              "GROUP BY run_id, step_id, item_index HAVING count(*) > 1) AS twice"));
  t.called_after_completion = Num(
      c.Query("SELECT count(*) FROM step_executions done JOIN step_executions later ON later.run_id = done.run_id "
              "AND later.step_id = done.step_id AND coalesce(later.item_index, -1) = coalesce(done.item_index, -1) "
              "AND later.attempt > done.attempt WHERE done.status = 'COMPLETED'"));
  t.interrupted = Num(c.Query(
      "SELECT count(*) FROM step_executions WHERE status = 'FAILED' AND error_message LIKE 'interrupted%'"));
  return t;
}

// The promise: nothing lost, everything finished, nothing done twice.
void ExpectNothingLost(const Tally& t, size_t steps_per_run) {
  EXPECT_EQ(t.stored, t.accepted) << "runs lost";
  EXPECT_EQ(t.completed, t.accepted);
  EXPECT_EQ(t.unfinished, 0u);
  EXPECT_EQ(t.failed, 0u);
  EXPECT_EQ(t.steps_completed, t.accepted * steps_per_run);
  EXPECT_EQ(t.steps_completed_twice, 0u);
  EXPECT_EQ(t.called_after_completion, 0u) << "a completed step was called again";
}

void Report(const std::string& test, const std::string& did, const Tally& t) {
  std::printf("[fault] %s: %s\n[fault] %s: %s\n", test.c_str(), did.c_str(), test.c_str(), t.ToString().c_str());
  std::fflush(stdout);
}

class FaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << "==== logs ====\n" << cluster_->Logs();
  }
  std::unique_ptr<Cluster> cluster_;
};

// Five steps: two agents answering at once, two sleeping (no thread held),
// data passed along.
json FiveSteps(const std::string& name, int sleep_ms) {
  return Plan(name, json::parse(R"([
      {"id": "s1", "agent": "echo", "input": {"i": "${input.i}"}},
      {"id": "s2", "agent": "sleep", "input": {"ms": )" + std::to_string(sleep_ms) + R"(, "count_calls": true}},
      {"id": "s3", "agent": "upper", "input": {"text": "run ${input.i}"}},
      {"id": "s4", "agent": "sleep", "input": {"ms": )" + std::to_string(sleep_ms / 2) + R"(}},
      {"id": "s5", "agent": "echo", "input": {"first": "${steps.s1.output}", "third": "${steps.s3.output}"}}])"));
}

size_t CountRunning(Cluster& c) { return Num(c.Query("SELECT count(*) FROM workflow_runs WHERE status = 'RUNNING'")); }

// Runs whose lease the process `pid` holds (lease owners are host:pid:random).
size_t HeldBy(Cluster& c, pid_t pid) {
  return Num(c.Query("SELECT count(*) FROM workflow_runs WHERE status = 'RUNNING' AND lease_owner LIKE '%:" +
                     std::to_string(pid) + ":%'"));
}

TEST_F(FaultTest, FiveHundredRunsAcrossTwoConsumersSurviveThreeSigkills) {
  // Few runs at a time per consumer, so that the work lasts through three
  // kills and group rejoins, and short leases, so that a killed consumer's
  // runs are taken over quickly. Two group commits in flight per consumer
  // (--write-groups 2), so that the kills also land between concurrent ones.
  Cluster::Options o;
  o.consumers = 2;
  o.consumer_args = {"--lease-ttl", "3", "--max-runs", "5", "--write-groups", "2"};
  cluster_ = std::make_unique<Cluster>(SharedPg(), o);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("kill9"), 120));

  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  const size_t kRuns = 500;
  std::vector<std::string> ids;
  for (size_t i = 0; i < kRuns; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);

  // Three times: a random consumer, once it is driving runs, at a random
  // moment after that, gets SIGKILL and is started again.
  std::string kills;
  for (int k = 0; k < 3; ++k) {
    size_t victim = std::uniform_int_distribution<size_t>(0, 1)(rng);
    Server& v = c.consumer(victim);
    // A random moment, then the first one at which it holds runs (group
    // rebalances after a restart take its runs away for a few seconds).
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 1500)(rng)));
    size_t held = 0;
    ASSERT_TRUE(WaitUntil([&] { return (held = HeldBy(c, v.pid())) > 0; }, 90s, 10ms))
        << "consumer" << victim << " drives no run";
    v.Crash();
    kills += " consumer" + std::to_string(victim) + "(driving " + std::to_string(held) + " runs)";
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(100, 1000)(rng)));
    v.Restart();
  }
  size_t done_at_last_kill = Num(c.Query("SELECT count(*) FROM workflow_runs WHERE status = 'COMPLETED'"));
  WaitAllTerminal(c, ids, 300s);

  Tally t = Count(c, ids.size());
  Report("sigkill", "seed " + std::to_string(seed) + ", " + std::to_string(kRuns) +
                        " runs x 5 steps, 2 consumers, SIGKILL + restart of" + kills + "; " +
                        std::to_string(done_at_last_kill) + " runs done at the last kill",
         t);
  ExpectNothingLost(t, 5);
  EXPECT_GT(t.interrupted, 0u) << "no kill landed while a step was running; the test proved nothing";
  EXPECT_TRUE(c.consumer(0).Alive() && c.consumer(1).Alive());
}

TEST_F(FaultTest, TriggersAreAcceptedWhileTheBrokerIsStoppedAndRunOnceItIsBack) {
  cluster_ = std::make_unique<Cluster>(SharedPg(), 1);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("broker-down"), 20));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  // Runs flow (the consumer has joined its group) before the outage.
  WaitAllTerminal(c, ids, 60s);

  c.kafka().Pause();  // the broker stops answering
  size_t during = 0;
  auto stop_at = std::chrono::steady_clock::now() + 10s;
  int i = 20;
  while (std::chrono::steady_clock::now() < stop_at) {
    HttpResponse r = c.api().Post("/workflows/" + wf["workflow_id"].get<std::string>() + "/runs",
                                  json{{"input", {{"i", i++}}}});
    ASSERT_EQ(r.status, 202) << "a trigger failed while the broker was down: " << r.Describe();
    ids.push_back(r.body_json["run_id"]);
    ++during;
    std::this_thread::sleep_for(50ms);
  }
  size_t backlog = Num(c.Query("SELECT count(*) FROM outbox"));
  size_t pending = Num(c.Query("SELECT count(*) FROM workflow_runs WHERE status = 'PENDING'"));
  c.kafka().Resume();
  auto resumed = std::chrono::steady_clock::now();
  for (int k = 0; k < 20; ++k) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i++}})["run_id"]);
  WaitAllTerminal(c, ids, 180s);
  double drain_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - resumed).count();

  Tally t = Count(c, ids.size());
  Report("broker-down",
         "broker stopped 10 s; " + std::to_string(during) + " triggers answered 202 meanwhile (outbox held " +
             std::to_string(backlog) + ", " + std::to_string(pending) + " runs PENDING); all done " +
             std::to_string(drain_s).substr(0, 5) + " s after the broker came back",
         t);
  EXPECT_GT(during, 0u);
  EXPECT_GT(backlog, 0u) << "the requests made during the outage waited in the outbox";
  ExpectNothingLost(t, 5);
  // A row goes once its publish is confirmed and settled, which may come
  // after its run ended (a publish that failed in the outage is retried).
  EXPECT_TRUE(WaitUntil([&] { return Num(c.Query("SELECT count(*) FROM outbox")) == 0; }, 30s))
      << "the outbox drained: " << Num(c.Query("SELECT count(*) FROM outbox")) << " rows left";
}

TEST_F(FaultTest, RunsAcceptedByAnApiKilledBeforePublishingAreRunByTheConsumersRelay) {
  cluster_ = std::make_unique<Cluster>(SharedPg(), 1);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("api-kill9"), 20));
  // With the broker stopped, the accepted requests can only be in the
  // outbox when the API dies.
  c.kafka().Pause();
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  size_t backlog = Num(c.Query("SELECT count(*) FROM outbox"));
  c.api().Crash();  // SIGKILL right after the last 202
  c.kafka().Resume();
  auto killed = std::chrono::steady_clock::now();
  WaitAllTerminal(c, ids, 180s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();

  Tally t = Count(c, ids.size());
  Report("api-sigkill",
         "30 triggers accepted with the broker stopped (outbox held " + std::to_string(backlog) +
             "), api SIGKILLed, broker back, api not restarted; all done " + std::to_string(took).substr(0, 5) +
             " s later through the consumer's relay",
         t);
  EXPECT_EQ(backlog, 30u);
  ExpectNothingLost(t, 5);
}

TEST_F(FaultTest, PostgresRestartedImmediatelyWhileRunsAreInFlightDelaysThemButLosesNothing) {
  // This test restarts its own server.
  auto own = PgServer::Launch();
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  cluster_ = std::make_unique<Cluster>(own->get(), 1);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("pgrestart"), 1500));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  for (const auto& id : ids) {
    WaitForStepRow(c.api(), id, [](const json& r) { return r["step_id"] == "s2" && r["status"] == "RUNNING"; }, 30s);
  }
  size_t in_flight = CountRunning(c);
  ASSERT_TRUE((*own)->Restart(/*immediate=*/true).ok());  // pg_ctl restart -m immediate
  auto restarted = std::chrono::steady_clock::now();
  WaitAllTerminal(c, ids, 120s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count();

  Tally t = Count(c, ids.size());
  Report("pg-restart",
         "PostgreSQL restarted (-m immediate) with " + std::to_string(in_flight) +
             " runs RUNNING mid-step; all done " + std::to_string(took).substr(0, 5) + " s later",
         t);
  ExpectNothingLost(t, 5);
  EXPECT_TRUE(c.consumer(0).Alive());
  EXPECT_EQ(c.api().Get("/runs/" + ids[0]).status, 200) << "the API reconnects too";
  cluster_.reset();  // before the server it uses goes away
}

// The broker stalls while a consumer waits for its JoinGroup answer (the
// mock drops that answer): the join is retried after max.poll.interval.ms
// (60 s, kafka_config.cc; librdkafka's default would wait 5 minutes).
TEST_F(FaultTest, AConsumerWhoseGroupJoinIsCutByABrokerStallRecovers) {
  cluster_ = std::make_unique<Cluster>(SharedPg(), 1);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("join-stall"), 20));
  c.kafka().Pause();  // the consumer has just sent its JoinGroup
  std::this_thread::sleep_for(10s);
  c.kafka().Resume();
  auto resumed = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  WaitAllTerminal(c, ids, 150s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - resumed).count();
  Tally t = Count(c, ids.size());
  Report("join-stall",
         "broker stopped 10 s during the consumer's group join; 10 runs done " + std::to_string(took).substr(0, 5) +
             " s after it came back",
         t);
  ExpectNothingLost(t, 5);
}

// Runs whose request is gone: one PENDING whose message was lost, one
// RUNNING whose executor died and whose message will not come back (both
// written straight into the database, as those faults leave them). The
// sweepers of api and consumer dispatch them again after --stranded-after.
TEST_F(FaultTest, RunsWhoseRequestWasLostArePickedUpAgainByTheSweeper) {
  Cluster::Options o;
  o.api_args = {"--stranded-after", "2", "--sweep-interval", "0.5"};
  o.consumer_args = {"--stranded-after", "2", "--sweep-interval", "0.5"};
  cluster_ = std::make_unique<Cluster>(SharedPg(), o);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), FiveSteps(UniqueName("stranded"), 20));
  std::string model = StartRun(c.api(), wf["workflow_id"], {{"i", 0}})["run_id"];
  WaitAllTerminal(c, {model}, 60s);

  const std::string now = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
  c.Query("INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, created_at, updated_at) "
          "SELECT 'run-lost-request', workflow_id, workflow_version, 'PENDING', input, " + now + ", " + now +
          " FROM workflow_runs WHERE id = '" + model + "' RETURNING id");
  // The dead executor had completed s1 and was calling s2. One PQexec, so
  // one transaction: the sweeper never sees the run without its steps.
  c.Query("INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, created_at, updated_at, "
          "started_at, lease_owner, lease_token, lease_expires_at) "
          "SELECT 'run-dead-executor', workflow_id, workflow_version, 'RUNNING', input, " + now + ", " + now +
          ", " + now + ", 'gone-host:1:deadbeef', 7, " + now + " - 1000 FROM workflow_runs WHERE id = '" + model +
          "'; "
          "INSERT INTO step_executions (run_id, step_id, agent_name, attempt, status, input, output, started_at, "
          "completed_at) VALUES ('run-dead-executor', 's1', 'echo', 1, 'COMPLETED', '{}', '{\"echo\": {\"i\": 0}}', " +
          now + ", " + now + "), ('run-dead-executor', 's2', 'sleep', 1, 'RUNNING', '{}', NULL, " + now +
          ", NULL) RETURNING id");
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> ids = {"run-lost-request", "run-dead-executor"};
  WaitAllTerminal(c, ids, 60s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& id : ids) EXPECT_EQ(c.RunStatus(id), "COMPLETED") << id;
  auto s1 = c.Query("SELECT count(*) FROM step_executions WHERE run_id = 'run-dead-executor' AND step_id = 's1'");
  EXPECT_EQ(s1[0][0], "1") << "the completed step was not called again";
  auto s2 = c.Query("SELECT status, error_message FROM step_executions WHERE run_id = 'run-dead-executor' AND "
                    "step_id = 's2' ORDER BY attempt");
  ASSERT_EQ(s2.size(), 2u);
  EXPECT_EQ(s2[0][0], "FAILED");
  EXPECT_NE(s2[0][1].find("interrupted"), std::string::npos);
  size_t redispatched = 0;
  for (const std::string& log : {ReadFile(c.api().stderr_path()), ReadFile(c.consumer(0).stderr_path())}) {
    for (size_t pos = 0; (pos = log.find("dispatched again", pos)) != std::string::npos; ++pos) ++redispatched;
  }
  std::printf("[fault] stranded: a PENDING run without a request and a RUNNING run of a dead executor; both "
              "COMPLETED %.1f s later; %zu re-dispatches logged\n",
              took, redispatched);
  EXPECT_GE(redispatched, 2u);
}

}  // namespace
}  // namespace af::e2e
