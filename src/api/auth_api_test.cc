// Access control through the API's router (no network): the guard's 401 and
// 403 answers, the /api/v1/apikeys routes, and the agent host allow-list on
// registration.
#include <gtest/gtest.h>

#include <functional>
#include <memory>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "api/api.h"
#include "api/api_test_util.h"
#include "api/auth_guard.h"
#include "auth/api_keys.h"
#include "http/testing.h"
#include "storage/forwarding_store.h"
#include "support/gate.h"

namespace af {
namespace {

class AuthApiTest : public ::testing::Test {
 protected:
  // The API, its agents and keys routes and the guard (on the API's reader
  // threads, as the services install it) over an in-memory store, or over
  // wrap(that store) when a test gives a decorator.
  void Start(auth::AuthMode mode, const std::string& agent_hosts = "",
             const std::function<std::unique_ptr<Store>(Store*)>& wrap = nullptr) {
    auto s = OpenStore(StoreOptions{":memory:"});
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
    if (wrap) served_ = wrap(store_.get());
    Store* served = served_ ? served_.get() : store_.get();
    auto q = OpenEmbeddedQueue(QueueOptions{""});
    ASSERT_TRUE(q.ok());
    queue_ = std::move(q).value();
    ApiOptions ao;
    ao.auth_mode = mode;
    auto hosts = auth::AgentHostAllowList::Parse(agent_hosts);
    ASSERT_TRUE(hosts.ok());
    ao.agent_hosts = *hosts;
    api_ = std::make_unique<Api>(served, queue_.get(), nullptr, ao);
    api_->Register(router_);
    router_.Add("GET", "/healthz", [](http::Request&) -> boost::asio::awaitable<http::Response> {
      co_return http::JsonResponse(200, {{"status", "ok"}});
    });
    authenticator_ = std::make_unique<auth::Authenticator>(served, auth::AuthenticatorOptions{mode});
    InstallAuthGuard(router_, authenticator_.get(), api_->Readers());
  }

  std::string Key(Role role) {
    auto k = auth::GenerateApiKey(role, "");
    EXPECT_TRUE(store_->CreateApiKey(k->record).ok());
    return k->key;
  }

  // A request with `key` (none if "") as its bearer token.
  static http::Request KeyedRequest(const std::string& method, const std::string& path, const std::string& body = "",
                                    const std::string& key = "") {
    http::Headers headers;
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    return MakeRequest(method, path, body, std::move(headers));
  }
  http::Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                      const std::string& key = "") {
    http::Request req = KeyedRequest(method, path, body, key);
    return http::DispatchSync(router_, req);
  }
  static json Body(const http::Response& r) { return json::parse(r.body); }
  static std::string Header(const http::Response& r, const std::string& name) {
    return http::FindHeader(r.headers, name);
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<Store> served_;  // wrap(store_), or null
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<auth::Authenticator> authenticator_;
  http::Router router_;
};

const char* kPlan = R"({"name": "wf", "steps": [{"id": "s", "agent": "echo"}]})";

TEST_F(AuthApiTest, RequiredAnswers401WithAChallengeAnd403ForARoleThatMayNot) {
  Start(auth::AuthMode::kRequired);
  http::Response none = Call("GET", "/api/v1/runs");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(Body(none)["error"]["code"], "UNAUTHENTICATED");
  EXPECT_EQ(Header(none, "WWW-Authenticate"), "Bearer realm=\"agentflow\"");
  http::Response wrong = Call("GET", "/api/v1/runs", "", "af_0123456789abcdef_" + std::string(64, '0'));
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(Header(wrong, "WWW-Authenticate"), "Bearer realm=\"agentflow\", error=\"invalid_token\"");
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/healthz").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/nope").status, 404) << "no route: nothing to protect";

  std::string viewer = Key(Role::kViewer), op = Key(Role::kOperator), admin = Key(Role::kAdmin);
  EXPECT_EQ(Call("GET", "/api/v1/runs", "", viewer).status, 200);
  http::Response denied = Call("POST", "/api/v1/workflows", kPlan, op);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(Body(denied)["error"]["code"], "PERMISSION_DENIED");
  EXPECT_EQ(Body(denied)["error"]["details"]["required_role"], "admin");
  EXPECT_EQ(Call("POST", "/api/v1/workflows", kPlan, admin).status, 201);
  EXPECT_EQ(Call("POST", "/api/v1/workflows/wf/runs", "{}", viewer).status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/workflows/wf/runs", "{}", op).status, 202);
}

TEST_F(AuthApiTest, AdminsManageKeysOverHttpAndSecretsAreShownOnce) {
  Start(auth::AuthMode::kRequired);
  std::string admin = Key(Role::kAdmin);
  EXPECT_EQ(Call("GET", "/api/v1/apikeys", "", Key(Role::kOperator)).status, 403);

  http::Response created = Call("POST", "/api/v1/apikeys", R"({"role": "viewer", "name": "dashboard"})", admin);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string key = Body(created)["key"];
  std::string id = Body(created)["id"];
  EXPECT_EQ(Body(created)["role"], "viewer");
  EXPECT_EQ(Call("GET", "/api/v1/runs", "", key).status, 200);

  http::Response list = Call("GET", "/api/v1/apikeys", "", admin);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(Body(list)["items"].size(), 3u);
  EXPECT_EQ(list.body.find(key.substr(20)), std::string::npos) << "no secret in a list";
  EXPECT_EQ(list.body.find(store_->GetApiKey(id)->secret_hash), std::string::npos) << "no hash either";
  const json items = Body(list)["items"];  // not a range over a temporary's member (ASan: use after free)
  for (const auto& item : items) EXPECT_FALSE(item.contains("key"));

  EXPECT_EQ(Call("POST", "/api/v1/apikeys", R"({"role": "root"})", admin).status, 400);
  http::Response revoked = Call("DELETE", "/api/v1/apikeys/" + id, "", admin);
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_FALSE(Body(revoked)["revoked_at"].is_null());
  EXPECT_EQ(Call("GET", "/api/v1/runs", "", key).status, 401);
  EXPECT_EQ(Call("DELETE", "/api/v1/apikeys/nosuch", "", admin).status, 404);
}

TEST_F(AuthApiTest, OffLeavesEverythingOpenButKeysCannotBeMintedOverHttp) {
  Start(auth::AuthMode::kOff);
  EXPECT_EQ(Call("POST", "/api/v1/workflows", kPlan).status, 201);
  http::Response r = Call("POST", "/api/v1/apikeys", R"({"role": "admin"})");
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find("--auth required"), std::string::npos);
  EXPECT_EQ(Call("GET", "/api/v1/apikeys").status, 409);
}

TEST_F(AuthApiTest, AgentRegistrationIsRefusedOutsideTheAllowedHosts) {
  Start(auth::AuthMode::kOff, "127.0.0.1,agents.internal");
  EXPECT_EQ(Call("POST", "/api/v1/agents", R"({"name": "a", "url": "http://agents.internal:9000/a"})").status, 201);
  http::Response bad = Call("POST", "/api/v1/agents", R"({"name": "b", "url": "http://169.254.169.254/latest"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(Body(bad)["error"]["message"].get<std::string>().find("host '169.254.169.254'"), std::string::npos)
      << bad.body;
  http::Response health = Call("PUT", "/api/v1/agents/c",
                               R"({"url": "http://127.0.0.1:9000/c", "health_url": "http://10.0.0.1/health"})");
  EXPECT_EQ(health.status, 400);
  EXPECT_NE(Body(health)["error"]["message"].get<std::string>().find("health_url: host '10.0.0.1'"),
            std::string::npos);
  EXPECT_EQ(Call("PUT", "/api/v1/agents/k", R"({"transport": "kafka"})").status, 200) << "kafka agents have no URL";
}

// Holds the read of one key, or of one agent, until the test opens the
// gate. Two calls at a time, as a PostgreSQL pool allows (the API gives its
// reader threads no more than the store's connections). Set the fields while
// no call is in flight.
class StalledReadStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  int MaxConcurrentCalls() const override { return 2; }
  Result<ApiKey> GetApiKey(const std::string& id) override {
    if (id == stalled_key) gate->Pass();
    return inner()->GetApiKey(id);
  }
  Result<Agent> GetAgent(const std::string& name) override {
    if (name == stalled_agent) gate->Pass();
    return inner()->GetAgent(name);
  }
  std::string stalled_key, stalled_agent;
  std::unique_ptr<testing_support::Gate> gate = std::make_unique<testing_support::Gate>();
};

// A slow database call of the guard (the key's read) or of an agent route
// delays its own request only: while it waits, the same (single) io thread
// checks another key and answers its request. (The guard and the agent
// routes read the store on the io thread and held up every connection.)
TEST_F(AuthApiTest, ASlowKeyCheckOrAgentReadHoldsUpNoOtherRequestOfItsIoThread) {
  StalledReadStore* stalled = nullptr;
  Start(auth::AuthMode::kRequired, "", [&stalled](Store* inner) {
    auto s = std::make_unique<StalledReadStore>(inner);
    stalled = s.get();
    return s;
  });
  ASSERT_NE(stalled, nullptr);
  auto slow_key = auth::GenerateApiKey(Role::kAdmin, "slow");
  ASSERT_TRUE(slow_key.ok());
  ASSERT_TRUE(store_->CreateApiKey(slow_key->record).ok());
  std::string admin = Key(Role::kAdmin);
  ASSERT_EQ(Call("PUT", "/api/v1/agents/a", R"({"url": "http://127.0.0.1:9000/a"})", admin).status, 200);

  struct Case {
    std::string what, path, key, stalled_key, stalled_agent;
  };
  for (const Case& c : {Case{"the key check", "/api/v1/runs", slow_key->key, slow_key->record.id, ""},
                        Case{"an agent read", "/api/v1/agents/a", admin, "", "a"}}) {
    SCOPED_TRACE(c.what);
    stalled->gate = std::make_unique<testing_support::Gate>();
    stalled->stalled_key = c.stalled_key;
    stalled->stalled_agent = c.stalled_agent;
    http::Request slow = KeyedRequest("GET", c.path, "", c.key);
    http::Request other = KeyedRequest("GET", "/api/v1/workflows", "", admin);
    http::Response slow_answer, other_answer;
    ExpectAnsweredWhileHeld(router_, slow, other, *stalled->gate, slow_answer, other_answer);
    EXPECT_EQ(other_answer.status, 200) << other_answer.body;
    EXPECT_EQ(slow_answer.status, 200) << slow_answer.body;
  }
}

}  // namespace
}  // namespace af
