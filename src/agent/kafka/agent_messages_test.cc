#include "agent/kafka/agent_messages.h"

#include <random>
#include <set>

#include <gtest/gtest.h>

namespace af {
namespace {

std::set<std::string> Keys(const std::string& text) {
  std::set<std::string> keys;
  const json j = json::parse(text);
  for (const auto& [k, v] : j.items()) keys.insert(k);
  return keys;
}

AgentRequestMessage SampleRequest() {
  AgentRequestMessage m;
  m.run_id = "run-3f2b";
  m.step_id = "summarize";
  m.attempt = 2;
  m.input = {{"text", "hello"}};
  m.reply_topic = "agentflow.agent.replies";
  m.correlation_id = "c0ffee:17";
  m.deadline = *ParseIso8601("2026-11-26T12:00:30.250Z");
  m.idempotency_key = "run-3f2b/summarize";
  return m;
}

json SampleRequestJson() { return json::parse(SerializeAgentRequest(SampleRequest())); }

// The field an InvalidArgument names in details().
std::string FieldOf(const Status& s) {
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  return s.details().is_object() ? s.details().value("field", "") : "";
}

TEST(AgentMessagesTest, RequestRoundTripWithTheDocumentedFieldNames) {
  AgentRequestMessage m = SampleRequest();
  std::string text = SerializeAgentRequest(m);
  EXPECT_EQ(Keys(text), (std::set<std::string>{"run_id", "step_id", "attempt", "input", "reply_topic",
                                               "correlation_id", "deadline", "idempotency_key"}));
  json j = json::parse(text);
  EXPECT_EQ(j["deadline"], "2026-11-26T12:00:30.250Z") << "ISO-8601 UTC with milliseconds";
  EXPECT_EQ(j["attempt"], 2);

  auto parsed = ParseAgentRequest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->run_id, m.run_id);
  EXPECT_EQ(parsed->step_id, m.step_id);
  EXPECT_EQ(parsed->item_index, std::nullopt);
  EXPECT_EQ(parsed->attempt, 2);
  EXPECT_EQ(parsed->input, m.input);
  EXPECT_EQ(parsed->reply_topic, m.reply_topic);
  EXPECT_EQ(parsed->correlation_id, m.correlation_id);
  EXPECT_EQ(parsed->deadline, m.deadline);
  EXPECT_EQ(parsed->idempotency_key, m.idempotency_key);
}

TEST(AgentMessagesTest, ForEachRequestCarriesItemIndexAndItsIdempotencyKey) {
  AgentCall call;
  call.run_id = "run-1";
  call.step_id = "each";
  call.item_index = 3;
  call.attempt = 1;
  call.input = {{"v", "x"}};
  AgentRequestMessage m = MakeAgentRequest(call, "replies", "id-1", 1000);
  EXPECT_EQ(m.idempotency_key, "run-1/each/3") << "the same value as the HTTP Idempotency-Key header";
  std::string text = SerializeAgentRequest(m);
  EXPECT_TRUE(Keys(text).count("item_index"));
  auto parsed = ParseAgentRequest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->item_index, 3);
  AgentCall back = ToAgentCall(*parsed, 1500);
  EXPECT_EQ(back.run_id, "run-1");
  EXPECT_EQ(back.step_id, "each");
  EXPECT_EQ(back.item_index, 3);
  EXPECT_EQ(back.attempt, 1);
  EXPECT_EQ(back.input, call.input);
  EXPECT_EQ(back.timeout_ms, 1500);
  EXPECT_EQ(IdempotencyKey(back), m.idempotency_key);
}

TEST(AgentMessagesTest, MissingIdempotencyKeyIsDerivedAndUnknownFieldsAreIgnored) {
  json j = SampleRequestJson();
  j.erase("idempotency_key");
  j["item_index"] = 0;
  j["something_new"] = {1, 2};
  auto parsed = ParseAgentRequest(j.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->idempotency_key, "run-3f2b/summarize/0");
}

TEST(AgentMessagesTest, TheCallsTraceparentTravelsWithTheRequestAndBackToAnAgentCall) {
  AgentCall call;
  call.run_id = "run-1";
  call.step_id = "s";
  call.input = json::object();
  call.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  AgentRequestMessage m = MakeAgentRequest(call, "replies", "c-1", 1000);
  json wire = json::parse(SerializeAgentRequest(m));
  EXPECT_EQ(wire["traceparent"], call.traceparent);
  auto parsed = ParseAgentRequest(wire.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(ToAgentCall(*parsed, 100).traceparent, call.traceparent);

  // None: not written. Not valid (or not a string): read as none, never an error.
  call.traceparent.clear();
  EXPECT_FALSE(json::parse(SerializeAgentRequest(MakeAgentRequest(call, "replies", "c-2", 1000))).contains("traceparent"));
  for (const json& bad : {json("00-nope"), json(42), json(nullptr)}) {
    wire["traceparent"] = bad;
    auto p = ParseAgentRequest(wire.dump());
    ASSERT_TRUE(p.ok()) << bad.dump() << ": " << p.status().ToString();
    EXPECT_EQ(p->traceparent, "") << bad.dump();
  }
}

TEST(AgentMessagesTest, DeadlineWithoutMillisecondsIsAccepted) {
  json j = SampleRequestJson();
  j["deadline"] = "2026-11-26T12:00:30Z";
  auto parsed = ParseAgentRequest(j.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->deadline, *ParseIso8601("2026-11-26T12:00:30.000Z"));
}

// Found by tests/fuzz/fuzz_agent_messages (corpus: deadline_*): the parser
// took sscanf's reading of a deadline, so out-of-range fields were
// normalized into times FormatIso8601 writes as text nobody reads back
// ("10000-01-01T00:00:00.000Z"): the request a reader accepted could not be
// passed on. Now every deadline it accepts is written back readably.
TEST(AgentMessagesTest, EveryAcceptedDeadlineSurvivesARoundTrip) {
  for (const char* bad : {"9999-12-31T23:59:60Z", "-999--9-01T00:00:00Z", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-1-2T3:4:5Z", " 2026-11-26T12:00:30Z",
                          "2026-11-26T12:00:30.250Zjunk", "2026-11-26T12:00:30.Z"}) {
    json j = SampleRequestJson();
    j["deadline"] = bad;
    auto parsed = ParseAgentRequest(j.dump());
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(FieldOf(parsed.status()), "deadline") << bad;
  }
  for (const char* good : {"9999-12-31T23:59:59.999Z", "0000-01-01T00:00:00Z", "2024-02-29T00:00:00.5Z"}) {
    json j = SampleRequestJson();
    j["deadline"] = good;
    auto parsed = ParseAgentRequest(j.dump());
    ASSERT_TRUE(parsed.ok()) << good << ": " << parsed.status().ToString();
    auto again = ParseAgentRequest(SerializeAgentRequest(*parsed));
    ASSERT_TRUE(again.ok()) << good << ": " << again.status().ToString();
    EXPECT_EQ(again->deadline, parsed->deadline) << good;
  }
}

TEST(AgentMessagesTest, EveryInvalidRequestFieldIsNamed) {
  struct Case {
    const char* field;
    json value;  // json() with discarded meaning "remove the field"
    bool remove;
  };
  const std::vector<Case> cases = {
      {"run_id", nullptr, true},        {"run_id", 5, false},          {"run_id", "has space", false},
      {"run_id", "", false},            {"step_id", nullptr, true},    {"step_id", "a/b", false},
      {"attempt", nullptr, true},       {"attempt", 0, false},         {"attempt", 1.5, false},
      {"attempt", "1", false},          {"attempt", 4294967296LL, false}, {"item_index", -1, false},
      {"item_index", "0", false},       {"input", nullptr, true},      {"input", json::array(), false},
      {"input", "text", false},         {"reply_topic", nullptr, true}, {"reply_topic", "bad topic", false},
      {"reply_topic", "", false},       {"reply_topic", 7, false},     {"correlation_id", nullptr, true},
      {"correlation_id", "", false},    {"correlation_id", 9, false},
      {"correlation_id", std::string(kMaxCorrelationIdBytes + 1, 'x'), false},
      {"deadline", nullptr, true},      {"deadline", "tomorrow", false}, {"deadline", 1764158400000LL, false},
      {"deadline", "2026-11-26T12:00:30+01:00", false},               {"idempotency_key", "", false},
      {"idempotency_key", 3, false},
  };
  for (const Case& c : cases) {
    json j = SampleRequestJson();
    if (c.remove) {
      j.erase(c.field);
    } else {
      j[c.field] = c.value;
    }
    auto parsed = ParseAgentRequest(j.dump());
    ASSERT_FALSE(parsed.ok()) << c.field << " = " << c.value.dump();
    EXPECT_EQ(FieldOf(parsed.status()), c.field) << parsed.status().ToString();
    EXPECT_NE(parsed.status().message().find(c.field), std::string::npos) << parsed.status().message();
  }
}

TEST(AgentMessagesTest, NotAnObjectIsRejectedAsTheMessage) {
  for (const char* text : {"", "null", "[1,2]", "\"x\"", "{", "{\"run_id\": }", "\xff\xfe"}) {
    auto r = ParseAgentRequest(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(FieldOf(r.status()), "(message)");
    auto reply = ParseAgentReply(text);
    ASSERT_FALSE(reply.ok()) << text;
    EXPECT_EQ(FieldOf(reply.status()), "(message)");
  }
}

TEST(AgentMessagesTest, DeeplyNestedDocumentsAreRefusedWithoutRecursing) {
  std::string deep = "{\"input\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = ParseAgentRequest(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(FieldOf(r.status()), "(message)");
  std::string deep_reply = "{\"correlation_id\":\"c\",\"status\":\"ok\",\"output\":" + std::string(100000, '{');
  auto reply = ParseAgentReply(deep_reply);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(FieldOf(reply.status()), "(message)");
}

TEST(AgentMessagesTest, ReplyOkRoundTrip) {
  AgentReplyMessage m;
  m.correlation_id = "c:1";
  m.ok = true;
  m.output = {{"words", 3}};
  std::string text = SerializeAgentReply(m);
  EXPECT_EQ(Keys(text), (std::set<std::string>{"correlation_id", "status", "output"}));
  EXPECT_EQ(json::parse(text)["status"], "ok");
  auto parsed = ParseAgentReply(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->ok);
  EXPECT_EQ(parsed->output, m.output);
  AgentReply r = ToAgentReply(*parsed);
  EXPECT_EQ(r.outcome, AgentReply::Outcome::kOk);
  EXPECT_EQ(r.output, m.output);
}

TEST(AgentMessagesTest, ReplyOutputMayBeAnyJsonValueIncludingNull) {
  for (const json& output : {json(nullptr), json(42), json("text"), json::array({1}), json(false)}) {
    json j = {{"correlation_id", "c"}, {"status", "ok"}, {"output", output}};
    auto parsed = ParseAgentReply(j.dump());
    ASSERT_TRUE(parsed.ok()) << j.dump() << ": " << parsed.status().ToString();
    EXPECT_EQ(parsed->output, output);
  }
}

TEST(AgentMessagesTest, ReplyErrorRetryableAndPermanent) {
  AgentReplyMessage m;
  m.correlation_id = "c:2";
  m.ok = false;
  m.error = "rate limited";
  m.retryable = true;
  m.retry_after_ms = 2000;
  std::string text = SerializeAgentReply(m);
  EXPECT_EQ(Keys(text), (std::set<std::string>{"correlation_id", "status", "error", "retryable", "retry_after_ms"}));
  auto parsed = ParseAgentReply(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  AgentReply r = ToAgentReply(*parsed);
  EXPECT_EQ(r.outcome, AgentReply::Outcome::kRetryable);
  EXPECT_EQ(r.error, "rate limited");
  EXPECT_EQ(r.retry_after_ms, 2000);

  json permanent = {{"correlation_id", "c"}, {"status", "error"}, {"error", "bad input"}};
  auto p = ParseAgentReply(permanent.dump());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->retryable) << "retryable defaults to false";
  EXPECT_EQ(ToAgentReply(*p).outcome, AgentReply::Outcome::kPermanent);

  json bare = {{"correlation_id", "c"}, {"status", "error"}};
  auto b = ParseAgentReply(bare.dump());
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_FALSE(ToAgentReply(*b).error.empty()) << "an error reply without a message still explains itself";
}

TEST(AgentMessagesTest, LongErrorTextsAreCutOnACharacterBoundary) {
  std::string error;
  for (int i = 0; i < 600; ++i) error += "\xc3\xa9";  // é, two bytes each
  json j = {{"correlation_id", "c"}, {"status", "error"}, {"error", error}};
  auto parsed = ParseAgentReply(j.dump());
  ASSERT_TRUE(parsed.ok());
  std::string cut = ToAgentReply(*parsed).error;
  EXPECT_LT(cut.size(), error.size());
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
  EXPECT_NO_THROW((void)json(cut).dump()) << "still valid UTF-8";
}

TEST(AgentMessagesTest, InvalidReplyFieldsAreNamedWithTheCorrelationIdWhenReadable) {
  struct Case {
    json doc;
    const char* field;
    bool has_id;
  };
  const std::vector<Case> cases = {
      {{{"status", "ok"}, {"output", 1}}, "correlation_id", false},
      {{{"correlation_id", 5}, {"status", "ok"}, {"output", 1}}, "correlation_id", false},
      {{{"correlation_id", ""}, {"status", "ok"}, {"output", 1}}, "correlation_id", false},
      {{{"correlation_id", "c:9"}, {"output", 1}}, "status", true},
      {{{"correlation_id", "c:9"}, {"status", "OK"}, {"output", 1}}, "status", true},
      {{{"correlation_id", "c:9"}, {"status", true}}, "status", true},
      {{{"correlation_id", "c:9"}, {"status", "ok"}}, "output", true},
      {{{"correlation_id", "c:9"}, {"status", "error"}, {"error", 3}}, "error", true},
      {{{"correlation_id", "c:9"}, {"status", "error"}, {"retryable", "yes"}}, "retryable", true},
      {{{"correlation_id", "c:9"}, {"status", "error"}, {"retry_after_ms", -1}}, "retry_after_ms", true},
      {{{"correlation_id", "c:9"}, {"status", "error"}, {"retry_after_ms", 1.5}}, "retry_after_ms", true},
  };
  for (const Case& c : cases) {
    auto parsed = ParseAgentReply(c.doc.dump());
    ASSERT_FALSE(parsed.ok()) << c.doc.dump();
    EXPECT_EQ(FieldOf(parsed.status()), c.field) << parsed.status().ToString();
    const json& d = parsed.status().details();
    EXPECT_EQ(d.contains("correlation_id"), c.has_id) << d.dump();
    if (c.has_id) {
      EXPECT_EQ(d["correlation_id"], "c:9");
    }
  }
}

TEST(AgentMessagesTest, MakeAgentReplyMapsEveryOutcome) {
  AgentReply ok;
  ok.output = {{"x", 1}};
  AgentReplyMessage m = MakeAgentReply("c", ok);
  EXPECT_TRUE(m.ok);
  EXPECT_EQ(m.output, ok.output);

  AgentReply retry;
  retry.outcome = AgentReply::Outcome::kRetryable;
  retry.error = "HTTP 503: busy";
  retry.retry_after_ms = 1000;
  m = MakeAgentReply("c", retry);
  EXPECT_FALSE(m.ok);
  EXPECT_TRUE(m.retryable);
  EXPECT_EQ(m.error, "HTTP 503: busy");
  EXPECT_EQ(m.retry_after_ms, 1000);

  AgentReply permanent;
  permanent.outcome = AgentReply::Outcome::kPermanent;
  permanent.error = "HTTP 400: bad";
  m = MakeAgentReply("c", permanent);
  EXPECT_FALSE(m.ok);
  EXPECT_FALSE(m.retryable);

  // And back: what the executor sees is what the HTTP agent said.
  EXPECT_EQ(ToAgentReply(*ParseAgentReply(SerializeAgentReply(MakeAgentReply("c", retry)))).outcome,
            AgentReply::Outcome::kRetryable);
  EXPECT_EQ(ToAgentReply(*ParseAgentReply(SerializeAgentReply(MakeAgentReply("c", permanent)))).outcome,
            AgentReply::Outcome::kPermanent);
}

TEST(AgentMessagesTest, SerializingInvalidUtf8DoesNotThrow) {
  AgentRequestMessage m = SampleRequest();
  m.input = {{"text", std::string("caf\xc3", 4)}};
  std::string text;
  EXPECT_NO_THROW(text = SerializeAgentRequest(m));
  EXPECT_TRUE(ParseAgentRequest(text).ok());
  AgentReplyMessage r;
  r.correlation_id = "c";
  r.ok = false;
  r.error = std::string("\xff\xfe", 2);
  EXPECT_NO_THROW(text = SerializeAgentReply(r));
  EXPECT_TRUE(ParseAgentReply(text).ok());
}

// Random bytes and random mutations of valid messages: the parsers answer
// (ok or InvalidArgument) and never throw or crash.
TEST(AgentMessagesTest, FuzzedInputNeverThrows) {
  std::mt19937 rng(12345);
  const std::string request = SerializeAgentRequest(SampleRequest());
  AgentReplyMessage sample_reply;
  sample_reply.correlation_id = "c:1";
  sample_reply.output = {{"a", {1, 2, {{"b", nullptr}}}}};
  const std::string reply = SerializeAgentReply(sample_reply);
  const std::string alphabet = "{}[]\":,0123456789-.eEtruefalsn \\u\xff\x80";
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    switch (i % 3) {
      case 0: {
        size_t n = rng() % 64;
        for (size_t k = 0; k < n; ++k) text.push_back(static_cast<char>(rng() % 256));
        break;
      }
      case 1:
      case 2: {
        text = i % 3 == 1 ? request : reply;
        int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !text.empty(); ++e) {
          size_t pos = rng() % text.size();
          switch (rng() % 3) {
            case 0:
              text[pos] = alphabet[rng() % alphabet.size()];
              break;
            case 1:
              text.erase(pos, 1 + rng() % 8);
              break;
            default:
              text.insert(pos, 1, alphabet[rng() % alphabet.size()]);
              break;
          }
        }
        break;
      }
    }
    EXPECT_NO_THROW({
      auto a = ParseAgentRequest(text);
      if (!a.ok()) {
        EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
      }
      auto b = ParseAgentReply(text);
      if (!b.ok()) {
        EXPECT_EQ(b.status().code(), Code::kInvalidArgument);
      }
    }) << text;
  }
}

}  // namespace
}  // namespace af
