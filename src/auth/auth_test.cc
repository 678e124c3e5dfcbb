// The permission tables, key format, hashing and the request check (on an
// in-memory SQLite store), and the agent host allow-list.
#include <gtest/gtest.h>

#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "auth/agent_hosts.h"
#include "auth/api_keys.h"
#include "auth/auth.h"
#include "storage/sqlite/sqlite_store.h"

namespace af::auth {
namespace {

// ---- the permission tables

TEST(Permissions, RolesIncludeTheRolesBelowThem) {
  struct Row {
    Role role;
    bool read, operate, admin;
  };
  for (Row r : {Row{Role::kViewer, true, false, false}, Row{Role::kOperator, true, true, false},
                Row{Role::kAdmin, true, true, true}}) {
    EXPECT_TRUE(RoleHas(r.role, Permission::kPublic)) << ToString(r.role);
    EXPECT_EQ(RoleHas(r.role, Permission::kRead), r.read) << ToString(r.role);
    EXPECT_EQ(RoleHas(r.role, Permission::kOperate), r.operate) << ToString(r.role);
    EXPECT_EQ(RoleHas(r.role, Permission::kAdmin), r.admin) << ToString(r.role);
  }
  EXPECT_EQ(LeastRoleFor(Permission::kRead), Role::kViewer);
  EXPECT_EQ(LeastRoleFor(Permission::kOperate), Role::kOperator);
  EXPECT_EQ(LeastRoleFor(Permission::kAdmin), Role::kAdmin);
}

TEST(Permissions, EveryRouteOfTheApi) {
  struct Row {
    const char* method;
    const char* route;
    Permission want;
  };
  const Row rows[] = {
      {"GET", "/healthz", Permission::kPublic},
      {"GET", "/readyz", Permission::kPublic},
      {"GET", "/metrics", Permission::kPublic},
      {"GET", "/api/v1/healthz", Permission::kPublic},
      {"GET", "/api/v1/workflows", Permission::kRead},
      {"GET", "/api/v1/workflows/{id}", Permission::kRead},
      {"GET", "/api/v1/workflows/{id}/versions", Permission::kRead},
      {"GET", "/api/v1/runs", Permission::kRead},
      {"GET", "/api/v1/runs/{run_id}", Permission::kRead},
      {"GET", "/api/v1/runs/{run_id}/steps", Permission::kRead},
      {"GET", "/api/v1/agents", Permission::kRead},
      {"GET", "/api/v1/agents/{name}", Permission::kRead},
      {"POST", "/api/v1/workflows/{id}/runs", Permission::kOperate},
      {"POST", "/api/v1/runs/{run_id}/cancel", Permission::kOperate},
      {"POST", "/api/v1/runs/{run_id}/retry", Permission::kOperate},
      {"POST", "/api/v1/agents/{name}/heartbeat", Permission::kOperate},
      {"POST", "/api/v1/workflows", Permission::kAdmin},
      {"PUT", "/api/v1/workflows/{id}", Permission::kAdmin},
      {"DELETE", "/api/v1/workflows/{id}", Permission::kAdmin},
      {"POST", "/api/v1/agents", Permission::kAdmin},
      {"PUT", "/api/v1/agents/{name}", Permission::kAdmin},
      {"DELETE", "/api/v1/agents/{name}", Permission::kAdmin},
      // Keys are admin's, reading them included.
      {"GET", "/api/v1/apikeys", Permission::kAdmin},
      {"POST", "/api/v1/apikeys", Permission::kAdmin},
      {"DELETE", "/api/v1/apikeys/{id}", Permission::kAdmin},
      // Health routes are open for GET only; a route nobody listed defaults
      // by method, writes to admin.
      {"POST", "/healthz", Permission::kAdmin},
      {"PATCH", "/api/v1/runs/{run_id}", Permission::kAdmin},
      {"GET", "/api/v1/something-new", Permission::kRead},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(RequiredPermission(r.method, r.route), r.want) << r.method << " " << r.route;
  }
}

TEST(Permissions, AuthModeAndRoleNames) {
  EXPECT_EQ(ParseAuthMode("off"), AuthMode::kOff);
  EXPECT_EQ(ParseAuthMode("required"), AuthMode::kRequired);
  EXPECT_FALSE(ParseAuthMode("on"));
  EXPECT_FALSE(ParseAuthMode("Required"));
  for (Role r : {Role::kViewer, Role::kOperator, Role::kAdmin}) EXPECT_EQ(ParseRole(ToString(r)), r);
  EXPECT_FALSE(ParseRole("root"));
}

// ---- keys

TEST(ApiKeys, GeneratedKeysParseAndMatchTheirHash) {
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    auto k = GenerateApiKey(Role::kOperator, "ci");
    ASSERT_TRUE(k.ok()) << k.status().ToString();
    EXPECT_EQ(k->key.size(), 3 + 16 + 1 + 64);
    EXPECT_EQ(k->key.rfind("af_", 0), 0u);
    auto parsed = ParseApiKey(k->key);
    ASSERT_TRUE(parsed) << k->key;
    EXPECT_EQ(parsed->id, k->record.id);
    EXPECT_EQ(k->record.role, Role::kOperator);
    EXPECT_EQ(k->record.name, "ci");
    EXPECT_EQ(k->record.secret_hash.size(), 64u);
    EXPECT_EQ(k->record.secret_hash.find(parsed->secret), std::string::npos) << "the hash is not the secret";
    EXPECT_TRUE(SecretMatches(parsed->secret, k->record.secret_hash));
    EXPECT_TRUE(ids.insert(k->record.id).second) << "ids are random";
  }
}

TEST(ApiKeys, HashIsSha256Hex) {
  // SHA-256("abc"), FIPS 180-2 test vector.
  EXPECT_EQ(HashSecret("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(SecretMatches("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT_FALSE(SecretMatches("abd", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT_FALSE(SecretMatches("abc", "ba7816bf"));
  EXPECT_FALSE(SecretMatches("abc", ""));
}

TEST(ApiKeys, MalformedKeysDoNotParse) {
  const std::string id(16, 'a'), secret(64, 'b');
  EXPECT_TRUE(ParseApiKey("af_" + id + "_" + secret));
  for (const std::string& bad : std::vector<std::string>{
           "", "af_", "xx_" + id + "_" + secret, "af_" + id + "-" + secret, "af_" + id + "_" + secret + "0",
        "af_" + id + "_" + secret.substr(1), "af_" + std::string(16, 'A') + "_" + secret,
        "af_" + id + "_" + std::string(63, 'b') + "g", "AF_" + id + "_" + secret}) {
    EXPECT_FALSE(ParseApiKey(bad)) << bad;
  }
}

TEST(ApiKeys, NamesAreChecked) {
  EXPECT_TRUE(GenerateApiKey(Role::kViewer, "").ok());
  EXPECT_TRUE(GenerateApiKey(Role::kViewer, std::string(128, 'x')).ok());
  EXPECT_EQ(GenerateApiKey(Role::kViewer, std::string(129, 'x')).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(GenerateApiKey(Role::kViewer, "a\nb").status().code(), Code::kInvalidArgument);
}

TEST(ApiKeys, BearerTokens) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer   abc  "), "abc");
  EXPECT_EQ(BearerToken("BEARER\tabc"), "abc");
  EXPECT_FALSE(BearerToken("Basic dXNlcjpwYXNz"));
  EXPECT_FALSE(BearerToken("Bearer"));
  EXPECT_FALSE(BearerToken("Bearer   "));
  EXPECT_FALSE(BearerToken("Bearerabc"));
  EXPECT_FALSE(BearerToken(""));
}

// ---- the request check

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteStore(":memory:", false);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  // A stored key of `role`; returns the whole key.
  std::string Key(Role role) {
    auto k = GenerateApiKey(role, "test");
    EXPECT_TRUE(k.ok());
    EXPECT_TRUE(store_->CreateApiKey(k->record).ok());
    return k->key;
  }
  static std::string Bearer(const std::string& key) { return "Bearer " + key; }

  std::unique_ptr<Store> store_;
};

TEST_F(AuthenticatorTest, OffAllowsEverything) {
  Authenticator a(store_.get(), {AuthMode::kOff});
  EXPECT_TRUE(a.Check("POST", "/api/v1/apikeys", "").ok());
  EXPECT_TRUE(a.Check("DELETE", "/api/v1/workflows/{id}", "Bearer garbage").ok());
}

TEST_F(AuthenticatorTest, RequiredChecksKeyAndRole) {
  Authenticator a(store_.get(), {AuthMode::kRequired});
  std::string viewer = Key(Role::kViewer), op = Key(Role::kOperator), admin = Key(Role::kAdmin);

  // Public routes need nothing.
  EXPECT_TRUE(a.Check("GET", "/healthz", "").ok());
  EXPECT_TRUE(a.Check("GET", "/metrics", "Bearer nonsense").ok());

  // No key, a malformed header, an unknown key, a wrong secret: 401.
  for (const std::string& h : std::vector<std::string>{"", "Basic x", "Bearer nonsense",
                               Bearer("af_" + std::string(16, '0') + "_" + std::string(64, '0')),
                               Bearer(viewer.substr(0, viewer.size() - 1) + (viewer.back() == '0' ? "1" : "0"))}) {
    Status s = a.Check("GET", "/api/v1/runs", h);
    EXPECT_EQ(s.code(), Code::kUnauthenticated) << h;
    EXPECT_EQ(s.message().find(viewer.substr(20)), std::string::npos) << "never echo a secret: " << s.message();
  }

  Principal who;
  ASSERT_TRUE(a.Check("GET", "/api/v1/runs", Bearer(viewer), &who).ok());
  EXPECT_EQ(who.role, Role::kViewer);
  EXPECT_EQ(who.key_id, ParseApiKey(viewer)->id);

  Status denied = a.Check("POST", "/api/v1/workflows/{id}/runs", Bearer(viewer));
  EXPECT_EQ(denied.code(), Code::kPermissionDenied);
  EXPECT_EQ(denied.details()["required_role"], "operator");
  EXPECT_EQ(denied.details()["role"], "viewer");
  EXPECT_TRUE(a.Check("POST", "/api/v1/workflows/{id}/runs", Bearer(op)).ok());
  EXPECT_TRUE(a.Check("POST", "/api/v1/runs/{run_id}/cancel", Bearer(op)).ok());
  EXPECT_EQ(a.Check("POST", "/api/v1/workflows", Bearer(op)).code(), Code::kPermissionDenied);
  EXPECT_EQ(a.Check("GET", "/api/v1/apikeys", Bearer(op)).code(), Code::kPermissionDenied);
  EXPECT_TRUE(a.Check("POST", "/api/v1/workflows", Bearer(admin)).ok());
  EXPECT_TRUE(a.Check("PUT", "/api/v1/agents/{name}", "bearer  " + admin).ok());

  // Revoked: 401, naming the key id.
  ASSERT_TRUE(store_->RevokeApiKey(ParseApiKey(op)->id).ok());
  Status revoked = a.Check("GET", "/api/v1/runs", Bearer(op));
  EXPECT_EQ(revoked.code(), Code::kUnauthenticated);
  EXPECT_NE(revoked.message().find("revoked"), std::string::npos) << revoked.message();
}

TEST_F(AuthenticatorTest, UseIsRecordedAtMostOncePerInterval) {
  Authenticator a(store_.get(), {AuthMode::kRequired, std::chrono::hours(1)});
  std::string viewer = Key(Role::kViewer);
  std::string id = ParseApiKey(viewer)->id;
  EXPECT_FALSE(store_->GetApiKey(id)->last_used_at);
  ASSERT_TRUE(a.Check("GET", "/api/v1/runs", Bearer(viewer)).ok());
  auto first = store_->GetApiKey(id)->last_used_at;
  ASSERT_TRUE(first);
  ASSERT_TRUE(store_->RecordApiKeyUse(id, 1).ok());  // mark: a second check must not write
  ASSERT_TRUE(a.Check("GET", "/api/v1/runs", Bearer(viewer)).ok());
  EXPECT_EQ(store_->GetApiKey(id)->last_used_at, std::optional<TimeMs>(1));
}

// ---- agent hosts

TEST(AgentHosts, ParseAndMatch) {
  auto list = AgentHostAllowList::Parse(" agents.internal, 10.0.0.5 ,*.Example.com,[::1]");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_FALSE(list->allows_all());
  EXPECT_TRUE(list->Allows("agents.internal"));
  EXPECT_TRUE(list->Allows("AGENTS.internal"));
  EXPECT_TRUE(list->Allows("10.0.0.5"));
  EXPECT_TRUE(list->Allows("a.example.com"));
  EXPECT_TRUE(list->Allows("b.a.example.com"));
  EXPECT_TRUE(list->Allows("::1"));
  EXPECT_FALSE(list->Allows("example.com"));
  EXPECT_FALSE(list->Allows("agents.internal.evil.com"));
  EXPECT_FALSE(list->Allows("10.0.0.50"));
  EXPECT_FALSE(list->Allows("169.254.169.254"));
  EXPECT_EQ(list->ToString(), "agents.internal, 10.0.0.5, *.example.com, ::1");

  EXPECT_TRUE(AgentHostAllowList::Parse("")->allows_all());
  EXPECT_TRUE(AgentHostAllowList::Parse(" , ")->allows_all());
  EXPECT_TRUE(AgentHostAllowList().Allows("anything"));
  for (const char* bad : {"http://x", "a b", "*", "a/b", "*.*.x", "x*"}) {
    EXPECT_EQ(AgentHostAllowList::Parse(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(AgentHosts, CheckUrlNamesTheHost) {
  auto list = AgentHostAllowList::Parse("127.0.0.1");
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->CheckUrl("url", "http://127.0.0.1:9000/agents/echo").ok());
  Status s = list->CheckUrl("health_url", "http://169.254.169.254/latest/meta-data");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("health_url: host '169.254.169.254' is not an allowed agent host"), std::string::npos)
      << s.message();
  EXPECT_EQ(s.details()["problems"][0]["field"], "health_url");
  EXPECT_TRUE(AgentHostAllowList().CheckUrl("url", "http://anywhere/").ok());
}

class RecordingCaller final : public AgentCaller {
 public:
  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint&, const AgentCall&, CancelSignal*) override {
    ++calls;
    AgentReply r;
    r.output = json{{"ok", true}};
    co_return r;
  }
  int calls = 0;
};

TEST(AgentHosts, TheCallerRefusesHostsNotListed) {
  auto inner = std::make_unique<RecordingCaller>();
  RecordingCaller* recorder = inner.get();
  auto caller = NewHostCheckingAgentCaller(std::move(inner), *AgentHostAllowList::Parse("agents.internal"));
  boost::asio::io_context io;
  auto call = [&](AgentEndpoint e) {
    AgentReply out;
    boost::asio::co_spawn(
        io,
        [&, e]() -> boost::asio::awaitable<void> {
          AgentCall c;
          boost::asio::awaitable<AgentReply> pending = caller->Call(e, c, nullptr);
          out = co_await std::move(pending);
        },
        boost::asio::detached);
    io.restart();
    io.run();
    return out;
  };
  AgentEndpoint allowed{"echo", AgentTransport::kHttp, "http://agents.internal:9000/echo"};
  EXPECT_EQ(call(allowed).outcome, AgentReply::Outcome::kOk);
  EXPECT_EQ(recorder->calls, 1);

  AgentEndpoint evil{"evil", AgentTransport::kHttp, "http://10.1.2.3:80/admin"};
  AgentReply refused = call(evil);
  EXPECT_EQ(refused.outcome, AgentReply::Outcome::kPermanent);
  EXPECT_NE(refused.error.find("agent 'evil'"), std::string::npos) << refused.error;
  EXPECT_NE(refused.error.find("host '10.1.2.3' is not an allowed agent host"), std::string::npos) << refused.error;
  EXPECT_EQ(recorder->calls, 1) << "no call was made";

  AgentEndpoint kafka{"k", AgentTransport::kKafka, "", "agent.k.requests"};
  EXPECT_EQ(call(kafka).outcome, AgentReply::Outcome::kOk);
  EXPECT_EQ(recorder->calls, 2);
}

}  // namespace
}  // namespace af::auth
