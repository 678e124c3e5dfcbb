// The seed's topology, end to end: PostgreSQL, the Kafka test broker
// (librdkafka's mock cluster), `agentflow api`, one or more `agentflow
// consumer` processes and the demo agents, each a real process on loopback.
// Assertions read workflow_runs and step_executions in PostgreSQL directly,
// as the seed's integration test does. `ctest -L distributed`.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "distributed/cluster.h"
#include "e2e/harness.h"
#include "http/http.h"
#include "http/sse.h"
#include "queue/queue.h"
#include "support/kafka_mock.h"
#include "support/pg_server.h"
#include "support/prom_text.h"

namespace af::e2e {
namespace {

using namespace std::chrono_literals;
using test::PgServer;

class DistributedTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << "==== logs ====\n" << cluster_->Logs();
  }
  Cluster& Make(int consumers = 1) {
    cluster_ = std::make_unique<Cluster>(SharedPg(), consumers);
    return *cluster_;
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(DistributedTest, SeedIntegrationRunIsConsumedExecutedAndRecorded) {
  Cluster& c = Make();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("seed"), json::parse(R"([
      {"id": "fetch", "agent": "echo", "input": {"text": "${input.topic}"}},
      {"id": "wait", "agent": "sleep", "input": {"ms": 400}},
      {"id": "shout", "agent": "upper", "input": {"text": "${steps.fetch.output.echo.text}"}}])")));
  json run = StartRun(c.api(), wf["workflow_id"], {{"topic", "hello kafka"}});
  const std::string id = run["run_id"];
  EXPECT_EQ(run["status"], "PENDING");
  // Consumed and executed: RUNNING in workflow_runs while the sleep step runs…
  EXPECT_TRUE(WaitUntil([&] { return c.RunStatus(id) == "RUNNING"; }, 30s, 10ms)) << c.RunStatus(id);
  // …then COMPLETED.
  json done = WaitRunTerminal(c.api(), id, 60s);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  auto rows = c.Query("SELECT status, output, started_at IS NOT NULL, completed_at IS NOT NULL FROM workflow_runs "
                      "WHERE id = '" + id + "'");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "COMPLETED");
  EXPECT_EQ(json::parse(rows[0][1]), json({{"fetch", {{"echo", {{"text", "hello kafka"}}}}},
                                           {"wait", {{"slept_ms", 400}}},
                                           {"shout", {{"text", "HELLO KAFKA"}}}}));
  EXPECT_EQ(rows[0][2], "t");
  EXPECT_EQ(rows[0][3], "t");
  auto steps = c.Query("SELECT step_id, agent_name, attempt, status, input, output, started_at, completed_at "
                       "FROM step_executions WHERE run_id = '" + id + "' ORDER BY started_at, id");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0][0], "fetch");
  EXPECT_EQ(steps[1][0], "wait");
  EXPECT_EQ(steps[2][0], "shout");
  for (const auto& s : steps) {
    EXPECT_EQ(s[2], "1");
    EXPECT_EQ(s[3], "COMPLETED");
    EXPECT_FALSE(s[4].empty());
    EXPECT_FALSE(s[5].empty());
    EXPECT_LE(std::stoll(s[6]), std::stoll(s[7]));
  }
  EXPECT_EQ(json::parse(steps[2][4]), json({{"text", "hello kafka"}}));
  EXPECT_EQ(json::parse(steps[2][5]), json({{"text", "HELLO KAFKA"}}));
}

// A ?wait through the api hears of a run the consumer ended as the end
// commits: the consumer's NOTIFY (--notify-run-ends) wakes the api's run
// watcher. The watcher's poll, the wait's own re-read and the wait itself
// are all an hour: only the notification can answer before the client
// gives up (120 s).
TEST_F(DistributedTest, AWaitThroughTheApiHearsARunEndFromItsNotification) {
  Cluster::Options o;
  o.api_args = {"--run-end-poll-ms", "3600000", "--wait-reread-ms", "3600000", "--notify-run-ends"};
  o.consumer_args = {"--notify-run-ends"};
  cluster_ = std::make_unique<Cluster>(SharedPg(), o);
  Cluster& c = *cluster_;
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("notify"), json::parse(R"([
      {"id": "nap", "agent": "sleep", "input": {"ms": 300}},
      {"id": "say", "agent": "echo", "input": {"text": "done"}}])")));
  for (int i = 0; i < 2; ++i) {  // the second: the listener goes on after its first wake
    auto r =
        Fetch("POST", c.api().url() + "/api/v1/workflows/" + wf["workflow_id"].get<std::string>() + "/runs?wait=3600",
              R"({"input": {}})", {}, 120s);
    ASSERT_EQ(r.status, 200) << "no answer before the client's timeout: " << r.Describe();
    json run = json::parse(r.body);
    EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
    EXPECT_EQ(c.RunStatus(run["run_id"]), "COMPLETED");
  }
}

// The api process has no feed of the consumers' writes: a run's event
// stream finds them by reading PostgreSQL (the run watcher's step progress
// and status reads), and still brings every change in order and ends with
// the run. The api also serves the web console.
TEST_F(DistributedTest, TheApiStreamsARunsEventsAcrossProcessesAndServesTheConsole) {
  Cluster& c = Make();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("events"), json::parse(R"([
      {"id": "fetch", "agent": "echo", "input": {"text": "${input.topic}"}},
      {"id": "wait", "agent": "sleep", "input": {"ms": 1500}}])")));
  json run = StartRun(c.api(), wf["workflow_id"], {{"topic", "streamed"}});
  const std::string id = run["run_id"];
  http::ClientRequest req;
  req.url = c.api().api() + "/runs/" + id + "/events";
  req.timeout = 30s;
  http::SseParser parser;
  std::vector<http::SseEvent> events;
  auto res = http::StreamSync(req, [&](std::string_view data) {
    for (auto& e : parser.Feed(data)) events.push_back(e);
    return true;
  });
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_EQ(res->status, 200);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "end");
  EXPECT_EQ(json::parse(events.back().data)["status"], "COMPLETED");
  std::map<std::string, std::vector<std::string>> step_statuses;
  std::vector<std::string> run_statuses;
  for (const auto& e : events) {
    json doc = json::parse(e.data);
    if (e.event == "step") step_statuses[doc["step_id"]].push_back(doc["status"]);
    if (e.event == "run") run_statuses.push_back(doc["status"]);
  }
  EXPECT_EQ(run_statuses.back(), "COMPLETED");
  // The 1.5 s step is seen running (the watcher reads every ~10 ms; the stream's
  // own re-read, every 2 s, could miss it), then completed.
  EXPECT_EQ(step_statuses["wait"], (std::vector<std::string>{"RUNNING", "COMPLETED"}));
  EXPECT_EQ(step_statuses["fetch"].back(), "COMPLETED");

  auto page = http::FetchSync(http::ClientRequest{"GET", c.api().url() + "/", {}, "", 10s});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/ui/app.js"), std::string::npos);
}

TEST_F(DistributedTest, FailingAgentFailsTheRunWithItsErrorStored) {
  Cluster& c = Make();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("fail"), json::parse(R"([
      {"id": "boom", "agent": "fail", "retry": {"max_attempts": 2, "initial_backoff_ms": 10}}])")));
  std::string id = StartRun(c.api(), wf["workflow_id"], json::object())["run_id"];
  json done = WaitRunTerminal(c.api(), id, 60s);
  EXPECT_EQ(done["status"], "FAILED");
  auto rows = c.Query("SELECT error_message FROM workflow_runs WHERE id = '" + id + "'");
  EXPECT_NE(rows[0][0].find("step 'boom' (agent 'fail') failed after 2 attempts: HTTP 500"), std::string::npos)
      << rows[0][0];
  auto attempts = c.Query("SELECT attempt, status FROM step_executions WHERE run_id = '" + id + "' ORDER BY attempt");
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[1][1], "FAILED");

  // A malformed message on the topic is set aside; the consumer keeps going.
  QueueOptions qo;
  qo.kafka_brokers = c.kafka().brokers();
  auto queue = OpenQueue(qo);
  ASSERT_TRUE(queue.ok()) << queue.status().ToString();
  ASSERT_TRUE((*queue)->Publish(kExecutionTopic, "junk", "{this is not json").ok());
  ASSERT_TRUE((*queue)->Publish(kExecutionTopic, "run-nope", R"({"run_id": 5})").ok());
  json wf2 = CreateWorkflow(c.api(), Plan(UniqueName("after-junk"), json::parse(R"([{"id": "a", "agent": "echo"}])")));
  std::string id2 = StartRun(c.api(), wf2["workflow_id"], json::object())["run_id"];
  EXPECT_EQ(WaitRunTerminal(c.api(), id2, 60s)["status"], "COMPLETED");
  EXPECT_TRUE(c.consumer(0).Alive());
  // The junk may sit on another partition than the run's request, read later.
  EXPECT_TRUE(WaitUntil(
      [&] { return ReadFile(c.consumer(0).stderr_path()).find("malformed message") != std::string::npos; }, 30s));
}

TEST_F(DistributedTest, CancellationThroughTheApiEndsALongRunCancelled) {
  Cluster& c = Make();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("cancel"), json::parse(R"([
      {"id": "nap", "agent": "sleep", "input": {"ms": 30000}}, {"id": "after", "agent": "echo"}])")));
  std::string id = StartRun(c.api(), wf["workflow_id"], json::object())["run_id"];
  WaitForStepRow(c.api(), id, [](const json& r) { return r["step_id"] == "nap" && r["status"] == "RUNNING"; }, 30s);
  HttpResponse r = c.api().Post("/runs/" + id + "/cancel", {{"reason", "too slow"}, {"cancelled_by", "ops"}});
  ASSERT_EQ(r.status, 202) << r.Describe();
  json done = WaitRunTerminal(c.api(), id, 10s);
  EXPECT_EQ(done["status"], "CANCELLED");
  auto rows = c.Query("SELECT cancelled_by, cancel_reason, error_message FROM workflow_runs WHERE id = '" + id + "'");
  EXPECT_EQ(rows[0][0], "ops");
  EXPECT_EQ(rows[0][1], "too slow");
  auto steps = c.Query("SELECT step_id, status FROM step_executions WHERE run_id = '" + id + "'");
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0][1], "CANCELLED");
}

TEST_F(DistributedTest, RunsTriggeredWithoutAConsumerRunOnceOneStarts) {
  Cluster& c = Make(/*consumers=*/0);
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("queued"), json::parse(R"([{"id": "a", "agent": "echo"}])")));
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  std::this_thread::sleep_for(500ms);  // nothing may run without a consumer
  for (const auto& id : ids) EXPECT_EQ(c.RunStatus(id), "PENDING");
  c.AddConsumer();
  WaitAllTerminal(c, ids, 60s);
  for (const auto& id : ids) EXPECT_EQ(c.RunStatus(id), "COMPLETED");
}

TEST_F(DistributedTest, ConsumerKilledMidRunLosesNothingAndDoesNotRecallCompletedSteps) {
  Cluster& c = Make();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("crash"), json::parse(R"([
      {"id": "one", "agent": "echo", "input": {"n": "${input.n}"}},
      {"id": "two", "agent": "sleep", "input": {"ms": 3000, "count_calls": true}},
      {"id": "three", "agent": "echo", "input": {"prev": "${steps.one.output}"}}])")));
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"n", i}})["run_id"]);
  for (const auto& id : ids) {
    WaitForStepRow(c.api(), id, [](const json& r) { return r["step_id"] == "two" && r["status"] == "RUNNING"; }, 30s);
  }
  c.consumer(0).Crash();  // SIGKILL mid-step
  c.consumer(0).Restart();
  WaitAllTerminal(c, ids, 90s);
  for (const auto& id : ids) {
    EXPECT_EQ(c.RunStatus(id), "COMPLETED") << id;
    auto one = c.Query("SELECT count(*) FROM step_executions WHERE run_id = '" + id + "' AND step_id = 'one'");
    EXPECT_EQ(one[0][0], "1") << "a COMPLETED step must not be called again";
    auto two = c.Query("SELECT status, error_message, output FROM step_executions WHERE run_id = '" + id +
                       "' AND step_id = 'two' ORDER BY attempt");
    ASSERT_EQ(two.size(), 2u);
    EXPECT_EQ(two[0][0], "FAILED");
    EXPECT_NE(two[0][1].find("interrupted"), std::string::npos);
    EXPECT_EQ(two[1][0], "COMPLETED");
    // The call in flight at the kill was made again, with the same Idempotency-Key.
    json out = json::parse(two[1][2]);
    EXPECT_EQ(out["idempotency_key"], id + "/two");
    EXPECT_EQ(out["calls"], 2) << out.dump();
  }
}

TEST_F(DistributedTest, TwoConsumersInOneGroupSplitTwoHundredRuns) {
  Cluster& c = Make(/*consumers=*/2);
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("split"), json::parse(R"([
      {"id": "a", "agent": "echo", "input": {"i": "${input.i}"}},
      {"id": "b", "agent": "sleep", "input": {"ms": 20}},
      {"id": "c", "agent": "upper", "input": {"text": "run ${input.i}"}}])")));
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  WaitAllTerminal(c, ids, 120s);
  auto statuses = c.Query("SELECT status, count(*) FROM workflow_runs GROUP BY status");
  ASSERT_EQ(statuses.size(), 1u);
  EXPECT_EQ(statuses[0][0], "COMPLETED");
  EXPECT_EQ(statuses[0][1], "200");
  // Each step of each run COMPLETED exactly once, and no two attempts of a
  // step overlapped in time (one executor at a time).
  auto dup = c.Query("SELECT run_id, step_id, count(*) FROM step_executions WHERE status = 'COMPLETED' "
                     "GROUP BY run_id, step_id HAVING count(*) <> 1");
  EXPECT_TRUE(dup.empty()) << dup.size() << " steps completed more than once";
  auto overlap = c.Query(
      "SELECT a.run_id FROM step_executions a JOIN step_executions b ON a.run_id = b.run_id AND a.step_id = "
      "b.step_id AND a.id < b.id WHERE b.started_at < coalesce(a.completed_at, b.started_at + 1)");
  EXPECT_TRUE(overlap.empty()) << overlap.size() << " overlapping attempts";
  // Both consumers did part of the work.
  for (size_t i = 0; i < 2; ++i) {
    std::string log = ReadFile(c.consumer(i).stderr_path());
    size_t started = 0;
    for (size_t pos = 0; (pos = log.find("run started", pos)) != std::string::npos; ++pos) ++started;
    EXPECT_GT(started, 0u) << "consumer " << i << " ran nothing";
  }
}

TEST_F(DistributedTest, CancellationReachesRunsOnWhicheverConsumerRunsThem) {
  Cluster& c = Make(/*consumers=*/2);
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("cancel2"), json::parse(R"([
      {"id": "nap", "agent": "sleep", "input": {"ms": 60000}}])")));
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(StartRun(c.api(), wf["workflow_id"], {{"i", i}})["run_id"]);
  for (const auto& id : ids) {
    WaitForStepRow(c.api(), id, [](const json& r) { return r["status"] == "RUNNING"; }, 30s);
  }
  for (const auto& id : ids) {
    ASSERT_EQ(c.api().Post("/runs/" + id + "/cancel", {{"reason", "stop"}}).status, 202);
  }
  WaitAllTerminal(c, ids, 20s);
  for (const auto& id : ids) EXPECT_EQ(c.RunStatus(id), "CANCELLED") << id;
}

TEST_F(DistributedTest, SigtermFinishesShortRunsAndHandsLongOnesToAnotherConsumer) {
  Cluster& c = Make(/*consumers=*/1);
  json quick = CreateWorkflow(c.api(), Plan(UniqueName("quick"), json::parse(R"([
      {"id": "s", "agent": "sleep", "input": {"ms": 1000}}, {"id": "t", "agent": "echo"}])")));
  json slow = CreateWorkflow(c.api(), Plan(UniqueName("slow"), json::parse(R"([
      {"id": "first", "agent": "echo"}, {"id": "s", "agent": "sleep", "input": {"ms": 8000}}])")));
  std::string q = StartRun(c.api(), quick["workflow_id"], json::object())["run_id"];
  std::string l = StartRun(c.api(), slow["workflow_id"], json::object())["run_id"];
  WaitForStepRow(c.api(), q, [](const json& r) { return r["step_id"] == "s" && r["status"] == "RUNNING"; }, 30s);
  WaitForStepRow(c.api(), l, [](const json& r) { return r["step_id"] == "s" && r["status"] == "RUNNING"; }, 30s);
  // The grace period (5 s) covers the quick run but not the slow one.
  int code = c.consumer(0).Stop();
  EXPECT_EQ(code, 0);
  EXPECT_EQ(c.RunStatus(q), "COMPLETED") << "a run that fits in the grace period finishes before exit";
  EXPECT_EQ(c.RunStatus(l), "RUNNING") << "the slow run was handed back, not failed";
  c.AddConsumer();
  WaitAllTerminal(c, {l}, 60s);
  EXPECT_EQ(c.RunStatus(l), "COMPLETED");
  auto first = c.Query("SELECT count(*) FROM step_executions WHERE run_id = '" + l + "' AND step_id = 'first'");
  EXPECT_EQ(first[0][0], "1");
  auto quick_rows = c.Query("SELECT count(*) FROM step_executions WHERE run_id = '" + q + "'");
  EXPECT_EQ(quick_rows[0][0], "2") << "the finished run was not executed again";
}

TEST_F(DistributedTest, MigrateIsIdempotentAndSafeWhenRunConcurrently) {
  PgServer* pg = SharedPg();
  auto db = pg->NewDatabase();
  ASSERT_TRUE(db.ok());
  TempDir dir;
  std::vector<std::unique_ptr<Process>> procs;
  for (int i = 0; i < 3; ++i) {
    procs.push_back(Process::Spawn({AgentflowBinary(), "migrate", "--database-url", *db},
                                   dir.File("migrate" + std::to_string(i) + ".log")));
  }
  for (size_t i = 0; i < procs.size(); ++i) {
    ASSERT_TRUE(procs[i]->WaitExit(60s));
    EXPECT_EQ(procs[i]->exit_code(), 0) << ReadFile(dir.File("migrate" + std::to_string(i) + ".log"));
  }
  CliResult again = RunCli({"migrate", "--database-url", *db}, dir);
  EXPECT_EQ(again.exit_code, 0) << again.Describe();
  std::string name = db->substr(db->rfind('/') + 1);
  auto tables = pg->Query(name, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                                "ORDER BY table_name");
  ASSERT_TRUE(tables.ok());
  std::set<std::string> names;
  for (auto& row : *tables) names.insert(row[0]);
  for (const char* t : {"workflows", "workflow_runs", "step_executions", "agents", "schema_migrations"}) {
    EXPECT_TRUE(names.count(t)) << t;
  }
  // Versions 1..n, each recorded once, whatever n is now.
  auto applied = pg->Query(name, "SELECT count(*), count(DISTINCT version), min(version), max(version) "
                                 "FROM schema_migrations");
  ASSERT_TRUE(applied.ok());
  const auto& row = (*applied)[0];
  EXPECT_GE(std::stoi(row[0]), 2);
  EXPECT_EQ(row[0], row[1]) << "each migration recorded once";
  EXPECT_EQ(row[2], "1");
  EXPECT_EQ(row[3], row[0]) << "no version skipped";
}

TEST_F(DistributedTest, StandaloneExecutorRecordsItsRunInPostgres) {
  Cluster& c = Make(/*consumers=*/0);
  TempDir dir;
  std::string plan = dir.Write("plan.json", Plan("standalone", json::parse(R"([
      {"id": "a", "agent": "echo", "input": {"x": "${input.x}"}},
      {"id": "b", "agent": "upper", "input": {"text": "${input.x}"}}])")).dump());
  // Agents come from the database (registered by the demo agents).
  CliResult r = RunCli({"--json", "executor", "--plan", plan, "--input", R"({"x": "pg"})"}, dir,
                       {{"DATABASE_URL", c.db_url()}});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  json run = json::parse(r.out);
  EXPECT_EQ(run["status"], "COMPLETED");
  EXPECT_EQ(run["output"]["b"], json({{"text", "PG"}}));
  EXPECT_EQ(c.RunStatus(run["run_id"]), "COMPLETED");
  auto steps = c.Query("SELECT count(*) FROM step_executions WHERE run_id = '" + run["run_id"].get<std::string>() + "'");
  EXPECT_EQ(steps[0][0], "2");
}

// Access control on the distributed API: keys made with `agentflow apikey
// create --database-url` before the api ever ran, checked by `agentflow api
// --auth required` against PostgreSQL.
TEST_F(DistributedTest, ApiWithAuthRequiredAcceptsOnlyKeysOfTheRightRole) {
  PgServer* pg = SharedPg();
  auto db = pg->NewDatabase();
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  auto kafka = KafkaMock::Start();
  ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
  TempDir dir;
  auto key_for = [&](const std::string& role) {
    CliResult r = RunCli({"--json", "apikey", "create", "--role", role, "--database-url", *db}, dir);
    Require(r.exit_code == 0, "apikey create: " + r.Describe());
    json j = json::parse(r.out, nullptr, false);
    Require(!j.is_discarded() && j.contains("key"), "no key printed: " + r.Describe());
    return j["key"].get<std::string>();
  };
  const std::string admin = key_for("admin"), op = key_for("operator"), viewer = key_for("viewer");

  Server::Options o;
  o.log_dir = dir.path().string();
  o.name = "api-auth";
  o.command = {"api", "--auth", "required"};
  o.command.insert(o.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
  o.env = {{"DATABASE_URL", *db}, {"KAFKA_BROKERS", (*kafka)->brokers()}};
  Server api(o);
  api.Start();
  auto call = [&](const std::string& method, const std::string& path, const std::string& key, const json& body) {
    Headers h;
    if (!key.empty()) h.emplace_back("Authorization", "Bearer " + key);
    return Fetch(method, api.api() + path, body.is_null() ? "" : body.dump(), h);
  };
  json plan = Plan(UniqueName("guarded"), json::parse(R"([{"id": "s", "agent": "echo"}])"));
  EXPECT_EQ(call("GET", "/workflows", "", nullptr).status, 401);
  EXPECT_EQ(call("GET", "/workflows", "af_0000000000000000_" + std::string(64, 'a'), nullptr).status, 401);
  EXPECT_EQ(call("GET", "/workflows", viewer, nullptr).status, 200);
  EXPECT_EQ(call("POST", "/workflows", viewer, plan).status, 403);
  EXPECT_EQ(call("POST", "/workflows", op, plan).status, 403);
  HttpResponse created = call("POST", "/workflows", admin, plan);
  ASSERT_EQ(created.status, 201) << created.Describe();
  const std::string runs = "/workflows/" + created.body_json["workflow_id"].get<std::string>() + "/runs";
  EXPECT_EQ(call("POST", runs, viewer, json{{"input", json::object()}}).status, 403);
  HttpResponse run = call("POST", runs, op, json{{"input", json::object()}});
  EXPECT_EQ(run.status, 202) << run.Describe();
  EXPECT_EQ(Fetch("GET", api.url() + "/healthz").status, 200) << "health stays open";
  std::string log = ReadFile(api.stderr_path());
  for (const std::string& k : {admin, op, viewer}) {
    EXPECT_EQ(log.find(k.substr(20)), std::string::npos) << "a key's secret is in the api's log";
  }
}

// ---- health, readiness, metrics --------------------------------------------

test::PromText Scrape(const std::string& base_url) {
  HttpResponse r = Fetch("GET", base_url + "/metrics", "", {}, 10s);
  Require(r.status == 200, "GET " + base_url + "/metrics: " + r.Describe());
  auto parsed = test::ParsePromText(r.body);
  Require(parsed.ok(), base_url + "/metrics does not parse: " + parsed.status().ToString() + "\n" + r.body);
  return *parsed;
}

int ReadyStatus(const std::string& base_url, json* body = nullptr) {
  HttpResponse r = Fetch("GET", base_url + "/readyz", "", {}, 15s);
  if (body != nullptr) *body = r.body_json;
  return r.status;
}

TEST_F(DistributedTest, ReadyzOfApiAndConsumerNamesTheDatabaseWhilePostgresIsStopped) {
  // This test stops its own server.
  auto own = PgServer::Launch();
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  cluster_ = std::make_unique<Cluster>(own->get(), 1);
  Cluster& c = *cluster_;
  const std::string api = c.api().url(), consumer = c.consumer(0).url();
  json body;
  for (const std::string& url : {api, consumer}) {
    EXPECT_EQ(Fetch("GET", url + "/healthz").status, 200) << url;
    EXPECT_EQ(ReadyStatus(url, &body), 200) << url << ": " << body.dump();
    EXPECT_EQ(body["checks"], json({{"database", "ok"}, {"kafka", "ok"}})) << url << ": " << body.dump();
  }

  ASSERT_TRUE((*own)->Stop(/*immediate=*/false).ok());
  for (const std::string& url : {api, consumer}) {
    EXPECT_TRUE(WaitUntil([&] { return ReadyStatus(url, &body) == 503; }, 30s, 100ms)) << url << ": " << body.dump();
    EXPECT_EQ(body["status"], "unavailable") << url;
    EXPECT_EQ(body["down"], json::array({"database"})) << url << ": " << body.dump();
    EXPECT_NE(body["checks"]["database"], "ok") << url;
    EXPECT_EQ(body["checks"]["kafka"], "ok") << url << ": only the database is down";
    EXPECT_EQ(Fetch("GET", url + "/healthz").status, 200) << url << ": liveness does not depend on the database";
  }

  ASSERT_TRUE((*own)->Start().ok());
  for (const std::string& url : {api, consumer}) {
    EXPECT_TRUE(WaitUntil([&] { return ReadyStatus(url, &body) == 200; }, 60s, 100ms)) << url << ": " << body.dump();
  }
  // And they work again.
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("pgback"), json::parse(R"([{"id": "a", "agent": "echo"}])")));
  json run = WaitRunTerminal(c.api(), StartRun(c.api(), wf["workflow_id"], json::object())["run_id"], 60s);
  EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
  cluster_.reset();  // before the server it uses goes away
}

TEST_F(DistributedTest, MetricsOfApiAndConsumerMoveWithTheRunsAndTraceparentReachesTheAgent) {
  Cluster& c = Make();
  test::PromText api_before = Scrape(c.api().url());
  test::PromText consumer_before = Scrape(c.consumer(0).url());
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("observed"), json::parse(R"([
      {"id": "look", "agent": "echo", "input": {"echo_headers": ["traceparent"]}},
      {"id": "shout", "agent": "upper", "input": {"text": "hi"}}])")));
  const std::string trace_id = "0af7651916cd43dd8448eb211c80319c";
  HttpResponse r = c.api().Post("/workflows/" + wf["workflow_id"].get<std::string>() + "/runs",
                                {{"input", json::object()}}, {{"traceparent", "00-" + trace_id + "-b7ad6b7169203331-01"}});
  ASSERT_EQ(r.status, 202) << r.Describe();
  const std::string id = r.body_json["run_id"];
  json done = WaitRunTerminal(c.api(), id, 60s);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  EXPECT_EQ(done["trace_id"], trace_id);
  auto stored = c.Query("SELECT traceparent FROM workflow_runs WHERE id = '" + id + "'");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0][0], "00-" + trace_id + "-b7ad6b7169203331-01");
  std::string seen = done["output"]["look"]["headers"]["traceparent"];
  EXPECT_EQ(seen.substr(0, 36), "00-" + trace_id + "-") << seen;

  test::PromText consumer_after, api_after;
  auto delta = [](const test::PromText& a, const test::PromText& b, const std::string& n, const test::PromLabels& l) {
    return b.Sum(n, l) - a.Sum(n, l);
  };
  // The relay counts a publish when the broker confirms it, which may come
  // after the consumer ran the request.
  auto published = [&] {
    return delta(api_before, api_after, "agentflow_outbox_published_total", {}) +
           delta(consumer_before, consumer_after, "agentflow_outbox_published_total", {});
  };
  bool settled = WaitUntil(
      [&] {
        consumer_after = Scrape(c.consumer(0).url());
        api_after = Scrape(c.api().url());
        return delta(consumer_before, consumer_after, "agentflow_runs_finished_total", {{"status", "COMPLETED"}}) ==
                   1 &&
               consumer_after.Value("agentflow_runs_in_flight") == 0 &&
               consumer_after.Value("agentflow_consumer_lag_messages", {{"topic", "workflow.execution.requests"}}) ==
                   0 &&
               published() >= 1;
      },
      30s, 100ms);
  EXPECT_TRUE(settled);
  EXPECT_EQ(delta(consumer_before, consumer_after, "agentflow_runs_started_total", {}), 1);
  EXPECT_EQ(delta(consumer_before, consumer_after, "agentflow_step_executions_total", {{"status", "COMPLETED"}}), 2);
  EXPECT_EQ(delta(consumer_before, consumer_after, "agentflow_step_duration_seconds_count", {{"agent", "upper"}}), 1);
  EXPECT_TRUE(consumer_after.Value("agentflow_consumer_lag_messages", {{"topic", "workflow.cancellation.requests"}})
                  .has_value())
      << "every subscribed topic is listed";
  EXPECT_EQ(delta(api_before, api_after, "agentflow_runs_created_total", {}), 1);
  EXPECT_EQ(delta(api_before, api_after, "agentflow_http_request_duration_seconds_count",
                  {{"method", "POST"}, {"route", "/api/v1/workflows/{id}/runs"}, {"status", "202"}}),
            1);
  EXPECT_FALSE(api_after.families.count("agentflow_runs_in_flight")) << "the API executes nothing";
  // The trigger went through the api's outbox relay; both processes report
  // the outbox (the consumer relays too).
  // (Usually the api's relay, kicked by the trigger; the consumer's may
  // claim it first.)
  EXPECT_EQ(published(), 1);
  for (const test::PromText* page : {&api_after, &consumer_after}) {
    EXPECT_TRUE(page->Value("agentflow_outbox_backlog_messages").has_value());
    EXPECT_TRUE(page->Value("agentflow_outbox_oldest_age_seconds").has_value());
    EXPECT_TRUE(page->Value("agentflow_runs_redispatched_total").has_value());
  }
  EXPECT_TRUE(consumer_after.Value("agentflow_consumer_dead_lettered_total").has_value());
}

}  // namespace
}  // namespace af::e2e
