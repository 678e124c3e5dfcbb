// Bad input of every kind gets a JSON 4xx (never a 500, never a dropped
// connection) and the server keeps serving.
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class ApiErrorsE2E : public SharedStackTest {
 protected:
  // Sends one request and checks the answer is `status` with the error
  // format {"error": {"code", "message", "details"?}}; returns it.
  HttpResponse Expect(int status, const std::string& method, const std::string& path, const std::string& body = "",
                      Headers headers = {}) {
    HttpResponse r = Fetch(method, server().url() + path, body, std::move(headers));
    std::string what = method + " " + path.substr(0, 120);
    EXPECT_EQ(r.status, status) << what << " → " << r.Describe();
    if (r.status >= 400) CheckErrorBody(r, what);
    return r;
  }
  static void CheckErrorBody(const HttpResponse& r, const std::string& what) {
    EXPECT_THAT(r.Header("Content-Type"), HasSubstr("application/json")) << what;
    ASSERT_TRUE(r.body_json.is_object()) << what << ": body is not a JSON object: " << r.body;
    ASSERT_TRUE(r.body_json.contains("error") && r.body_json["error"].is_object()) << what << ": " << r.body;
    const json& e = r.body_json["error"];
    EXPECT_TRUE(e.contains("code") && e["code"].is_string()) << what << ": " << r.body;
    EXPECT_TRUE(e.contains("message") && e["message"].is_string() && !e["message"].get<std::string>().empty())
        << what << ": " << r.body;
  }
  void ExpectHealthy() {
    HttpResponse h = Fetch("GET", server().url() + "/healthz");
    EXPECT_EQ(h.status, 200) << h.Describe();
    EXPECT_EQ(h.body_json["status"], "ok");
  }
};

json ValidPlan(const std::string& name) {
  return json{{"name", name}, {"steps", json::array({json{{"id", "a"}, {"agent", "echo"}}})}};
}

TEST_F(ApiErrorsE2E, MalformedBodiesAreRejectedWithJson4xx) {
  Expect(400, "POST", "/api/v1/workflows", "{\"name\": \"x\", \"steps\": [");  // invalid JSON
  Expect(400, "POST", "/api/v1/workflows", "{not json at all}");
  Expect(400, "POST", "/api/v1/workflows", "[1, 2, 3]");   // not an object
  Expect(400, "POST", "/api/v1/workflows", "\"a string\"");
  Expect(400, "POST", "/api/v1/workflows", "42");
  Expect(400, "POST", "/api/v1/workflows", "null");
  Expect(400, "POST", "/api/v1/workflows", "   ");          // a body is required
  Expect(400, "POST", "/api/v1/agents", "");
  HttpResponse ct = Expect(415, "POST", "/api/v1/workflows", ValidPlan(UniqueName("ct")).dump(),
                           {{"Content-Type", "text/plain"}});
  EXPECT_EQ(ct.body_json["error"]["code"], "UNSUPPORTED_MEDIA_TYPE") << ct.body;
  Expect(415, "POST", "/api/v1/agents", R"({"name":"x","url":"http://127.0.0.1:1/a"})",
         {{"Content-Type", "application/x-www-form-urlencoded"}});

  // Invalid UTF-8 inside a JSON string, in each kind of body.
  std::string bad_utf8 = "{\"name\": \"bad-\xff\xfe-name\", \"steps\": [{\"id\": \"a\", \"agent\": \"echo\"}]}";
  Expect(400, "POST", "/api/v1/workflows", bad_utf8);
  Expect(400, "POST", "/api/v1/agents", "{\"name\": \"u\xc3\", \"url\": \"http://127.0.0.1:1/x\"}");
  json wf = CreateWorkflow(server(), ValidPlan(UniqueName("utf8")));
  Expect(400, "POST", "/api/v1/workflows/" + wf["workflow_id"].get<std::string>() + "/runs",
         "{\"input\": {\"text\": \"\xed\xa0\x80\"}}");  // an encoded surrogate is not UTF-8
  // Valid multi-byte UTF-8 is fine.
  HttpResponse ok = Fetch("POST", server().api() + "/workflows/" + wf["workflow_id"].get<std::string>() + "/runs",
                          "{\"input\": {\"text\": \"h\xc3\xa9llo \xe2\x9c\x93\"}}");
  EXPECT_EQ(ok.status, 202) << ok.Describe();
  ExpectHealthy();
}

TEST_F(ApiErrorsE2E, BodyOverOneMebibyteIs413) {
  std::string big = "{\"name\": \"big\", \"description\": \"" + std::string((1 << 20) + 10, 'x') +
                    "\", \"steps\": [{\"id\": \"a\", \"agent\": \"echo\"}]}";
  HttpResponse r = Expect(413, "POST", "/api/v1/workflows", big);
  EXPECT_EQ(r.body_json["error"]["code"], "TOO_LARGE") << r.body.substr(0, 300);
  ExpectHealthy();
}

TEST_F(ApiErrorsE2E, UnknownRoutesMethodsAndIdsAreJson404And405) {
  Expect(404, "GET", "/api/v1/nothing-here");
  Expect(404, "GET", "/api/v2/runs");
  Expect(404, "GET", "/nothing");  // "/" is the web console
  Expect(404, "GET", "/ui/no-such-file.js");
  Expect(404, "POST", "/api/v1/runs/abc/steps/extra");
  HttpResponse m = Expect(405, "DELETE", "/api/v1/runs");
  EXPECT_THAT(m.Header("Allow"), HasSubstr("GET")) << m.Describe();
  Expect(405, "PATCH", "/api/v1/workflows");
  Expect(405, "GET", "/api/v1/runs/run-x/cancel");
  Expect(405, "PUT", "/api/v1/healthz");

  HttpResponse nf = Expect(404, "GET", "/api/v1/runs/run-00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(nf.body_json["error"]["code"], "NOT_FOUND");
  Expect(404, "GET", "/api/v1/runs/run-does-not-exist/steps");
  Expect(404, "POST", "/api/v1/runs/run-does-not-exist/cancel", "{}");
  Expect(404, "POST", "/api/v1/runs/run-does-not-exist/retry", "{}");
  Expect(404, "GET", "/api/v1/runs/run-does-not-exist?wait=0.1");
  Expect(404, "GET", "/api/v1/workflows/wf-does-not-exist");
  Expect(404, "PUT", "/api/v1/workflows/wf-does-not-exist", ValidPlan("nope").dump());
  Expect(404, "DELETE", "/api/v1/workflows/wf-does-not-exist");
  Expect(404, "POST", "/api/v1/workflows/wf-does-not-exist/runs", "{}");
  Expect(404, "GET", "/api/v1/agents/no-such-agent");
  Expect(404, "DELETE", "/api/v1/agents/no-such-agent");
  ExpectHealthy();
}

TEST_F(ApiErrorsE2E, PathTraversalAndInvalidIdCharactersAreNever500) {
  // Each must be a JSON 400 or 404 (the id is invalid, or no route matches).
  const std::vector<std::pair<std::string, std::string>> requests = {
      {"GET", "/api/v1/runs/..%2F..%2Fetc%2Fpasswd"},
      {"GET", "/api/v1/runs/%2e%2e"},
      {"GET", "/api/v1/runs/.."},
      {"GET", "/api/v1/runs/../../etc/passwd"},
      {"GET", "/api/v1/workflows/..%2Fagentflow.db"},
      {"GET", "/api/v1/workflows/%2Fetc%2Fpasswd/versions"},
      {"GET", "/api/v1/runs/run%00x"},
      {"GET", "/api/v1/runs/a%20b/steps"},
      {"GET", "/api/v1/runs/%zz"},
      {"GET", "/api/v1/runs/%"},
      {"GET", "/api/v1/runs/%C3%A9t%C3%A9"},
      {"GET", "/api/v1/runs/%FF%FE"},
      {"GET", "/api/v1/runs/" + std::string(200, 'a')},
      {"GET", "/api/v1/agents/..%5C..%5Cwindows"},
      {"PUT", "/api/v1/agents/bad%2Fname"},
      {"DELETE", "/api/v1/agents/%3Cscript%3E"},
      {"POST", "/api/v1/runs/..%2F..%2Fx/cancel"},
      {"POST", "/api/v1/runs/%27%20OR%201%3D1/retry"},
      {"POST", "/api/v1/workflows/..%2F..%2Fx/runs"},
  };
  for (const auto& [method, path] : requests) {
    std::string body = method == "GET" || method == "DELETE" ? "" : R"({"name":"x","url":"http://127.0.0.1:1/a"})";
    HttpResponse r = Fetch(method, server().url() + path, body);
    EXPECT_TRUE(r.status == 400 || r.status == 404) << method << " " << path << " → " << r.Describe();
    CheckErrorBody(r, method + " " + path);
  }
  // The id rules in particular give 400 INVALID_ARGUMENT.
  HttpResponse r = Expect(400, "GET", "/api/v1/runs/..%2F..%2Fetc%2Fpasswd");
  EXPECT_EQ(r.body_json["error"]["code"], "INVALID_ARGUMENT");
  Expect(400, "GET", "/api/v1/workflows/" + std::string(129, 'w'));
  ExpectHealthy();
}

TEST_F(ApiErrorsE2E, BadQueryParametersAndRunRequestsAre400) {
  json wf = CreateWorkflow(server(), ValidPlan(UniqueName("q")));
  std::string runs = "/api/v1/workflows/" + wf["workflow_id"].get<std::string>() + "/runs";
  Expect(400, "GET", "/api/v1/runs?limit=0");
  Expect(400, "GET", "/api/v1/runs?limit=abc");
  Expect(400, "GET", "/api/v1/runs?limit=1001");
  Expect(400, "GET", "/api/v1/runs?status=DONE");
  Expect(400, "GET", "/api/v1/runs?page_token=not-a-token");
  Expect(400, "GET", "/api/v1/workflows?limit=-1");
  Expect(400, "GET", "/api/v1/workflows/" + wf["workflow_id"].get<std::string>() + "?version=0");
  Expect(404, "GET", "/api/v1/workflows/" + wf["workflow_id"].get<std::string>() + "?version=7");
  Expect(400, "GET", "/api/v1/runs/run-x?wait=soon");
  Expect(400, "GET", "/api/v1/runs/run-x?wait=-1");
  Expect(400, "POST", runs + "?wait=x", "{}");
  Expect(400, "POST", runs, R"({"input": [1, 2]})");
  Expect(400, "POST", runs, R"({"input": "text"})");
  Expect(400, "POST", runs, R"({"input": {}, "extra": 1})");
  Expect(400, "POST", runs, "{}", {{"Idempotency-Key", std::string(300, 'k')}});

  json run = StartRun(server(), wf["workflow_id"], json::object());
  std::string id = run["run_id"];
  Expect(400, "POST", "/api/v1/runs/" + id + "/cancel", R"({"reason": 5})");
  Expect(400, "POST", "/api/v1/runs/" + id + "/cancel", R"({"why": "x"})");
  Expect(400, "POST", "/api/v1/runs/" + id + "/retry", R"({"input": 3})");
  EXPECT_EQ(WaitRunTerminal(server(), id)["status"], "COMPLETED");
  Expect(409, "POST", "/api/v1/runs/" + id + "/retry", "{}");
  Expect(409, "POST", "/api/v1/runs/" + id + "/cancel", "{}");
  ExpectHealthy();
}

// The (step, field) pairs of a 400's details.problems.
std::set<std::pair<std::string, std::string>> ProblemKeys(const HttpResponse& r) {
  std::set<std::pair<std::string, std::string>> out;
  for (const auto& p : r.body_json["error"]["details"]["problems"]) {
    out.insert({p["step"].is_null() ? "" : p["step"].get<std::string>(), p["field"].get<std::string>()});
  }
  return out;
}

std::string ProblemText(const HttpResponse& r) { return r.body_json["error"]["details"]["problems"].dump(1); }

TEST_F(ApiErrorsE2E, PlanValidationListsEveryProblemWithStepAndField) {
  json plan = json::parse(R"({
    "name": "PLACEHOLDER",
    "colour": "blue",
    "steps": [
      {"id": "a", "agent": "echo", "extra": true},
      {"id": "a", "agent": "echo", "depends_on": ["a0"]},
      {"id": "b", "agent": "echo", "depends_on": ["ghost"]},
      {"id": "c", "agent": "echo", "depends_on": ["b"], "input": {"x": "${steps.d.output}"}},
      {"id": "d", "agent": "echo", "depends_on": ["b"], "input": {"y": "${steps.b.output"}},
      {"id": "e", "agent": "echo", "depends_on": ["b"], "when": "${input.x} =="},
      {"id": "f", "agent": "echo", "depends_on": ["b"],
       "retry": {"max_attempts": 0, "backoff_multiplier": 0.5, "initial_backoff_ms": -1, "jitter": 1}},
      {"id": "g", "agent": "echo", "depends_on": ["b"], "timeout_ms": 0},
      {"id": "h bad", "agent": ""},
      {"id": "i", "agent": "echo", "depends_on": ["b"], "max_parallel": 3}
    ]
  })");
  plan["name"] = UniqueName("invalid");
  HttpResponse r = Expect(400, "POST", "/api/v1/workflows", plan.dump());
  ASSERT_TRUE(r.body_json["error"]["details"]["problems"].is_array()) << r.body;
  EXPECT_EQ(r.body_json["error"]["code"], "INVALID_ARGUMENT");
  for (const auto& p : r.body_json["error"]["details"]["problems"]) {
    EXPECT_TRUE(p.contains("step") && (p["step"].is_null() || p["step"].is_string())) << p.dump();
    EXPECT_TRUE(p.contains("field") && p["field"].is_string()) << p.dump();
    EXPECT_TRUE(p.contains("message") && p["message"].is_string()) << p.dump();
  }
  auto keys = ProblemKeys(r);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"", "colour"},                     // unknown top-level field
      {"a", "extra"},                     // unknown step field
      {"a", "id"},                        // duplicate id
      {"a", "depends_on"},                // unknown step a0
      {"b", "depends_on"},                // unknown step ghost
      {"c", "input.x"},                   // d is not upstream of c
      {"d", "input.y"},                   // malformed reference
      {"e", "when"},                      // malformed condition
      {"f", "retry.max_attempts"},        // bad retry values
      {"f", "retry.backoff_multiplier"},
      {"f", "retry.initial_backoff_ms"},
      {"f", "retry.jitter"},
      {"g", "timeout_ms"},
      {"", "id"},                         // "h bad" (no valid id: step is null)
      {"", "agent"},
      {"i", "max_parallel"},              // without for_each
  };
  for (const auto& k : expected) {
    EXPECT_TRUE(keys.count(k)) << "missing problem step='" << k.first << "' field='" << k.second << "' in "
                               << ProblemText(r);
  }
  EXPECT_EQ(r.body_json["error"]["details"]["problems"].size(), expected.size()) << ProblemText(r);
  EXPECT_THAT(r.body_json["error"]["message"].get<std::string>(),
              HasSubstr(std::to_string(expected.size()) + " problem"));
  EXPECT_THAT(ProblemText(r), HasSubstr("not upstream"));

  // A cycle (reported on its own: upstream checks wait until it is fixed).
  json cyclic = json::parse(R"({
    "name": "PLACEHOLDER",
    "steps": [
      {"id": "x", "agent": "echo", "depends_on": ["z"]},
      {"id": "y", "agent": "echo", "depends_on": ["x"]},
      {"id": "z", "agent": "echo", "depends_on": ["y"]},
      {"id": "w", "agent": "echo", "depends_on": ["w"]}
    ]
  })");
  cyclic["name"] = UniqueName("cycle");
  HttpResponse c = Expect(400, "POST", "/api/v1/workflows", cyclic.dump());
  auto ckeys = ProblemKeys(c);
  EXPECT_TRUE(ckeys.count({"w", "depends_on"})) << ProblemText(c);  // self-dependency
  bool cycle_named = false;
  for (const auto& p : c.body_json["error"]["details"]["problems"]) {
    if (p["field"] == "depends_on" && p["message"].get<std::string>().find("cycle") != std::string::npos) {
      cycle_named = true;
      EXPECT_TRUE(p["step"] == "x" || p["step"] == "y" || p["step"] == "z") << p.dump();
    }
  }
  EXPECT_TRUE(cycle_named) << ProblemText(c);

  // Sequential plans: a reference to a later step.
  json later = json::parse(R"({"name": "PLACEHOLDER", "steps": [
      {"id": "one", "agent": "echo", "input": {"v": "${steps.two.output}"}},
      {"id": "two", "agent": "echo"}],
      "output": {"bad": "${steps.three.output}"}})");
  later["name"] = UniqueName("later");
  HttpResponse l = Expect(400, "POST", "/api/v1/workflows", later.dump());
  auto lkeys = ProblemKeys(l);
  EXPECT_TRUE(lkeys.count({"one", "input.v"})) << ProblemText(l);
  EXPECT_TRUE(lkeys.count({"", "output.bad"})) << ProblemText(l);

  // Structurally wrong plans.
  Expect(400, "POST", "/api/v1/workflows", R"({"name": "x"})");
  Expect(400, "POST", "/api/v1/workflows", R"({"name": "x", "steps": []})");
  Expect(400, "POST", "/api/v1/workflows", R"({"name": "x", "steps": {"id": "a"}})");
  Expect(400, "POST", "/api/v1/workflows", R"({"steps": [{"id": "a", "agent": "echo"}]})");
  Expect(400, "POST", "/api/v1/workflows", R"({"name": "x", "steps": [1, "two", null]})");
  // The same validation guards PUT.
  json wf = CreateWorkflow(server(), ValidPlan(UniqueName("put")));
  HttpResponse p = Expect(400, "PUT", "/api/v1/workflows/" + wf["workflow_id"].get<std::string>(), cyclic.dump());
  EXPECT_FALSE(ProblemKeys(p).empty());
  EXPECT_EQ(server().Get("/workflows/" + wf["workflow_id"].get<std::string>()).body_json["version"], 1);
  ExpectHealthy();
}

TEST_F(ApiErrorsE2E, DuplicateNamesAreConflicts) {
  std::string name = UniqueName("dup");
  CreateWorkflow(server(), ValidPlan(name));
  HttpResponse r = Expect(409, "POST", "/api/v1/workflows", ValidPlan(name).dump());
  EXPECT_EQ(r.body_json["error"]["code"], "ALREADY_EXISTS") << r.body;
  // PUT renaming onto another live workflow's name.
  json other = CreateWorkflow(server(), ValidPlan(UniqueName("dup-other")));
  Expect(409, "PUT", "/api/v1/workflows/" + other["workflow_id"].get<std::string>(), ValidPlan(name).dump());

  // Agents: url is required; the same name twice is a conflict.
  std::string agent = UniqueName("agent");
  HttpResponse missing = Expect(400, "POST", "/api/v1/agents", json{{"name", agent}}.dump());
  bool url_named = false;
  for (const auto& p : missing.body_json["error"]["details"]["problems"]) url_named = url_named || p["field"] == "url";
  EXPECT_TRUE(url_named) << missing.body;
  Expect(400, "POST", "/api/v1/agents", json{{"name", agent}, {"url", "ftp://example/x"}}.dump());
  Expect(400, "POST", "/api/v1/agents", json{{"name", "bad name"}, {"url", "http://127.0.0.1:1/x"}}.dump());
  Expect(400, "POST", "/api/v1/agents",
         json{{"name", agent}, {"url", "http://127.0.0.1:1/x"}, {"timeout_ms", 0}}.dump());
  Expect(400, "POST", "/api/v1/agents", json{{"name", agent}, {"url", "http://127.0.0.1:1/x"}, {"x", 1}}.dump());
  Expect(400, "PUT", "/api/v1/agents/" + agent, json{{"name", "other"}, {"url", "http://127.0.0.1:1/x"}}.dump());
  HttpResponse created = Fetch("POST", server().api() + "/agents",
                               json{{"name", agent}, {"url", "http://127.0.0.1:1/agents/x"}}.dump());
  ASSERT_EQ(created.status, 201) << created.Describe();
  HttpResponse dup = Expect(409, "POST", "/api/v1/agents",
                            json{{"name", agent}, {"url", "http://127.0.0.1:2/agents/y"}}.dump());
  EXPECT_EQ(dup.body_json["error"]["code"], "ALREADY_EXISTS");
  // PUT is an upsert, not a conflict.
  HttpResponse put = Fetch("PUT", server().api() + "/agents/" + agent,
                           json{{"url", "http://127.0.0.1:2/agents/y"}}.dump());
  EXPECT_EQ(put.status, 200) << put.Describe();
  EXPECT_EQ(put.body_json["url"], "http://127.0.0.1:2/agents/y");
  EXPECT_EQ(Fetch("DELETE", server().api() + "/agents/" + agent).status, 204);
  ExpectHealthy();
}


// BUG (found by this suite): Content-Type is matched as a case-sensitive
// substring (src/api/api.cc:51 ParseBody, `ct.find("json")`): a valid JSON
// body sent as "Application/JSON" gets 415 although media types are
// case-insensitive (RFC 9110 section 8.3.1), while non-JSON types that merely
// contain "json" ("text/jsonish", "text/plain; note=json") are accepted.
TEST_F(ApiErrorsE2E, ContentTypeIsMatchedAsACaseInsensitiveMediaType) {
  for (const char* ct : {"application/json", "application/json; charset=utf-8", "Application/JSON",
                         "APPLICATION/JSON; charset=UTF-8"}) {
    HttpResponse r = Fetch("POST", server().api() + "/workflows", ValidPlan(UniqueName("ct-ok")).dump(),
                           {{"Content-Type", ct}});
    EXPECT_EQ(r.status, 201) << "Content-Type: " << ct << " → " << r.Describe();
  }
  for (const char* ct : {"text/jsonish", "text/plain; note=json", "application/jsonp-not-really"}) {
    HttpResponse r = Expect(415, "POST", "/api/v1/workflows", ValidPlan(UniqueName("ct-bad")).dump(),
                            {{"Content-Type", ct}});
    (void)r;
  }
  ExpectHealthy();
}

// Regression (found by this suite; fixed meanwhile by 7b7ae69, "workflow
// names must be URL/CLI-safe ids"): POST /workflows accepted any non-empty
// string as the name, but the routes that take "a workflow id or name"
// validate it as an id (src/api/api.cc FindWorkflow → CheckId), so a workflow
// named "daily report" was created (201) and could never be found, triggered
// or filtered by name (400 "invalid workflow id"). Either such names are
// rejected at creation, or the by-name lookups accept them.
TEST_F(ApiErrorsE2E, WorkflowNameAcceptedAtCreationWorksForByNameLookups) {
  std::string name = UniqueName("daily report");  // contains a space
  json plan = ValidPlan(name);
  HttpResponse created = Fetch("POST", server().api() + "/workflows", plan.dump());
  ASSERT_TRUE(created.status == 201 || created.status == 400) << created.Describe();
  if (created.status == 400) {  // rejected up front: consistent, and says why
    bool name_named = false;
    for (const auto& p : created.body_json["error"]["details"]["problems"]) name_named |= p["field"] == "name";
    EXPECT_TRUE(name_named) << created.Describe();
    return;
  }
  std::string encoded;
  for (char c : name) encoded += c == ' ' ? std::string("%20") : std::string(1, c);
  HttpResponse got = server().Get("/workflows/" + encoded);
  EXPECT_EQ(got.status, 200) << "created as '" << name << "' but GET by name: " << got.Describe();
  HttpResponse run = server().Post("/workflows/" + encoded + "/runs", json::object());
  EXPECT_EQ(run.status, 202) << "created as '" << name << "' but trigger by name: " << run.Describe();
  EXPECT_EQ(server().Get("/workflows/" + created.body_json["workflow_id"].get<std::string>()).status, 200);
}

// A server of its own: these requests used to kill it.
class ApiRobustnessE2E : public E2ETest {
 protected:
  void SetUp() override { stack_.Start(); }
  Stack& stack() override { return stack_; }
  Stack stack_;
};

// BUG (found by this suite): a deeply nested JSON document well under the
// 1 MiB body limit (100,000 nested arrays, ~200 KB) crashes `agentflow serve`
// with SIGSEGV (stack overflow in nlohmann::json's recursive copy on an HTTP
// io thread), taking every run and request down with it. Request bodies are
// parsed without a nesting limit (src/api/api.cc ParseBody, line 60) and then
// deep-copied: run input at src/api/api.cc:282 (`body->value("input", ...)`),
// plan output / step input at src/model/plan.cc:152 and :238 (copied before
// the template depth check), agent metadata at src/api/api.cc:170.
// Expected: a JSON 4xx (or acceptance), and the server keeps serving.
TEST_F(ApiRobustnessE2E, DeeplyNestedJsonBodiesDoNotCrashServe) {
  Server& s = stack_.server();
  json wf = CreateWorkflow(s, json{{"name", "deep"}, {"steps", json::array({json{{"id", "a"}, {"agent", "echo"}}})}});
  const int kDepth = 100000;
  const std::string deep = std::string(kDepth, '[') + std::string(kDepth, ']');
  ASSERT_LT(deep.size() + 200, size_t{1} << 20);  // well under the body limit
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/workflows/" + wf["workflow_id"].get<std::string>() + "/runs", "{\"input\": {\"x\": " + deep + "}}"},
      {"/workflows", "{\"name\": \"deep-out\", \"steps\": [{\"id\": \"a\", \"agent\": \"echo\"}], \"output\": " + deep +
                         "}"},
      {"/workflows",
       "{\"name\": \"deep-in\", \"steps\": [{\"id\": \"a\", \"agent\": \"echo\", \"input\": {\"k\": " + deep + "}}]}"},
      {"/agents", "{\"name\": \"deep\", \"url\": \"http://127.0.0.1:1/a\", \"metadata\": {\"m\": " + deep + "}}"},
  };
  for (const auto& [path, body] : cases) {
    HttpResponse r = Fetch("POST", s.api() + path, body, {}, std::chrono::seconds(20));
    EXPECT_TRUE(r.status > 0 && r.status < 500) << "POST " << path << " with " << kDepth
                                                << " nested arrays → " << r.Describe();
    // Settled: either it answers /healthz again, or it has exited.
    WaitUntil([&] { return !s.Alive() || Fetch("GET", s.url() + "/healthz", "", {}, 1000ms).status == 200; }, 10s);
    bool alive = s.Alive();
    EXPECT_TRUE(alive) << "agentflow serve died on POST " << path << " (" << kDepth << " nested arrays); log:\n"
                       << Tail(s.stderr_path(), 2000);
    if (!alive) s.Restart();  // same port and data dir, to try the next case
  }
  EXPECT_EQ(Fetch("GET", s.url() + "/healthz").status, 200);
}

}  // namespace
}  // namespace af::e2e
