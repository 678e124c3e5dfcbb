// The agent registry's parts without processes: the agents API (CRUD, bad
// input, heartbeats) served on loopback, the health checker against agents
// whose health endpoint the test switches, and the registry-backed
// AgentDirectory with its cache.
#include <gtest/gtest.h>

#include <atomic>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "agent/agent.h"
#include "api/agents_api.h"
#include "api/store_worker.h"
#include "common/time.h"
#include "http/http.h"
#include "registry/health_checker.h"

namespace af {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

// An HTTP server on loopback: the agents API over `store` (its store calls
// on a reader thread, as in `agentflow registry`), plus /health that answers
// with the status the test sets.
class Registry {
 public:
  explicit Registry(Store* store) : api_(store), readers_(std::make_shared<StoreWorker>(store, StoreWorkerOptions{})) {
    api_.Register(router_, readers_);
    router_.Add("GET", "/health", [this](http::Request&) -> asio::awaitable<http::Response> {
      co_return http::JsonResponse(health_status_.load(), {{"status", "whatever"}});
    });
    Start();
  }
  ~Registry() {
    readers_->Stop();  // its waiters resume on the server's io thread: before it stops
    Stop();
  }
  void Start() {
    http::ServerOptions o;
    o.port = port_;  // the same port again after Stop
    auto s = http::StartServer(o, router_.AsHandler());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(s).value();
    port_ = server_->port();
  }
  void Stop() {
    if (server_) server_->Stop();
    server_.reset();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void SetHealth(int status) { health_status_ = status; }

  http::ClientResponse Call(const std::string& method, const std::string& path, const std::string& body = "") {
    http::ClientRequest req;
    req.method = method;
    req.url = url() + path;
    req.body = body;
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    auto r = http::FetchSync(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : http::ClientResponse{};
  }

 private:
  AgentsApi api_;
  std::shared_ptr<StoreWorker> readers_;
  http::Router router_;
  std::unique_ptr<http::Server> server_;
  uint16_t port_ = 0;
  std::atomic<int> health_status_{200};
};

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenStore(StoreOptions{":memory:"});
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    registry_ = std::make_unique<Registry>(store_.get());
  }
  json Body(const http::ClientResponse& r) { return json::parse(r.body); }
  Agent Stored(const std::string& name) {
    auto a = store_->GetAgent(name);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : Agent{};
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(RegistryTest, CrudOfHttpAndKafkaAgents) {
  auto r = registry_->Call("POST", "/api/v1/agents",
                           R"({"name": "echo", "url": "http://127.0.0.1:9/echo", "timeout_ms": 500,
                               "max_concurrency": 3, "metadata": {"capabilities": ["echo"]},
                               "health_url": "http://127.0.0.1:9/healthz"})");
  ASSERT_EQ(r.status, 201) << r.body;
  json a = Body(r);
  EXPECT_EQ(a["transport"], "http");
  EXPECT_EQ(a["topic"], nullptr);
  EXPECT_EQ(a["health"], "unknown");
  EXPECT_EQ(a["last_seen_at"], nullptr);
  EXPECT_EQ(a["metadata"]["capabilities"][0], "echo");
  EXPECT_EQ(a["health_url"], "http://127.0.0.1:9/healthz");

  r = registry_->Call("POST", "/api/v1/agents", R"({"name": "summarize", "transport": "kafka"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(Body(r)["topic"], "agent.summarize.requests") << "the default topic";
  EXPECT_EQ(Body(r)["url"], nullptr);

  r = registry_->Call("GET", "/api/v1/agents");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(Body(r)["items"].size(), 2u);
  EXPECT_EQ(Body(r)["items"][1]["transport"], "kafka");

  // A GET's record can be edited and PUT back (read-only fields ignored).
  json edited = Body(registry_->Call("GET", "/api/v1/agents/echo"));
  edited["timeout_ms"] = 900;
  r = registry_->Call("PUT", "/api/v1/agents/echo", edited.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Stored("echo").timeout_ms, 900);
  EXPECT_EQ(Stored("echo").max_concurrency, 3);

  r = registry_->Call("PUT", "/api/v1/agents/summarize", R"({"transport": "kafka", "topic": "summaries.in"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Stored("summarize").topic, "summaries.in");

  EXPECT_EQ(registry_->Call("DELETE", "/api/v1/agents/summarize").status, 204);
  EXPECT_EQ(registry_->Call("GET", "/api/v1/agents/summarize").status, 404);
  EXPECT_EQ(registry_->Call("DELETE", "/api/v1/agents/summarize").status, 404);
}

TEST_F(RegistryTest, BadRegistrationsAreRefusedNamingTheField) {
  struct Case {
    const char* body;
    int status;
    const char* field;
  };
  const Case cases[] = {
      {R"({"url": "http://127.0.0.1:9/x"})", 400, "name"},
      {R"({"name": "x"})", 400, "url"},
      {R"({"name": "x", "url": "ftp://nope"})", 400, "url"},
      {R"({"name": "x", "transport": "carrier-pigeon", "url": "http://a"})", 400, "transport"},
      {R"({"name": "x", "transport": "kafka", "topic": "bad/topic"})", 400, "topic"},
      {R"({"name": "x", "transport": "kafka", "url": "http://a"})", 400, "url"},
      {R"({"name": "x", "url": "http://a", "topic": "t"})", 400, "topic"},
      {R"({"name": "x", "url": "http://a", "health_url": 7})", 400, "health_url"},
      {R"({"name": "x", "url": "http://a", "timeout_ms": 0})", 400, "timeout_ms"},
      {R"({"name": "x", "url": "http://a", "bogus": 1})", 400, "bogus"},
  };
  for (const Case& c : cases) {
    auto r = registry_->Call("POST", "/api/v1/agents", c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    EXPECT_NE(r.body.find(c.field), std::string::npos) << c.body << " -> " << r.body;
  }
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents", R"({"name": "x", "url": "http://a"})").status, 201);
  auto dup = registry_->Call("POST", "/api/v1/agents", R"({"name": "x", "url": "http://b"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(Body(dup)["error"]["code"], "ALREADY_EXISTS");
  EXPECT_EQ(registry_->Call("GET", "/api/v1/agents/nope").status, 404);
  EXPECT_EQ(registry_->Call("GET", "/api/v1/agents/..").status, 400);
}

TEST_F(RegistryTest, HeartbeatsMarkAnAgentSeenAndMayReportItUnhealthy) {
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents", R"({"name": "k", "transport": "kafka"})").status, 201);
  TimeMs before = NowMs();
  auto r = registry_->Call("POST", "/api/v1/agents/k/heartbeat", "{}");
  EXPECT_EQ(r.status, 204) << r.body;
  Agent k = Stored("k");
  EXPECT_EQ(k.health, AgentHealth::kHealthy);
  ASSERT_TRUE(k.last_seen_at.has_value());
  EXPECT_GE(*k.last_seen_at, before);

  r = registry_->Call("POST", "/api/v1/agents/k/heartbeat", R"({"status": "unhealthy", "error": "model not loaded"})");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(Stored("k").health, AgentHealth::kUnhealthy);
  EXPECT_EQ(Stored("k").health_error, "model not loaded");

  EXPECT_EQ(registry_->Call("POST", "/api/v1/agents/k/heartbeat").status, 204) << "an empty body is {}";
  EXPECT_EQ(Stored("k").health, AgentHealth::kHealthy);
  EXPECT_EQ(registry_->Call("POST", "/api/v1/agents/ghost/heartbeat", "{}").status, 404);
  EXPECT_EQ(registry_->Call("POST", "/api/v1/agents/k/heartbeat", R"({"status": "fine"})").status, 400);
}

TEST_F(RegistryTest, HealthCheckFlipsAnAgentUnhealthyAndBack) {
  std::string health = registry_->url() + "/health";
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents",
                            json{{"name", "a"}, {"url", registry_->url() + "/a"}, {"health_url", health}}.dump())
                .status,
            201);
  // An agent whose health endpoint refuses connections.
  uint16_t dead_port;
  {
    auto s = http::StartServer({}, [](http::Request&) -> asio::awaitable<http::Response> { co_return http::Response{}; });
    ASSERT_TRUE(s.ok());
    dead_port = (*s)->port();
    (*s)->Stop();
  }
  std::string dead = "http://127.0.0.1:" + std::to_string(dead_port) + "/healthz";
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents",
                            json{{"name", "b"}, {"url", "http://127.0.0.1:9/b"}, {"health_url", dead}}.dump())
                .status,
            201);
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents", R"({"name": "c", "url": "http://127.0.0.1:9/c"})").status, 201);

  HealthCheckOptions o;
  o.timeout = 1000ms;
  auto checker = NewHealthChecker(store_.get(), o);
  ASSERT_TRUE(checker->CheckOnce().ok());
  EXPECT_EQ(Stored("a").health, AgentHealth::kHealthy);
  EXPECT_TRUE(Stored("a").last_seen_at.has_value());
  EXPECT_EQ(Stored("b").health, AgentHealth::kUnhealthy);
  EXPECT_NE(Stored("b").health_error.find("GET " + dead), std::string::npos) << Stored("b").health_error;
  EXPECT_EQ(Stored("c").health, AgentHealth::kUnknown) << "no health_url, no heartbeat: not judged";

  registry_->SetHealth(503);
  ASSERT_TRUE(checker->CheckOnce().ok());
  EXPECT_EQ(Stored("a").health, AgentHealth::kUnhealthy);
  EXPECT_EQ(Stored("a").health_error, "GET " + health + ": HTTP 503");

  registry_->SetHealth(204);
  ASSERT_TRUE(checker->CheckOnce().ok());
  EXPECT_EQ(Stored("a").health, AgentHealth::kHealthy);
  EXPECT_EQ(Stored("a").health_error, "");
}

TEST_F(RegistryTest, StartedCheckerChecksOnItsOwn) {
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents",
                            json{{"name", "a"}, {"url", "http://x"}, {"health_url", registry_->url() + "/health"}}.dump())
                .status,
            201);
  HealthCheckOptions o;
  o.interval = 50ms;
  auto checker = NewHealthChecker(store_.get(), o);
  checker->Start();
  for (int i = 0; i < 400 && Stored("a").health != AgentHealth::kHealthy; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Stored("a").health, AgentHealth::kHealthy);
  registry_->SetHealth(500);
  for (int i = 0; i < 400 && Stored("a").health != AgentHealth::kUnhealthy; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Stored("a").health, AgentHealth::kUnhealthy);
  checker->Stop();
  checker->Stop();  // idempotent
}

TEST_F(RegistryTest, HeartbeatOnlyAgentTurnsUnhealthyWhenHeartbeatsStop) {
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents", R"({"name": "k", "transport": "kafka"})").status, 201);
  ASSERT_TRUE(store_->RecordAgentHealth({"k", AgentHealth::kHealthy, "", NowMs() - 10000}).ok());
  HealthCheckOptions o;
  o.heartbeat_ttl = 60000ms;
  ASSERT_TRUE(NewHealthChecker(store_.get(), o)->CheckOnce().ok());
  EXPECT_EQ(Stored("k").health, AgentHealth::kHealthy) << "10 s old, within a 60 s ttl";
  o.heartbeat_ttl = 5000ms;
  ASSERT_TRUE(NewHealthChecker(store_.get(), o)->CheckOnce().ok());
  EXPECT_EQ(Stored("k").health, AgentHealth::kUnhealthy);
  EXPECT_NE(Stored("k").health_error.find("no heartbeat for 10 s"), std::string::npos) << Stored("k").health_error;
}

// ---- the registry-backed directory

Result<AgentEndpoint> ResolveNow(AgentDirectory* dir, asio::io_context& ioc, const std::string& name) {
  Result<AgentEndpoint> out = Status::Internal("not run");
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { out = co_await dir->Resolve(name); }, [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.restart();
  ioc.run();
  return out;
}

TEST_F(RegistryTest, DirectoryResolvesThroughTheRegistryWithAShortCache) {
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents",
                            R"({"name": "echo", "url": "http://127.0.0.1:9/echo", "timeout_ms": 700,
                                "max_concurrency": 2})")
                .status,
            201);
  ASSERT_EQ(registry_->Call("POST", "/api/v1/agents", R"({"name": "k", "transport": "kafka", "topic": "t.k"})").status,
            201);
  ASSERT_TRUE(store_->RecordAgentHealth({"k", AgentHealth::kUnhealthy, "no heartbeat", NowMs()}).ok());
  asio::io_context ioc;
  RegistryDirectoryOptions o;
  o.registry_url = registry_->url() + "/";
  o.cache_ttl = 300ms;
  auto dir = NewRegistryAgentDirectory(ioc.get_executor(), o);

  auto echo = ResolveNow(dir.get(), ioc, "echo");
  ASSERT_TRUE(echo.ok()) << echo.status().ToString();
  EXPECT_EQ(echo->transport, AgentTransport::kHttp);
  EXPECT_EQ(echo->url, "http://127.0.0.1:9/echo");
  EXPECT_EQ(echo->timeout_ms, 700);
  EXPECT_EQ(echo->max_concurrency, 2);
  auto k = ResolveNow(dir.get(), ioc, "k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->transport, AgentTransport::kKafka);
  EXPECT_EQ(k->topic, "t.k");
  EXPECT_EQ(k->health, AgentHealth::kUnhealthy);
  EXPECT_EQ(k->health_error, "no heartbeat");

  auto ghost = ResolveNow(dir.get(), ioc, "ghost");
  EXPECT_EQ(ghost.status().code(), Code::kNotFound);
  EXPECT_NE(ghost.status().message().find("agent 'ghost' is not registered"), std::string::npos);
  EXPECT_NE(ghost.status().message().find(registry_->url()), std::string::npos);

  // Within the ttl the cached answer stands; after it, the registry's.
  ASSERT_EQ(registry_->Call("PUT", "/api/v1/agents/echo", R"({"url": "http://127.0.0.1:9/echo2"})").status, 200);
  EXPECT_EQ(ResolveNow(dir.get(), ioc, "echo")->url, "http://127.0.0.1:9/echo");
  std::this_thread::sleep_for(350ms);
  EXPECT_EQ(ResolveNow(dir.get(), ioc, "echo")->url, "http://127.0.0.1:9/echo2");

  // Registry down: the last good record is used; an agent never seen is Unavailable.
  registry_->Stop();
  std::this_thread::sleep_for(350ms);
  auto stale = ResolveNow(dir.get(), ioc, "echo");
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  EXPECT_EQ(stale->url, "http://127.0.0.1:9/echo2");
  auto unseen = ResolveNow(dir.get(), ioc, "never-seen");
  EXPECT_EQ(unseen.status().code(), Code::kUnavailable);
  EXPECT_NE(unseen.status().message().find("unreachable"), std::string::npos) << unseen.status().message();
}

TEST(EndpointFromJsonTest, ReadsTheRegistryRecordAndRefusesUnusableOnes) {
  auto e = EndpointFromJson(json::parse(R"({"name": "a", "transport": "kafka", "url": null, "topic": null,
                                            "timeout_ms": 5, "health": "healthy"})"));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->topic, "agent.a.requests");
  EXPECT_EQ(e->timeout_ms, 5);
  EXPECT_EQ(e->health, AgentHealth::kHealthy);
  EXPECT_FALSE(EndpointFromJson(json::parse(R"({"name": "a"})")).ok()) << "http without url";
  EXPECT_FALSE(EndpointFromJson(json::parse(R"({"name": "a", "transport": "x", "url": "http://a"})")).ok());
  EXPECT_FALSE(EndpointFromJson(json::parse(R"([1])")).ok());
  EXPECT_FALSE(EndpointFromJson(json::parse(R"({"url": "http://a"})")).ok());
}

TEST(LayeredDirectoryTest, StaticEntriesComeFirstThenTheFallback) {
  AgentEndpoint a;
  a.name = "a";
  a.url = "http://first/a";
  AgentEndpoint a2 = a;
  a2.url = "http://second/a";
  AgentEndpoint b;
  b.name = "b";
  b.url = "http://second/b";
  auto dir = NewLayeredAgentDirectory(NewStaticAgentDirectory({a}), NewStaticAgentDirectory({a2, b}));
  asio::io_context ioc;
  EXPECT_EQ(ResolveNow(dir.get(), ioc, "a")->url, "http://first/a");
  EXPECT_EQ(ResolveNow(dir.get(), ioc, "b")->url, "http://second/b");
  EXPECT_EQ(ResolveNow(dir.get(), ioc, "c").status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace af
