// The Kafka agent transport end to end, every box a real process on
// loopback: PostgreSQL, the Kafka test broker, `agentflow api`, `agentflow
// consumer`, the demo agents (HTTP) and `agentflow bridge` serving some of
// them as kafka agents. `ctest -L distributed`.
#include <gtest/gtest.h>

#include "distributed/cluster.h"
#include "e2e/harness.h"
#include "support/kafka_mock.h"
#include "support/prom_text.h"
#include "support/pg_server.h"

namespace af::e2e {
namespace {

using namespace std::chrono_literals;
using test::PgServer;

// PostgreSQL + broker + api + one consumer + demo agents (HTTP, registered
// through the API) + a bridge serving two kafka agents:
//   shout → the demo agent `upper`, nap → the demo agent `sleep`.
class BridgeCluster {
 public:
  // `register_agents`: the bridge registers its agents in the API's registry
  // (--register) instead of the test doing it.
  explicit BridgeCluster(bool register_agents) {
    auto pg = PgServer::Shared();
    Require(pg.ok(), "PostgreSQL: " + pg.status().ToString());
    pg_ = *pg;
    auto db = pg_->NewDatabase();
    Require(db.ok(), "database: " + db.status().ToString());
    db_url_ = *db;
    db_name_ = db_url_.substr(db_url_.rfind('/') + 1);
    auto kafka = KafkaMock::Start();
    Require(kafka.ok(), "kafka mock: " + kafka.status().ToString());
    kafka_ = std::move(kafka).value();
    EnvOverrides env = {{"DATABASE_URL", db_url_},
                        {"KAFKA_BROKERS", kafka_->brokers()},
                        {"KAFKA_GROUP_ID", UniqueName("group")},
                        {"AGENT_REGISTRY_URL", std::nullopt}};

    api_ = StartService("api", {"api"}, env);
    agents_ = std::make_unique<DemoAgents>(dir_.path().string());
    agents_->Start(api_->url());
    consumer_ = StartService("consumer", {"consumer", "--grace-period", "5"}, env);

    std::vector<std::string> bridge = {"bridge",
                                       "--agent",
                                       "shout=" + agents_->url() + "/agents/upper",
                                       "--agent",
                                       "nap=" + agents_->url() + "/agents/sleep",
                                       "--agent",
                                       "look=" + agents_->url() + "/agents/echo",
                                       "--grace-period",
                                       "2"};
    if (register_agents) {
      bridge.insert(bridge.end(), {"--registry-url", api_->url(), "--register", "--heartbeat-interval", "1"});
    }
    bridge_ = StartService("bridge", bridge, {{"KAFKA_BROKERS", kafka_->brokers()}});
  }

  ~BridgeCluster() {
    bridge_.reset();
    consumer_.reset();
    if (agents_) agents_->Stop();
    api_.reset();
  }

  Server& api() { return *api_; }
  Server& bridge() { return *bridge_; }

  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    auto rows = pg_->Query(db_name_, sql);
    Require(rows.ok(), "query failed: " + rows.status().ToString() + "\n" + sql);
    return *rows;
  }

  // The bridge's /healthz document.
  json BridgeHealth() {
    HttpResponse r = Fetch("GET", bridge_->url() + "/healthz", "", {}, 5s);
    return r.status == 200 ? r.body_json : json();
  }

  std::string Logs() const { return LogsIn(dir_.path()); }

 private:
  std::unique_ptr<Server> StartService(const std::string& name, std::vector<std::string> command,
                                       const EnvOverrides& env) {
    Server::Options o;
    o.log_dir = dir_.path().string();
    o.name = name;
    o.command = std::move(command);
    o.command.insert(o.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
    o.env = env;
    auto s = std::make_unique<Server>(o);
    s->Start();
    return s;
  }

  PgServer* pg_ = nullptr;
  TempDir dir_;
  std::string db_url_, db_name_;
  std::unique_ptr<KafkaMock> kafka_;
  std::unique_ptr<Server> api_;
  std::unique_ptr<DemoAgents> agents_;
  std::unique_ptr<Server> consumer_;
  std::unique_ptr<Server> bridge_;
};

class BridgeDistributedTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << "==== logs ====\n" << cluster_->Logs();
  }
  BridgeCluster& Make(bool register_agents) {
    cluster_ = std::make_unique<BridgeCluster>(register_agents);
    return *cluster_;
  }
  std::unique_ptr<BridgeCluster> cluster_;
};

TEST_F(BridgeDistributedTest, WorkflowWithAnHttpAndAKafkaAgentCompletes) {
  BridgeCluster& c = Make(/*register_agents=*/false);
  HttpResponse reg =
      c.api().Post("/agents", {{"name", "shout"}, {"transport", "kafka"}, {"topic", "agent.shout.requests"}});
  ASSERT_EQ(reg.status, 201) << reg.Describe();
  EXPECT_EQ(reg.body_json["transport"], "kafka");

  json wf = CreateWorkflow(c.api(), Plan(UniqueName("mixed"), json::parse(R"([
      {"id": "fetch", "agent": "echo", "input": {"text": "${input.topic}"}},
      {"id": "shout", "agent": "shout", "input": {"text": "${steps.fetch.output.echo.text}"}, "timeout_ms": 60000}])")));
  std::string id = StartRun(c.api(), wf["workflow_id"], {{"topic", "hello kafka"}})["run_id"];
  json done = WaitRunTerminal(c.api(), id, 120s);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  EXPECT_EQ(done["output"]["shout"], json({{"text", "HELLO KAFKA"}}));
  EXPECT_EQ(done["output"]["fetch"], json({{"echo", {{"text", "hello kafka"}}}}));

  auto rows = c.Query("SELECT step_id, agent_name, attempt, status, output FROM step_executions WHERE run_id = '" + id +
                      "' ORDER BY started_at, id");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][0], "shout");
  EXPECT_EQ(rows[1][1], "shout");
  EXPECT_EQ(rows[1][2], "1");
  EXPECT_EQ(rows[1][3], "COMPLETED");
  // It went through the bridge (the HTTP agent `upper` is not registered as
  // `shout`). The bridge counts a reply once its write is confirmed, which may
  // come after the run completed; a rebalance while its consumers join may
  // have it answer a request twice.
  EXPECT_TRUE(WaitUntil([&] { return c.BridgeHealth().value("replied", 0) >= 1; }, 30s)) << c.BridgeHealth().dump();
}

TEST_F(BridgeDistributedTest, BridgeKilledMidCallAndRestartedTheRunCompletes) {
  BridgeCluster& c = Make(/*register_agents=*/true);
  // The bridge registers its agents itself (--register).
  ASSERT_TRUE(WaitUntil([&] { return c.api().Get("/agents/nap").status == 200; }, 30s));
  json nap = c.api().Get("/agents/nap").body_json;
  EXPECT_EQ(nap["transport"], "kafka");
  EXPECT_EQ(nap["topic"], "agent.nap.requests");

  json wf = CreateWorkflow(c.api(), Plan(UniqueName("bridgecrash"), json::parse(R"([
      {"id": "one", "agent": "echo", "input": {"n": 1}},
      {"id": "nap", "agent": "nap", "input": {"ms": 3000, "count_calls": true}, "timeout_ms": 90000},
      {"id": "three", "agent": "echo", "input": {"slept": "${steps.nap.output.slept_ms}"}}])")));
  std::string id = StartRun(c.api(), wf["workflow_id"], json::object())["run_id"];
  // The bridge is calling the HTTP sleep agent for the kafka step…
  ASSERT_TRUE(WaitUntil([&] { return c.BridgeHealth().value("in_flight", json::object()).value("nap", 0) == 1; },
                        90s))
      << c.BridgeHealth().dump();
  c.bridge().Crash();  // …when it is killed with SIGKILL
  c.bridge().Restart();

  json done = WaitRunTerminal(c.api(), id, 120s);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  auto rows = c.Query("SELECT attempt, status, output FROM step_executions WHERE run_id = '" + id +
                      "' AND step_id = 'nap' ORDER BY attempt");
  ASSERT_EQ(rows.size(), 1u) << "the executor kept waiting for the same attempt; nothing failed";
  EXPECT_EQ(rows[0][1], "COMPLETED");
  json out = json::parse(rows[0][2]);
  // The request was not lost: the restarted bridge got it again and called the
  // agent a second time, with the same Idempotency-Key.
  EXPECT_EQ(out["idempotency_key"], id + "/nap");
  EXPECT_EQ(out["calls"], 2) << out.dump();
  EXPECT_EQ(done["output"]["three"], json({{"echo", {{"slept", 3000}}}}));
}

TEST_F(BridgeDistributedTest, TheRunsTraceparentCrossesKafkaAndTheBridgeToTheAgentAndTheBridgeIsObservable) {
  BridgeCluster& c = Make(/*register_agents=*/false);
  HttpResponse reg =
      c.api().Post("/agents", {{"name", "look"}, {"transport", "kafka"}, {"topic", "agent.look.requests"}});
  ASSERT_EQ(reg.status, 201) << reg.Describe();
  json wf = CreateWorkflow(c.api(), Plan(UniqueName("tracedkafka"), json::parse(R"([
      {"id": "look", "agent": "look", "input": {"echo_headers": ["traceparent"]}, "timeout_ms": 60000}])")));
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  HttpResponse r = c.api().Post("/workflows/" + wf["workflow_id"].get<std::string>() + "/runs",
                                {{"input", json::object()}}, {{"traceparent", "00-" + trace_id + "-00f067aa0ba902b7-01"}});
  ASSERT_EQ(r.status, 202) << r.Describe();
  json done = WaitRunTerminal(c.api(), r.body_json["run_id"], 120s);
  ASSERT_EQ(done["status"], "COMPLETED") << done.dump();
  json seen = done["output"]["look"]["headers"]["traceparent"];
  ASSERT_TRUE(seen.is_string()) << done.dump();
  EXPECT_EQ(seen.get<std::string>().substr(0, 36), "00-" + trace_id + "-") << seen;

  // The bridge's health port: liveness with its counters, readiness, metrics.
  // The bridge counts a reply, and ends the call, once the reply's write is
  // confirmed, which may come after the run completed.
  EXPECT_TRUE(WaitUntil(
      [&] {
        json h = c.BridgeHealth();
        return h.value("replied", 0) >= 1 && h.value("in_flight", json::object()).value("look", 0) == 0;
      },
      30s))
      << c.BridgeHealth().dump();
  HttpResponse ready = Fetch("GET", c.bridge().url() + "/readyz", "", {}, 15s);
  EXPECT_EQ(ready.status, 200) << ready.Describe();
  EXPECT_EQ(ready.body_json["checks"], json({{"kafka", "ok"}})) << ready.body;
  HttpResponse m = Fetch("GET", c.bridge().url() + "/metrics");
  ASSERT_EQ(m.status, 200) << m.Describe();
  auto page = test::ParsePromText(m.body);
  ASSERT_TRUE(page.ok()) << page.status().ToString() << "\n" << m.body;
  // At least once (a rebalance may deliver the request again), and every
  // request taken was answered.
  EXPECT_GE(page->Value("agentflow_bridge_requests_total"), 1) << m.body;
  EXPECT_EQ(page->Value("agentflow_bridge_replies_total"), page->Value("agentflow_bridge_requests_total")) << m.body;
  EXPECT_EQ(page->Value("agentflow_bridge_calls_in_flight", {{"agent", "look"}}), 0) << m.body;
  EXPECT_EQ(page->Value("agentflow_bridge_requests_dropped_total", {{"reason", "malformed"}}), 0) << m.body;
}

}  // namespace
}  // namespace af::e2e
