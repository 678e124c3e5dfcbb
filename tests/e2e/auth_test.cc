// Access control end to end: `agentflow serve --auth required` with keys
// made by `agentflow apikey`, the CLI with AGENTFLOW_API_KEY, revocation, the
// open health endpoints, secrets kept out of logs and responses, and the
// agent host allow-list (--agent-hosts) on registration and on calls.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// `agentflow --json apikey create --role ROLE --data-dir DIR`: the key.
std::string CreateKey(const TempDir& dir, const std::string& data_dir, const std::string& role) {
  CliResult r = RunCli({"--json", "apikey", "create", "--role", role, "--name", role + "-test", "--data-dir", data_dir},
                       dir);
  Require(r.exit_code == 0, "apikey create failed: " + r.Describe());
  json j = json::parse(r.out, nullptr, false);
  Require(!j.is_discarded() && j.contains("key"), "apikey create printed no key: " + r.Describe());
  return j["key"];
}

std::string Id(const std::string& key) { return key.substr(3, 16); }
std::string Secret(const std::string& key) { return key.substr(20); }
Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

class AuthE2E : public E2ETest {
 protected:
  void SetUp() override {
    data_dir_ = dir_.File("data");
    // The first admin key is made before the server ever ran.
    admin_ = CreateKey(dir_, data_dir_, "admin");
    Server::Options o;
    o.log_dir = dir_.path().string();
    o.command = {"serve", "--data-dir", data_dir_, "--auth", "required"};
    o.demo = true;
    server_ = std::make_unique<Server>(o);
    server_->Start();
  }
  void TearDown() override {
    if (HasFailure()) {
      for (const auto& f : server_->log_files()) std::cerr << "---- " << f << "\n" << Tail(f) << "\n";
    }
  }
  Stack& stack() override { throw HarnessError("AuthE2E has no shared stack"); }

  HttpResponse Call(const std::string& method, const std::string& path, const std::string& key,
                    const std::string& body = "") {
    return Fetch(method, server_->api() + path, body, key.empty() ? Headers{} : Bearer(key));
  }
  CliResult Cli(std::vector<std::string> args, const std::string& key) {
    args.insert(args.begin(), {"--server", server_->url()});
    EnvOverrides env;
    if (!key.empty()) env["AGENTFLOW_API_KEY"] = key;
    return RunCli(args, dir_, env);
  }

  TempDir dir_;
  std::string data_dir_;
  std::string admin_;
  std::unique_ptr<Server> server_;
};

TEST_F(AuthE2E, HealthEndpointsStayOpen) {
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    HttpResponse r = Fetch("GET", server_->url() + path);
    EXPECT_EQ(r.status, 200) << path << ": " << r.Describe();
  }
  EXPECT_EQ(Call("GET", "/healthz", "").status, 200);
}

TEST_F(AuthE2E, NoKeyOrAWrongOrRevokedKeyIs401) {
  HttpResponse none = Call("GET", "/runs", "");
  EXPECT_EQ(none.status, 401) << none.Describe();
  EXPECT_EQ(none.body_json["error"]["code"], "UNAUTHENTICATED");
  EXPECT_THAT(none.Header("WWW-Authenticate"), HasSubstr("Bearer"));

  std::string wrong = admin_.substr(0, admin_.size() - 4) + (admin_.substr(admin_.size() - 4) == "0000" ? "1111" : "0000");
  HttpResponse bad = Call("GET", "/runs", wrong);
  EXPECT_EQ(bad.status, 401) << bad.Describe();
  EXPECT_THAT(bad.Header("WWW-Authenticate"), HasSubstr("invalid_token"));
  EXPECT_EQ(Call("GET", "/runs", "not-a-key").status, 401);
  EXPECT_EQ(Fetch("GET", server_->api() + "/runs", "", {{"Authorization", "Basic YWRtaW46YWRtaW4="}}).status, 401);

  std::string viewer = CreateKey(dir_, data_dir_, "viewer");
  EXPECT_EQ(Call("GET", "/runs", viewer).status, 200);
  CliResult revoked = RunCli({"apikey", "revoke", Id(viewer), "--data-dir", data_dir_}, dir_);
  ASSERT_EQ(revoked.exit_code, 0) << revoked.Describe();
  EXPECT_THAT(revoked.out, HasSubstr("revoked"));
  HttpResponse after = Call("GET", "/runs", viewer);
  EXPECT_EQ(after.status, 401) << after.Describe();
  EXPECT_THAT(after.body_json["error"]["message"].get<std::string>(), HasSubstr("revoked"));
}

TEST_F(AuthE2E, RolesDecideWhatAKeyMayDo) {
  std::string viewer = CreateKey(dir_, data_dir_, "viewer");
  std::string op = CreateKey(dir_, data_dir_, "operator");

  // Viewer: reads, may not trigger.
  EXPECT_EQ(Call("GET", "/workflows", viewer).status, 200);
  HttpResponse denied = Call("POST", "/workflows/summarize/runs", viewer, R"({"input": {"topic": "x"}})");
  EXPECT_EQ(denied.status, 403) << denied.Describe();
  EXPECT_EQ(denied.body_json["error"]["code"], "PERMISSION_DENIED");
  EXPECT_EQ(denied.body_json["error"]["details"]["required_role"], "operator");

  // Admin creates a workflow; an operator may not.
  json plan{{"name", "nap"}, {"steps", json::array({{{"id", "nap"}, {"agent", "sleep"}, {"input", {{"ms", 30000}}}}})}};
  EXPECT_EQ(Call("POST", "/workflows", op, plan.dump()).status, 403);
  HttpResponse created = Call("POST", "/workflows", admin_, plan.dump());
  ASSERT_EQ(created.status, 201) << created.Describe();

  // Operator triggers and cancels.
  HttpResponse started = Call("POST", "/workflows/nap/runs", op, "{}");
  ASSERT_EQ(started.status, 202) << started.Describe();
  std::string run_id = started.body_json["run_id"];
  HttpResponse cancelled = Call("POST", "/runs/" + run_id + "/cancel", op, R"({"reason": "test"})");
  EXPECT_EQ(cancelled.status, 202) << cancelled.Describe();
  HttpResponse done = Call("GET", "/runs/" + run_id + "?wait=20", viewer);
  EXPECT_EQ(done.body_json["status"], "CANCELLED") << done.Describe();
  EXPECT_EQ(Call("POST", "/runs/" + run_id + "/retry", viewer).status, 403);

  // Agents are admin's to change.
  json agent{{"name", "extra"}, {"url", "http://127.0.0.1:9/extra"}};
  EXPECT_EQ(Call("POST", "/agents", op, agent.dump()).status, 403);
  EXPECT_EQ(Call("POST", "/agents", admin_, agent.dump()).status, 201);
}

TEST_F(AuthE2E, TheCliSendsTheKeyFromTheEnvironment) {
  std::string op = CreateKey(dir_, data_dir_, "operator");
  CliResult without = Cli({"run", "start", "summarize", "--input", R"({"topic": "hi"})"}, "");
  EXPECT_EQ(without.exit_code, 1) << without.Describe();
  EXPECT_THAT(without.err, HasSubstr("authentication required"));

  CliResult with = Cli({"run", "start", "summarize", "--input", R"({"topic": "hello keys"})", "--watch"}, op);
  ASSERT_EQ(with.exit_code, 0) << with.Describe();
  EXPECT_THAT(with.out, HasSubstr("HELLO KEYS"));

  CliResult flag = RunCli({"--server", server_->url(), "--api-key", op, "workflow", "list"}, dir_);
  EXPECT_EQ(flag.exit_code, 0) << flag.Describe();
  EXPECT_THAT(flag.out, HasSubstr("summarize"));

  CliResult forbidden = Cli({"agent", "delete", "echo"}, op);
  EXPECT_EQ(forbidden.exit_code, 1);
  EXPECT_THAT(forbidden.err, HasSubstr("needs role admin"));
}

TEST_F(AuthE2E, SecretsNeverAppearInLogsOrResponses) {
  std::string viewer = CreateKey(dir_, data_dir_, "viewer");
  // Use every key, right and wrong, so the server has something to log.
  EXPECT_EQ(Call("GET", "/runs", viewer).status, 200);
  EXPECT_EQ(Call("POST", "/workflows/summarize/runs", viewer, "{}").status, 403);
  EXPECT_EQ(Call("GET", "/runs", viewer + "x").status, 401);
  HttpResponse made = Call("POST", "/apikeys", admin_, R"({"role": "operator", "name": "over http"})");
  ASSERT_EQ(made.status, 201) << made.Describe();
  std::string http_key = made.body_json["key"];
  EXPECT_EQ(Call("GET", "/runs", http_key).status, 200);

  HttpResponse list = Call("GET", "/apikeys", admin_);
  ASSERT_EQ(list.status, 200) << list.Describe();
  EXPECT_EQ(list.body_json["items"].size(), 3u);
  for (const auto& item : list.body_json["items"]) {
    std::set<std::string> fields;
    for (auto it = item.begin(); it != item.end(); ++it) fields.insert(it.key());
    EXPECT_EQ(fields, (std::set<std::string>{"id", "name", "role", "created_at", "last_used_at", "revoked_at"}));
  }
  CliResult cli_list = RunCli({"apikey", "list", "--data-dir", data_dir_}, dir_);
  ASSERT_EQ(cli_list.exit_code, 0) << cli_list.Describe();
  EXPECT_THAT(cli_list.out, HasSubstr(Id(viewer)));
  EXPECT_THAT(cli_list.out, HasSubstr("operator"));

  std::string logs;
  for (const auto& f : server_->log_files()) logs += ReadFile(f);
  ASSERT_THAT(logs, HasSubstr("auth: 403"));  // the denials were logged...
  for (const std::string& key : {admin_, viewer, http_key}) {
    for (const std::string& text : {logs, list.body, cli_list.out}) {
      EXPECT_THAT(text, Not(HasSubstr(Secret(key)))) << "a key's secret leaked";
    }
  }
}

// Open (no --auth) on loopback: a warning that the API is open, for local
// development; and the agent host allow-list, on registration and on calls.
TEST(AccessE2E, AgentHostsLimitRegistrationAndCalls) {
  TempDir dir;
  Server::Options o;
  o.log_dir = dir.path().string();
  // The demo agents listen on 127.0.0.1; "localhost" is another host name.
  o.command = {"serve", "--data-dir", dir.File("data"), "--agent-hosts", "localhost,agents.internal"};
  o.demo = true;
  Server s(o);
  s.Start();
  std::string err = ReadFile(s.stderr_path()) + ReadFile(s.stdout_path());
  EXPECT_THAT(err, HasSubstr("is open (--auth off)"));
  EXPECT_THAT(err, HasSubstr("agent URLs are limited to the hosts localhost, agents.internal"));

  HttpResponse refused = s.Post("/agents", json{{"name", "meta"}, {"url", "http://169.254.169.254/latest"}});
  EXPECT_EQ(refused.status, 400) << refused.Describe();
  EXPECT_THAT(refused.body_json["error"]["message"].get<std::string>(), HasSubstr("host '169.254.169.254'"));
  EXPECT_EQ(s.Post("/agents", json{{"name", "ok"}, {"url", "http://agents.internal:9000/ok"}}).status, 201);

  // The demo agents were registered at 127.0.0.1, which is not allowed: the
  // executor refuses to call them and the step fails without retries.
  json run = StartRun(s, "summarize", {{"topic", "x"}});
  json done = WaitRunTerminal(s, run["run_id"]);
  EXPECT_EQ(done["status"], "FAILED") << done.dump();
  EXPECT_THAT(done["error_message"].get<std::string>(), HasSubstr("host '127.0.0.1' is not an allowed agent host"));
  EXPECT_EQ(RowsOf(Steps(s, run["run_id"]), "fetch").size(), 1u) << "not retried";
}

}  // namespace
}  // namespace af::e2e
