// Agent module tests: the protocol's pure functions as tables, then the HTTP
// caller against the demo agents on loopback, then the directories.
#include "agent/agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <future>
#include <map>
#include <thread>

#include "agent/demo_agents.h"
#include "http/http.h"
#include "storage/store.h"

namespace af {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Outcome = AgentReply::Outcome;

// ---------------------------------------------------------------- pure functions

TEST(IdempotencyKeyTest, RunStepAndIndex) {
  AgentCall call;
  call.run_id = "run-1";
  call.step_id = "fetch";
  EXPECT_EQ(IdempotencyKey(call), "run-1/fetch");
  call.item_index = 0;
  EXPECT_EQ(IdempotencyKey(call), "run-1/fetch/0");
  call.item_index = 12;
  call.attempt = 3;  // the attempt is not part of the key: retries share it
  EXPECT_EQ(IdempotencyKey(call), "run-1/fetch/12");
}

// The body is written directly; it must be what the JSON library prints for
// the same object (the form agents have always received).
TEST(AgentRequestBodyTest, IsTheJsonLibrarysTextOfTheCall) {
  auto reference = [](const AgentCall& c) {
    json body = {{"run_id", c.run_id}, {"step_id", c.step_id}, {"attempt", c.attempt}, {"input", c.input}};
    if (c.item_index) body["item_index"] = *c.item_index;
    return body.dump(-1, ' ', false, json::error_handler_t::replace);
  };
  std::vector<AgentCall> calls(6);
  calls[0].run_id = "run-1";
  calls[0].step_id = "fetch";
  calls[0].input = json::object();
  calls[1] = calls[0];
  calls[1].input = {{"text", "hello"}, {"n", 3}, {"nested", {{"list", {1, 2.5, nullptr, true}}}}};
  calls[1].attempt = 4;
  calls[2] = calls[1];
  calls[2].item_index = 0;
  calls[3] = calls[1];
  calls[3].item_index = 39;
  calls[3].step_id = "quote\"back\\slash\ttab\x01";
  calls[4].run_id = "r\xc3\xa9sum\xc3\xa9";  // UTF-8
  calls[4].step_id = "bad\xff";              // invalid UTF-8: replaced, not thrown on
  calls[4].input = {{"s", "caf\xc3\xa9 \xfe"}, {"k\"ey", "line\nbreak"}};
  calls[5].run_id = "r";
  calls[5].step_id = "s";
  calls[5].input = "a plain string input";
  for (const AgentCall& c : calls) {
    EXPECT_EQ(AgentRequestBody(c), reference(c)) << c.step_id;
  }
  EXPECT_EQ(AgentRequestBody(calls[2]),
            R"({"attempt":4,"input":{"n":3,"nested":{"list":[1,2.5,null,true]},"text":"hello"},)"
            R"("item_index":0,"run_id":"run-1","step_id":"fetch"})");
}

TEST(ParseRetryAfterTest, DeltaSeconds) {
  EXPECT_EQ(ParseRetryAfterMs("120", 0), 120000);
  EXPECT_EQ(ParseRetryAfterMs(" 5 ", 0), 5000);
  EXPECT_EQ(ParseRetryAfterMs("0", 0), 0);
  EXPECT_EQ(ParseRetryAfterMs("86400000", 0), 86400000000);  // no cap here: the retry policy decides
  EXPECT_EQ(ParseRetryAfterMs("", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("-1", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("1.5", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("soon", 0), std::nullopt);
  EXPECT_EQ(ParseRetryAfterMs("99999999999999999999", 0), std::nullopt);  // not representable
}

TEST(ParseRetryAfterTest, HttpDates) {
  const TimeMs at = 1445412480000;  // 2015-10-21T07:28:00Z
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", at - 60000), 60000);
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", at - 1500), 1500);
  EXPECT_EQ(ParseRetryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", at + 5000), 0);  // past: retry now
  EXPECT_EQ(ParseRetryAfterMs("Wednesday, 21-Oct-15 07:28:00 GMT", at - 60000), 60000);  // RFC 850
  EXPECT_EQ(ParseRetryAfterMs("Wed Oct 21 07:28:00 2015", at - 60000), 60000);           // asctime
  EXPECT_EQ(ParseRetryAfterMs("Sun Nov  6 08:49:37 1994", 784111777000 - 1000), 1000);
  EXPECT_EQ(ParseRetryAfterMs("Thu, 01 Jan 1970 00:00:10 GMT", 0), 10000);
  EXPECT_EQ(ParseRetryAfterMs("Sat, 29 Feb 2020 00:00:00 GMT", 1582934400000 - 1), 1);
  for (const char* bad : {"Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT",
                          "Wed, 21 Oct 2015 24:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 UTC", "Wed, 21 Oct 2015",
                          "2015-10-21T07:28:00Z"}) {
    EXPECT_EQ(ParseRetryAfterMs(bad, 0), std::nullopt) << bad;
  }
}

Result<http::ClientResponse> Reply(int status, std::string body, http::Headers headers = {}) {
  http::ClientResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

TEST(ClassifyHttpReplyTest, SuccessNeedsAJsonBody) {
  AgentReply r = ClassifyHttpReply(Reply(200, R"({"a":1})"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, (json{{"a", 1}}));
  EXPECT_EQ(r.http_status, 200);
  EXPECT_TRUE(r.error.empty());

  r = ClassifyHttpReply(Reply(201, "[1, 2]"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, json::array({1, 2}));

  r = ClassifyHttpReply(Reply(200, "\"just a string\""), 1000);
  EXPECT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, "just a string");

  for (const char* body : {"", "hello", "{\"a\":", "<html></html>"}) {
    r = ClassifyHttpReply(Reply(200, body), 1000);
    EXPECT_EQ(r.outcome, Outcome::kPermanent) << body;
    EXPECT_NE(r.error.find("agent returned a non-JSON body"), std::string::npos) << r.error;
    EXPECT_EQ(r.http_status, 200);
  }
  r = ClassifyHttpReply(Reply(204, ""), 1000);  // 204 has no body, hence no output
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.http_status, 204);
}

TEST(ClassifyHttpReplyTest, DeeplyNestedOutputIsAPermanentFailureNotACrash) {
  std::string deep = std::string(200000, '[') + std::string(200000, ']');
  AgentReply r = ClassifyHttpReply(Reply(200, deep), 1000);
  EXPECT_EQ(r.outcome, AgentReply::Outcome::kPermanent);
  EXPECT_NE(r.error.find("nested"), std::string::npos) << r.error;
}

TEST(ClassifyHttpReplyTest, StatusClasses) {
  struct Case {
    int status;
    Outcome outcome;
  };
  const Case cases[] = {
      {301, Outcome::kPermanent}, {302, Outcome::kPermanent}, {400, Outcome::kPermanent},
      {401, Outcome::kPermanent}, {403, Outcome::kPermanent}, {404, Outcome::kPermanent},
      {409, Outcome::kPermanent}, {413, Outcome::kPermanent}, {422, Outcome::kPermanent},
      {408, Outcome::kRetryable}, {429, Outcome::kRetryable}, {500, Outcome::kRetryable},
      {502, Outcome::kRetryable}, {503, Outcome::kRetryable}, {504, Outcome::kRetryable},
      {599, Outcome::kRetryable},
  };
  for (const Case& c : cases) {
    AgentReply r = ClassifyHttpReply(Reply(c.status, R"({"error":"x"})"), 1000);
    EXPECT_EQ(r.outcome, c.outcome) << c.status;
    EXPECT_EQ(r.http_status, c.status);
    EXPECT_EQ(r.error.rfind("HTTP " + std::to_string(c.status) + ": {\"error\":\"x\"}", 0), 0u) << r.error;
    EXPECT_FALSE(r.retry_after_ms.has_value());
    EXPECT_TRUE(r.output.is_null());
  }
  EXPECT_EQ(ClassifyHttpReply(Reply(500, R"({"error":"boom"})"), 1000).error, R"(HTTP 500: {"error":"boom"})");
  EXPECT_EQ(ClassifyHttpReply(Reply(502, ""), 1000).error, "HTTP 502");
}

TEST(ClassifyHttpReplyTest, RetryAfterSecondsAndDate) {
  AgentReply r = ClassifyHttpReply(Reply(503, "busy", {{"Retry-After", "7"}}), 1000);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.retry_after_ms, 7000);

  r = ClassifyHttpReply(Reply(429, "", {{"retry-after", "0"}}), 1000);
  EXPECT_EQ(r.retry_after_ms, 0);

  // An HTTP date two minutes ahead (whole seconds, so between 119 and 120 s).
  time_t t = static_cast<time_t>(NowMs() / 1000 + 120);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  r = ClassifyHttpReply(Reply(503, "", {{"Retry-After", date}}), 1000);
  ASSERT_TRUE(r.retry_after_ms.has_value()) << date;
  EXPECT_GE(*r.retry_after_ms, 100000) << date;
  EXPECT_LE(*r.retry_after_ms, 120000) << date;

  r = ClassifyHttpReply(Reply(503, "", {{"Retry-After", "whenever"}}), 1000);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_FALSE(r.retry_after_ms.has_value());
}

TEST(ClassifyHttpReplyTest, ErrorTextIsAShortValidExcerpt) {
  std::string big(5000, 'x');
  AgentReply r = ClassifyHttpReply(Reply(500, big), 1000);
  EXPECT_LE(r.error.size(), std::string("HTTP 500: ").size() + 300 + 3);
  EXPECT_EQ(r.error.substr(r.error.size() - 3), "...");

  // Invalid UTF-8 and newlines must not leak into messages that become JSON.
  r = ClassifyHttpReply(Reply(500, "bad \xff\xfe bytes\nline2\n"), 1000);
  EXPECT_EQ(r.error, "HTTP 500: bad ?? bytes line2");
  EXPECT_NO_THROW(json(r.error).dump());

  // Multi-byte characters are never cut in half.
  std::string euros;
  for (int i = 0; i < 200; ++i) euros += "\xE2\x82\xAC";
  r = ClassifyHttpReply(Reply(500, euros), 1000);
  EXPECT_NO_THROW(json(r.error).dump());
}

TEST(ClassifyHttpReplyTest, ClientErrors) {
  AgentReply r = ClassifyHttpReply(Status::DeadlineExceeded("request to http://x timed out after 1500 ms"), 1500);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.error, "timed out after 1500 ms");
  EXPECT_EQ(r.http_status, 0);

  r = ClassifyHttpReply(Status::Unavailable("cannot connect to 127.0.0.1:1: Connection refused"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_NE(r.error.find("Connection refused"), std::string::npos);

  r = ClassifyHttpReply(Status::Cancelled("run cancelled by alice"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kCancelled);

  r = ClassifyHttpReply(Status::TooLarge("response larger than 100 bytes"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.error, "response larger than 100 bytes");
  // With the client's details: the size (when the agent sent Content-Length) and the limit.
  r = ClassifyHttpReply(Status(Code::kTooLarge, "response is 20971520 bytes, over the limit of 16777216 bytes",
                               {{"bytes", 20971520}, {"limit", 16777216}}),
                        1000);
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.error.rfind("agent response is 20971520 bytes, over the limit of 16777216 bytes. Hint:", 0), 0u)
      << r.error;
  r = ClassifyHttpReply(Status(Code::kTooLarge, "response is larger, over the limit of 100 bytes",
                               {{"bytes", nullptr}, {"limit", 100}}),
                        1000);
  EXPECT_EQ(r.error.rfind("agent response is larger (it sent no Content-Length; reading stopped), over the limit of "
                          "100 bytes", 0),
            0u)
      << r.error;

  r = ClassifyHttpReply(Status::InvalidArgument("unsupported URL 'ftp://x'"), 1000);
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
}

// ---------------------------------------------------------------- caller against the demo agents

asio::awaitable<void> DoCall(AgentCaller* caller, AgentEndpoint agent, AgentCall call, CancelSignal* cancel,
                             AgentReply* out) {
  asio::awaitable<AgentReply> op = caller->Call(agent, call, cancel);
  AgentReply r = co_await std::move(op);
  *out = std::move(r);
}

asio::awaitable<void> CancelAfter(CancelSignal* signal, std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
  signal->Cancel("run cancelled by test");
}

class DemoAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = StartDemoAgents("127.0.0.1", 0);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    demo_ = std::move(*started);
    caller_ = NewHttpAgentCaller(ioc_.get_executor());
  }
  void TearDown() override {
    caller_.reset();
    if (demo_) demo_->Stop();
  }

  AgentEndpoint Endpoint(const std::string& name) {
    AgentEndpoint e;
    e.name = name;
    e.url = demo_->base_url() + "/agents/" + name;
    return e;
  }

  AgentReply Call(const std::string& name, json input, int64_t timeout_ms = 10000, const std::string& step = "s1",
                  std::optional<int> item = std::nullopt, CancelSignal* cancel = nullptr, AgentCaller* caller = nullptr) {
    AgentCall call;
    call.run_id = "run-1";
    call.step_id = step;
    call.item_index = item;
    call.input = std::move(input);
    call.timeout_ms = timeout_ms;
    AgentReply out;
    out.error = "not run";
    asio::co_spawn(ioc_, DoCall(caller ? caller : caller_.get(), Endpoint(name), std::move(call), cancel, &out),
                   asio::detached);
    ioc_.restart();
    ioc_.run();
    return out;
  }

  std::unique_ptr<DemoAgents> demo_;
  asio::io_context ioc_;
  std::unique_ptr<AgentCaller> caller_;
};

TEST_F(DemoAgentsTest, EchoAndUpper) {
  json input = {{"text", "hello"}, {"n", 3}};
  AgentReply r = Call("echo", input);
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output, (json{{"echo", input}}));
  EXPECT_EQ(r.http_status, 200);

  r = Call("upper", {{"text", "Hello, wörld"}});
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output, (json{{"text", "HELLO, WöRLD"}}));

  r = Call("upper", {{"txt", "typo"}});
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.http_status, 400);
  EXPECT_NE(r.error.find("input.text"), std::string::npos) << r.error;
}

TEST_F(DemoAgentsTest, FailIsRetryableUnlessPermanent) {
  AgentReply r = Call("fail", json::object());
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.http_status, 500);
  EXPECT_EQ(r.error.rfind("HTTP 500: {\"error\":", 0), 0u) << r.error;

  r = Call("fail", {{"permanent", true}, {"message", "bad input"}});
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(r.error, R"(HTTP 400: {"error":"bad input"})");
}

TEST_F(DemoAgentsTest, FlakyFailsNTimesPerIdempotencyKeyThenSucceeds) {
  json input = {{"failures", 2}};
  AgentReply r = Call("flaky", input);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.http_status, 503);
  r = Call("flaky", input);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  r = Call("flaky", input);
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output["attempts"], 3);
  EXPECT_EQ(r.output["input"], input);

  // Another step, and each for_each item, has a key of its own.
  EXPECT_EQ(Call("flaky", input, 10000, "s2").outcome, Outcome::kRetryable);
  EXPECT_EQ(Call("flaky", {{"failures", 1}}, 10000, "s3", 0).outcome, Outcome::kRetryable);
  EXPECT_EQ(Call("flaky", {{"failures", 1}}, 10000, "s3", 1).outcome, Outcome::kRetryable);
  EXPECT_EQ(Call("flaky", {{"failures", 1}}, 10000, "s3", 0).outcome, Outcome::kOk);
}

TEST_F(DemoAgentsTest, SleepCountsCallsPerIdempotencyKeyWhenAsked) {
  json input = {{"ms", 1}, {"count_calls", true}};
  AgentReply r = Call("sleep", input, 10000, "nap");
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output, (json{{"slept_ms", 1}, {"idempotency_key", "run-1/nap"}, {"calls", 1}}));
  r = Call("sleep", input, 10000, "nap");
  EXPECT_EQ(r.output["calls"], 2);
  r = Call("sleep", input, 10000, "other");
  EXPECT_EQ(r.output["calls"], 1);
}

TEST_F(DemoAgentsTest, SleepCompletesOrTimesOut) {
  AgentReply r = Call("sleep", {{"ms", 20}});
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output, (json{{"slept_ms", 20}}));

  auto start = std::chrono::steady_clock::now();
  r = Call("sleep", {{"ms", 20000}}, /*timeout_ms=*/200);
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.error, "timed out after 200 ms");
  EXPECT_EQ(r.http_status, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(DemoAgentsTest, CancelDuringSleepIsCancelledPromptly) {
  CancelSignal signal;
  asio::co_spawn(ioc_, CancelAfter(&signal, 100ms), asio::detached);
  auto start = std::chrono::steady_clock::now();
  AgentReply r = Call("sleep", {{"ms", 20000}}, 60000, "s1", std::nullopt, &signal);
  EXPECT_EQ(r.outcome, Outcome::kCancelled) << r.error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

TEST_F(DemoAgentsTest, TransportAndProtocolFailures) {
  // A path no agent serves.
  AgentReply r = Call("nosuchagent", json::object());
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.http_status, 404);

  // Nothing listens on the port any more.
  AgentEndpoint gone = Endpoint("echo");
  demo_->Stop();
  AgentCall call;
  call.run_id = "run-1";
  call.step_id = "s1";
  call.timeout_ms = 5000;
  AgentReply out;
  asio::co_spawn(ioc_, DoCall(caller_.get(), gone, call, nullptr, &out), asio::detached);
  ioc_.restart();
  ioc_.run();
  EXPECT_EQ(out.outcome, Outcome::kRetryable) << out.error;
  EXPECT_EQ(out.http_status, 0);
}

TEST_F(DemoAgentsTest, ResponseOverLimitIsPermanent) {
  HttpAgentCallerOptions opts;
  opts.max_response_bytes = 10;
  auto small = NewHttpAgentCaller(ioc_.get_executor(), opts);
  AgentReply r = Call("echo", {{"text", std::string(100, 'x')}}, 10000, "s1", std::nullopt, nullptr, small.get());
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_THAT(r.error, ::testing::HasSubstr("agent response is "));
  EXPECT_THAT(r.error, ::testing::HasSubstr(" bytes, over the limit of 10 bytes. Hint:"));
}

TEST_F(DemoAgentsTest, RecordsHealthAndBadJson) {
  std::vector<Agent> records = demo_->Records();
  std::map<std::string, Agent> by_name;
  for (auto& a : records) by_name[a.name] = a;
  ASSERT_EQ(by_name.size(), 5u);
  for (const char* name : {"echo", "upper", "sleep", "fail", "flaky"}) {
    ASSERT_EQ(by_name.count(name), 1u) << name;
    const Agent& a = by_name[name];
    EXPECT_EQ(a.url, demo_->base_url() + "/agents/" + name);
    EXPECT_EQ(a.timeout_ms, std::string(name) == "sleep" ? 600000 : 30000);
    EXPECT_EQ(a.max_concurrency, 0);
    EXPECT_EQ(a.metadata["demo"], true);
    EXPECT_TRUE(a.metadata["description"].is_string());
  }
  EXPECT_EQ(demo_->base_url(), "http://127.0.0.1:" + std::to_string(demo_->port()));

  http::ClientRequest req;
  req.url = demo_->base_url() + "/healthz";
  auto health = http::FetchSync(req);
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ(json::parse(health->body), (json{{"status", "ok"}}));

  req.method = "POST";
  req.url = demo_->base_url() + "/agents/echo";
  req.body = "not json";
  auto bad = http::FetchSync(req);
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400);

  // Anything sent without the protocol's input field echoes null.
  req.body = R"({"run_id":"r"})";
  auto bare = http::FetchSync(req);
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(json::parse(bare->body), (json{{"echo", nullptr}}));
}

// ---------------------------------------------------------------- directories

// Runs a directory's Resolve to completion on a private loop.
Result<AgentEndpoint> ResolveNow(AgentDirectory* dir, const std::string& name) {
  asio::io_context ioc;
  Result<AgentEndpoint> out = Status::Internal("not run");
  asio::co_spawn(
      ioc, [&]() -> asio::awaitable<void> { out = co_await dir->Resolve(name); }, asio::detached);
  ioc.run();
  return out;
}

TEST(StaticAgentDirectoryTest, ResolvesConfiguredAgents) {
  AgentEndpoint e;
  e.name = "echo";
  e.url = "http://127.0.0.1:9000/agents/echo";
  e.timeout_ms = 1234;
  e.max_concurrency = 4;
  auto dir = NewStaticAgentDirectory({e});
  auto r = ResolveNow(dir.get(), "echo");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->url, e.url);
  EXPECT_EQ(r->timeout_ms, 1234);
  EXPECT_EQ(r->max_concurrency, 4);

  r = ResolveNow(dir.get(), "nope");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("Hint: pass --agent nope=URL"), std::string::npos) << r.status().message();
}

// Implements only the agents part of Store; everything else is an error.
class FakeAgentStore final : public Store {
 public:
  std::map<std::string, Agent> agents;
  Status fail_with;  // returned by GetAgent when set
  // When set, GetAgent waits (at most 2 s) for it before it reads.
  std::shared_future<void> gate;
  std::atomic<int> reads{0};
  std::atomic<std::thread::id> read_on{};

  Result<Agent> GetAgent(const std::string& name) override {
    ++reads;
    read_on = std::this_thread::get_id();
    if (gate.valid()) gate.wait_for(std::chrono::seconds(2));
    if (!fail_with.ok()) return fail_with;
    auto it = agents.find(name);
    if (it == agents.end()) return Status::NotFound("agent " + name);
    return it->second;
  }
  Result<Agent> CreateAgent(const Agent& a) override {
    if (agents.count(a.name)) return Status::AlreadyExists(a.name);
    return agents[a.name] = a;
  }
  Result<Agent> UpsertAgent(const Agent& a) override { return agents[a.name] = a; }
  Result<std::vector<Agent>> ListAgents() override {
    std::vector<Agent> out;
    for (auto& [n, a] : agents) out.push_back(a);
    return out;
  }
  Status DeleteAgent(const std::string& name) override {
    return agents.erase(name) ? Status::Ok() : Status::NotFound(name);
  }
  Status RecordAgentHealth(const AgentHealthUpdate& u) override {
    auto it = agents.find(u.name);
    if (it == agents.end()) return Status::NotFound(u.name);
    it->second.health = u.health;
    it->second.health_error = u.error;
    return Status::Ok();
  }

  Result<Workflow> CreateWorkflow(const NewWorkflow&) override { return No(); }
  Result<Workflow> UpdateWorkflow(const std::string&, const NewWorkflow&) override { return No(); }
  Result<Workflow> GetWorkflow(const std::string&, std::optional<int>) override { return No(); }
  Result<Workflow> GetWorkflowByName(const std::string&) override { return No(); }
  Result<Page<Workflow>> ListWorkflows(int, const std::string&) override { return No(); }
  Result<std::vector<Workflow>> ListWorkflowVersions(const std::string&) override { return No(); }
  Status DeleteWorkflow(const std::string&) override { return No(); }
  Result<CreatedRun> CreateRun(const NewRun&) override { return No(); }
  Result<Run> GetRun(const std::string&) override { return No(); }
  Result<Page<Run>> ListRuns(const RunFilter&) override { return No(); }
  Result<std::vector<Run>> ListUnfinishedRuns(int) override { return No(); }
  Result<Run> TransitionRun(const RunTransition&) override { return No(); }
  Result<Run> RequestCancel(const CancelRequest&) override { return No(); }
  Result<std::vector<CancelRequest>> ListCancelRequests(const std::vector<std::string>&) override { return No(); }
  Result<std::vector<StepProgress>> GetStepProgress(const std::vector<std::string>&) override { return No(); }
  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution&, int64_t) override { return No(); }
  Result<RunLease> AcquireRunLease(const std::string&, const std::string&, int64_t) override { return No(); }
  Result<int64_t> RenewRunLeases(const std::string&, int64_t) override { return No(); }
  Status ReleaseRunLease(const std::string&, int64_t) override { return No(); }
  Result<std::vector<Run>> ListStrandedRuns(int64_t, int) override { return No(); }
  Result<bool> RedispatchRun(const std::string&, int64_t, const OutboxMessage&) override { return No(); }
  Result<std::vector<OutboxMessage>> ClaimOutbox(int, int64_t) override { return No(); }
  Status DeleteOutbox(const std::vector<int64_t>&) override { return No(); }
  Status DeferOutbox(const std::vector<int64_t>&, const std::string&, int64_t) override { return No(); }
  Result<OutboxStats> GetOutboxStats() override { return No(); }
  Status FinishStep(const StepFinish&) override { return No(); }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites&) override { return No(); }
  Result<std::vector<StepExecution>> ListSteps(const std::string&) override { return No(); }
  Status Ping() override { return Status::Ok(); }

 private:
  static Status No() { return Status::Internal("FakeAgentStore implements agents only"); }
};

// With cache_ttl 0 (this test relied on instant visibility before the
// directory cached records for 1 s by default).
TEST(StoreAgentDirectoryTest, ReadsTheStoreOnEveryCallWithoutACache) {
  FakeAgentStore store;
  StoreDirectoryOptions no_cache;
  no_cache.cache_ttl = std::chrono::milliseconds(0);
  auto dir = NewStoreAgentDirectory(&store, no_cache);

  auto r = ResolveNow(dir.get(), "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(),
            "agent 'x' is not registered. Hint: register it with POST /api/v1/agents or "
            "'agentflow agent register --name x --url URL'");

  Agent a;
  a.name = "x";
  a.url = "http://127.0.0.1:1/agents/x";
  a.timeout_ms = 777;
  a.max_concurrency = 2;
  ASSERT_TRUE(store.CreateAgent(a).ok());
  r = ResolveNow(dir.get(), "x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "x");
  EXPECT_EQ(r->url, a.url);
  EXPECT_EQ(r->timeout_ms, 777);
  EXPECT_EQ(r->max_concurrency, 2);

  a.url = "http://127.0.0.1:2/agents/x";  // re-registered: seen at once
  ASSERT_TRUE(store.UpsertAgent(a).ok());
  EXPECT_EQ(ResolveNow(dir.get(), "x")->url, a.url);

  store.fail_with = Status::Unavailable("database is locked");
  r = ResolveNow(dir.get(), "x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);  // store errors pass through unchanged
}

// The executor used to read the agents table at every step attempt; records
// are now cached for cache_ttl, and a change (re-registration, health,
// deletion) is seen once it has passed.
TEST(StoreAgentDirectoryTest, CachesFoundRecordsForTheTtl) {
  FakeAgentStore store;
  auto now = std::chrono::steady_clock::now();
  StoreDirectoryOptions o;
  o.cache_ttl = std::chrono::milliseconds(1000);
  o.now = [&now] { return now; };
  auto dir = NewStoreAgentDirectory(&store, o);

  EXPECT_EQ(ResolveNow(dir.get(), "x").status().code(), Code::kNotFound);
  Agent a;
  a.name = "x";
  a.url = "http://127.0.0.1:1/agents/x";
  ASSERT_TRUE(store.CreateAgent(a).ok());
  EXPECT_EQ(ResolveNow(dir.get(), "x")->url, a.url) << "a name not found is not cached";

  Agent moved = a;
  moved.url = "http://127.0.0.1:2/agents/x";
  ASSERT_TRUE(store.UpsertAgent(moved).ok());
  ASSERT_TRUE(store.RecordAgentHealth({"x", AgentHealth::kUnhealthy, "down", 1}).ok());
  store.fail_with = Status::Unavailable("database is locked");
  auto cached = ResolveNow(dir.get(), "x");
  ASSERT_TRUE(cached.ok()) << "served from the cache, the store is not read: " << cached.status().ToString();
  EXPECT_EQ(cached->url, a.url);
  EXPECT_EQ(cached->health, AgentHealth::kUnknown);

  now += std::chrono::milliseconds(999);
  EXPECT_EQ(ResolveNow(dir.get(), "x")->url, a.url) << "still within the TTL";
  now += std::chrono::milliseconds(1);
  EXPECT_EQ(ResolveNow(dir.get(), "x").status().code(), Code::kUnavailable) << "expired: read again";
  store.fail_with = Status::Ok();
  auto fresh = ResolveNow(dir.get(), "x");
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(fresh->url, moved.url);
  EXPECT_EQ(fresh->health, AgentHealth::kUnhealthy);
  EXPECT_EQ(fresh->health_error, "down");

  ASSERT_TRUE(store.DeleteAgent("x").ok());
  EXPECT_TRUE(ResolveNow(dir.get(), "x").ok()) << "a deletion too takes effect after the TTL";
  now += std::chrono::milliseconds(1000);
  EXPECT_EQ(ResolveNow(dir.get(), "x").status().code(), Code::kNotFound);
}

// read_off_thread (the execution consumer): a cache miss is read on the
// directory's thread while the caller's loop goes on, and the callers that
// miss one name meanwhile share that one read. (Read on the loop, the store
// call below would hold the loop until its 2 s gate gave up: the timer could
// not fire before the first answer.)
TEST(StoreAgentDirectoryTest, MissesAreReadOffTheLoopOnceForConcurrentCallers) {
  FakeAgentStore store;
  Agent a;
  a.name = "x";
  a.url = "http://127.0.0.1:1/agents/x";
  ASSERT_TRUE(store.CreateAgent(a).ok());
  std::promise<void> open;
  store.gate = open.get_future().share();
  StoreDirectoryOptions o;
  o.read_off_thread = true;
  auto dir = NewStoreAgentDirectory(&store, o);

  asio::io_context ioc;
  std::vector<Result<AgentEndpoint>> answers;
  bool timer_fired = false;
  bool answered_before_timer = false;
  for (int i = 0; i < 5; ++i) {
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          Result<AgentEndpoint> r = co_await dir->Resolve("x");
          if (!timer_fired) answered_before_timer = true;
          answers.push_back(std::move(r));
        },
        asio::detached);
  }
  asio::steady_timer timer(ioc, std::chrono::milliseconds(20));
  timer.async_wait([&](boost::system::error_code) {
    timer_fired = true;
    open.set_value();  // the read may finish now
  });
  ioc.run();

  EXPECT_TRUE(timer_fired);
  EXPECT_FALSE(answered_before_timer) << "the read was held, so no answer can come before the timer";
  ASSERT_EQ(answers.size(), 5u);
  for (const auto& r : answers) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->url, a.url);
  }
  EXPECT_EQ(store.reads.load(), 1) << "five callers missed the same name at once: one read";
  EXPECT_NE(store.read_on.load(), std::this_thread::get_id()) << "the read ran on the caller's thread";

  // Now cached: no read. A name that is not registered is not cached and
  // its error comes back the same way.
  EXPECT_EQ(ResolveNow(dir.get(), "x")->url, a.url);
  EXPECT_EQ(store.reads.load(), 1);
  EXPECT_EQ(ResolveNow(dir.get(), "nobody").status().code(), Code::kNotFound);
  EXPECT_EQ(ResolveNow(dir.get(), "nobody").status().code(), Code::kNotFound);
  EXPECT_EQ(store.reads.load(), 3);
}

TEST(StoreAgentDirectoryTest, WorksOnTheSqliteStore) {
  StoreOptions opts;
  opts.url = ":memory:";
  auto store = OpenStore(opts);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto dir = NewStoreAgentDirectory(store->get());
  EXPECT_EQ(ResolveNow(dir.get(), "echo").status().code(), Code::kNotFound);

  auto demo = StartDemoAgents("127.0.0.1", 0);
  ASSERT_TRUE(demo.ok()) << demo.status().ToString();
  for (const Agent& a : (*demo)->Records()) ASSERT_TRUE((*store)->UpsertAgent(a).ok()) << a.name;
  auto r = ResolveNow(dir.get(), "sleep");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->url, (*demo)->base_url() + "/agents/sleep");
  EXPECT_EQ(r->timeout_ms, 600000);
  (*demo)->Stop();
}

}  // namespace
}  // namespace af
