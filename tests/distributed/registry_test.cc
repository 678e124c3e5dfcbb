// The Agent Registry service in the distributed topology: `agentflow
// registry` on PostgreSQL checking agents' health, and `agentflow consumer`
// resolving agents through AGENT_REGISTRY_URL. Real processes on loopback.
// `ctest -L distributed`.
#include <gtest/gtest.h>

#include "distributed/cluster.h"  // kKafkaTestProps
#include "e2e/harness.h"
#include "support/kafka_mock.h"
#include "support/pg_server.h"
#include "support/prom_text.h"

namespace af::e2e {
namespace {

using namespace std::chrono_literals;
using test::PgServer;

// PostgreSQL + broker + registry + api + one consumer that resolves agents
// through the registry + demo agents registered with the registry.
class RegistryCluster {
 public:
  RegistryCluster() {
    auto pg = PgServer::Shared();
    Require(pg.ok(), "PostgreSQL: " + pg.status().ToString());
    auto db = (*pg)->NewDatabase();
    Require(db.ok(), "database: " + db.status().ToString());
    auto kafka = KafkaMock::Start();
    Require(kafka.ok(), "kafka mock: " + kafka.status().ToString());
    kafka_ = std::move(kafka).value();
    EnvOverrides env = {
        {"DATABASE_URL", *db}, {"KAFKA_BROKERS", kafka_->brokers()}, {"KAFKA_GROUP_ID", UniqueName("group")}};

    Server::Options r;
    r.log_dir = dir_.path().string();
    r.name = "registry";
    r.command = {"registry", "--health-interval", "0.2", "--health-timeout", "1"};
    r.env = env;
    registry_ = std::make_unique<Server>(r);
    registry_->Start();
    env["AGENT_REGISTRY_URL"] = registry_->url();

    Server::Options a;
    a.log_dir = dir_.path().string();
    a.name = "api";
    a.command = {"api"};
    a.command.insert(a.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
    a.env = env;
    api_ = std::make_unique<Server>(a);
    api_->Start();

    Server::Options c;
    c.log_dir = dir_.path().string();
    c.name = "consumer";
    c.command = {"consumer"};
    c.command.insert(c.command.end(), kKafkaTestProps.begin(), kKafkaTestProps.end());
    c.env = env;
    consumer_ = std::make_unique<Server>(c);
    consumer_->Start();

    agents_ = std::make_unique<DemoAgents>(dir_.path().string());
    agents_->Start(registry_->url());
  }
  ~RegistryCluster() {
    if (consumer_) consumer_->Stop();
    if (agents_) agents_->Stop();
    if (api_) api_->Stop();
    if (registry_) registry_->Stop();
  }

  Server& registry() { return *registry_; }
  Server& api() { return *api_; }
  Server& consumer() { return *consumer_; }
  DemoAgents& agents() { return *agents_; }
  TempDir& dir() { return dir_; }

  std::string AgentHealth(const std::string& name) {
    HttpResponse r = registry_->Get("/agents/" + name);
    return r.status == 200 ? r.body_json.value("health", "") : "";
  }

  std::string Logs() const {
    std::string out;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
      if (entry.is_regular_file()) out += "---- " + entry.path().filename().string() + "\n" + Tail(entry.path().string(), 3000);
    }
    return out;
  }

 private:
  TempDir dir_;
  std::unique_ptr<KafkaMock> kafka_;
  std::unique_ptr<Server> registry_, api_, consumer_;
  std::unique_ptr<DemoAgents> agents_;
};

class RegistryServiceTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) std::cerr << "==== logs ====\n" << cluster_->Logs();
  }
  RegistryCluster& Make() {
    cluster_ = std::make_unique<RegistryCluster>();
    return *cluster_;
  }
  std::unique_ptr<RegistryCluster> cluster_;
};

TEST_F(RegistryServiceTest, ConsumerResolvesAgentsThroughTheRegistryAndAnUnknownOneFailsTheStepNamingIt) {
  RegistryCluster& c = Make();
  // The demo agents registered with the registry (which shares the database).
  ASSERT_TRUE(WaitUntil([&] { return c.AgentHealth("echo") == "healthy"; }, 20s)) << c.AgentHealth("echo");

  json ok = CreateWorkflow(c.api(), json::parse(R"({"name": "reg-ok", "steps": [
      {"id": "a", "agent": "echo", "input": {"x": "${input.x}"}}]})"));
  json run = WaitRunTerminal(c.api(), StartRun(c.api(), ok["workflow_id"], {{"x", 3}})["run_id"], 60s);
  EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
  EXPECT_EQ(run["output"]["a"]["echo"]["x"], 3);

  json wf = CreateWorkflow(c.api(), json::parse(R"({"name": "reg-ghost", "steps": [
      {"id": "first", "agent": "echo"}, {"id": "haunt", "agent": "ghost", "depends_on": ["first"]}]})"));
  ASSERT_TRUE(wf["warnings"].is_array());
  ASSERT_EQ(wf["warnings"].size(), 1u) << wf.dump();
  EXPECT_NE(wf["warnings"][0].get<std::string>().find("ghost"), std::string::npos);
  std::string id = StartRun(c.api(), wf["workflow_id"], json::object())["run_id"];
  run = WaitRunTerminal(c.api(), id, 60s);
  EXPECT_EQ(run["status"], "FAILED");
  std::string err = run["error_message"];
  EXPECT_NE(err.find("agent 'ghost' is not registered"), std::string::npos) << err;
  EXPECT_NE(err.find(c.registry().url()), std::string::npos) << "names the registry asked: " << err;
  json rows = RowsOf(Steps(c.api(), id), "haunt");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["status"], "FAILED");
  EXPECT_NE(rows[0]["error_message"].get<std::string>().find("ghost"), std::string::npos);
}

TEST_F(RegistryServiceTest, AnUnhealthyAgentIsNotCalledAndTheRunCompletesOnceItIsBack) {
  RegistryCluster& c = Make();
  ASSERT_TRUE(WaitUntil([&] { return c.AgentHealth("echo") == "healthy"; }, 20s));
  uint16_t port = c.agents().port();
  c.agents().Stop();
  ASSERT_TRUE(WaitUntil([&] { return c.AgentHealth("echo") == "unhealthy"; }, 20s)) << c.AgentHealth("echo");
  HttpResponse rec = c.registry().Get("/agents/echo");
  EXPECT_NE(rec.body_json.value("health_error", "").find("/healthz"), std::string::npos) << rec.body;

  json wf = CreateWorkflow(c.api(), json::parse(R"({"name": "reg-sick", "steps": [
      {"id": "a", "agent": "echo", "input": {"k": 1},
       "retry": {"max_attempts": 100, "initial_backoff_ms": 200, "max_backoff_ms": 300}}]})"));
  std::string id = StartRun(c.api(), wf["workflow_id"], json::object())["run_id"];
  json first = WaitForStepRow(c.api(), id, [](const json& r) { return r["status"] == "FAILED"; }, 60s);
  EXPECT_NE(first["error_message"].get<std::string>().find("agent 'echo' is unhealthy"), std::string::npos)
      << first.dump();

  c.agents().Start(c.registry().url(), port);  // back on the same URL
  json run = WaitRunTerminal(c.api(), id, 60s);
  EXPECT_EQ(run["status"], "COMPLETED") << run.dump();
  json rows = RowsOf(Steps(c.api(), id), "a");
  ASSERT_GE(rows.size(), 2u);
  EXPECT_EQ(rows.back()["status"], "COMPLETED");
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["status"], "FAILED");
    EXPECT_NE(rows[i]["error_message"].get<std::string>().find("unhealthy"), std::string::npos)
        << "no call was made while the agent was unhealthy: " << rows[i].dump();
  }
}

TEST_F(RegistryServiceTest, RegistryServesHealthReadinessAndMetricsAndTheConsumerChecksTheRegistry) {
  RegistryCluster& c = Make();
  HttpResponse live = Fetch("GET", c.registry().url() + "/healthz");
  EXPECT_EQ(live.status, 200) << live.Describe();
  HttpResponse ready = Fetch("GET", c.registry().url() + "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.Describe();
  EXPECT_EQ(ready.body_json["checks"], json({{"database", "ok"}})) << ready.body;

  // The demo agents registered themselves: five PUTs on the route pattern.
  HttpResponse m = Fetch("GET", c.registry().url() + "/metrics");
  ASSERT_EQ(m.status, 200) << m.Describe();
  auto page = test::ParsePromText(m.body);
  ASSERT_TRUE(page.ok()) << page.status().ToString() << "\n" << m.body;
  EXPECT_EQ(page->Sum("agentflow_http_request_duration_seconds_count",
                      {{"method", "PUT"}, {"route", "/api/v1/agents/{name}"}}),
            5)
      << m.body;

  // The consumer resolves agents through the registry, so its readiness
  // checks it: down while the registry is stopped, back once it returns.
  HttpResponse cr = Fetch("GET", c.consumer().url() + "/readyz");
  EXPECT_EQ(cr.status, 200) << cr.Describe();
  EXPECT_EQ(cr.body_json["checks"], json({{"database", "ok"}, {"kafka", "ok"}, {"registry", "ok"}})) << cr.body;
  uint16_t port = c.registry().port();
  ASSERT_EQ(c.registry().Stop(), 0);
  ASSERT_TRUE(WaitUntil([&] { return Fetch("GET", c.consumer().url() + "/readyz", "", {}, 10s).status == 503; }, 30s));
  cr = Fetch("GET", c.consumer().url() + "/readyz", "", {}, 10s);
  EXPECT_EQ(cr.body_json["down"], json::array({"registry"})) << cr.body;
  EXPECT_EQ(Fetch("GET", c.consumer().url() + "/healthz").status, 200) << "liveness does not depend on the registry";
  c.registry().Start(port);
  EXPECT_TRUE(WaitUntil([&] { return Fetch("GET", c.consumer().url() + "/readyz", "", {}, 10s).status == 200; }, 30s));
}

TEST_F(RegistryServiceTest, CliRegistersListsAndDeletesAgentsInTheRegistry) {
  RegistryCluster& c = Make();
  EnvOverrides env = {{"AGENT_REGISTRY_URL", c.registry().url()}};
  CliResult r = RunCli({"agent", "register", "--name", "summarize", "--transport", "kafka", "--timeout-ms", "5000"},
                       c.dir(), env);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("registered (kafka topic agent.summarize.requests)"), std::string::npos) << r.out;
  // An update keeps what it does not name.
  r = RunCli({"agent", "register", "--name", "summarize", "--max-concurrency", "4"}, c.dir(), env);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  HttpResponse rec = c.registry().Get("/agents/summarize");
  EXPECT_EQ(rec.body_json["transport"], "kafka");
  EXPECT_EQ(rec.body_json["timeout_ms"], 5000);
  EXPECT_EQ(rec.body_json["max_concurrency"], 4);

  r = RunCli({"agent", "list", "--registry", c.registry().url()}, c.dir());
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("summarize"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("agent.summarize.requests"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HEALTH"), std::string::npos) << r.out;

  r = RunCli({"agent", "register", "--name", "bad"}, c.dir(), env);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("url"), std::string::npos) << r.Describe();

  r = RunCli({"agent", "delete", "summarize"}, c.dir(), env);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(c.registry().Get("/agents/summarize").status, 404);
  r = RunCli({"agent", "get", "summarize"}, c.dir(), env);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("not registered"), std::string::npos) << r.Describe();
}

}  // namespace
}  // namespace af::e2e
