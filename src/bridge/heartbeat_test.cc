// RegistryHeartbeat against a fake registry (an in-process HTTP server that
// records what it receives) and the demo agents.
#include "bridge/heartbeat.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "agent/demo_agents.h"
#include "executor/loop.h"
#include "http/http.h"

namespace af {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct Received {
  std::string method, path, body;
};

class FakeRegistry {
 public:
  FakeRegistry() {
    auto server = http::StartServer(http::ServerOptions{}, [this](http::Request& req) -> asio::awaitable<http::Response> {
      bool forget = false;
      {
        std::lock_guard lk(mu_);
        got_.push_back({req.method, req.path, req.body});
        if (req.method == "POST" && forget_next_heartbeat_) {
          forget_next_heartbeat_ = false;
          forget = true;
        }
      }
      if (req.method == "PUT") co_return http::JsonResponse(200, json::parse(req.body, nullptr, false));
      if (forget) co_return http::JsonError(404, "NOT_FOUND", "agent is not registered");
      http::Response r;
      r.status = 204;
      r.content_type = "";
      co_return r;
    });
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  ~FakeRegistry() { server_->Stop(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }
  std::vector<Received> Got() {
    std::lock_guard lk(mu_);
    return got_;
  }
  size_t Count(const std::string& method, const std::string& path) {
    size_t n = 0;
    for (const auto& r : Got()) n += r.method == method && r.path == path;
    return n;
  }
  void ForgetAgent() {
    std::lock_guard lk(mu_);
    forget_next_heartbeat_ = true;
  }

 private:
  std::unique_ptr<http::Server> server_;
  std::mutex mu_;
  std::vector<Received> got_;
  bool forget_next_heartbeat_ = false;
};

class HeartbeatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto demo = StartDemoAgents("127.0.0.1", 0);
    ASSERT_TRUE(demo.ok()) << demo.status().ToString();
    demo_ = std::move(demo).value();
    loop_.Start();
  }
  void TearDown() override {
    if (hb_) hb_->Stop();
    loop_.Stop();
    if (demo_) demo_->Stop();
  }
  RegistryHeartbeat& Start(bool register_agents) {
    HeartbeatOptions o;
    o.registry_url = registry_.url() + "/";
    o.register_agents = register_agents;
    o.interval = 20ms;
    o.timeout_ms = 5000;
    o.probe_timeout = 2s;
    BridgedAgent echo{"echo", demo_->base_url() + "/agents/echo", ""};
    hb_ = std::make_unique<RegistryHeartbeat>(loop_.executor(), std::vector<BridgedAgent>{echo}, o);
    hb_->Start();
    return *hb_;
  }

  EventLoop loop_{1};
  FakeRegistry registry_;
  std::unique_ptr<DemoAgents> demo_;
  std::unique_ptr<RegistryHeartbeat> hb_;
};

TEST(HeartbeatPureTest, AgentBaseUrlAndRegistrationBody) {
  EXPECT_EQ(*AgentBaseUrl("http://127.0.0.1:9000/agents/echo?x=1"), "http://127.0.0.1:9000/");
  EXPECT_EQ(*AgentBaseUrl("http://example.com/a"), "http://example.com:80/");
  EXPECT_FALSE(AgentBaseUrl("https://example.com/a").ok());
  EXPECT_FALSE(AgentBaseUrl("not a url").ok());
  EXPECT_EQ(RegistrationBody(BridgedAgent{"echo", "http://h:1/", ""}, 30000),
            json({{"name", "echo"}, {"transport", "kafka"}, {"topic", "agent.echo.requests"}, {"timeout_ms", 30000}}));
  EXPECT_EQ(RegistrationBody(BridgedAgent{"echo", "http://h:1/", "custom"}, 5)["topic"], "custom");
}

TEST_F(HeartbeatTest, RegistersThenBeatsWhileTheAgentAnswersAndStopsWhenItDoesNot) {
  RegistryHeartbeat& hb = Start(/*register_agents=*/true);
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().heartbeats >= 3; })) << hb.stats().registry_errors;
  EXPECT_EQ(hb.stats().registrations, 1u);
  std::vector<Received> got = registry_.Got();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].method, "PUT") << "registered before the first heartbeat";
  EXPECT_EQ(got[0].path, "/api/v1/agents/echo");
  EXPECT_EQ(json::parse(got[0].body),
            json({{"name", "echo"}, {"transport", "kafka"}, {"topic", "agent.echo.requests"}, {"timeout_ms", 5000}}));
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].method, "POST");
    EXPECT_EQ(got[i].path, "/api/v1/agents/echo/heartbeat");
    EXPECT_EQ(json::parse(got[i].body), json::object());
  }

  demo_->Stop();  // the HTTP agent goes away
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().probe_failures >= 1; }));
  uint64_t beats = hb.stats().heartbeats;
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().probe_failures >= 4; }));
  EXPECT_EQ(hb.stats().heartbeats, beats) << "no heartbeat while the agent does not answer";
}

TEST_F(HeartbeatTest, RegistersAgainWhenTheRegistryForgetsTheAgent) {
  RegistryHeartbeat& hb = Start(/*register_agents=*/true);
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().heartbeats >= 1; }));
  registry_.ForgetAgent();
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().registrations >= 2; }));
  EXPECT_GE(registry_.Count("PUT", "/api/v1/agents/echo"), 2u);
}

TEST_F(HeartbeatTest, WithoutRegisterOnlyHeartbeatsAreSent) {
  RegistryHeartbeat& hb = Start(/*register_agents=*/false);
  ASSERT_TRUE(WaitUntil([&] { return hb.stats().heartbeats >= 2; }));
  EXPECT_EQ(registry_.Count("PUT", "/api/v1/agents/echo"), 0u);
  EXPECT_EQ(hb.stats().registrations, 0u);
}

}  // namespace
}  // namespace af
