#include "queue/messages.h"

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

const json kPlan = {{"name", "demo"}, {"steps", json::array({{{"id", "s1"}, {"agent", "echo"}}})}};

TEST(MessagesTest, ExecutionRequestRoundTripWithSeedFieldNames) {
  ExecutionRequest r;
  r.run_id = "run-3f2b";
  r.workflow_plan = kPlan;
  r.input_data = {{"q", "hello"}};
  r.timestamp = *ParseIso8601("2026-11-26T12:00:00.123Z");
  std::string text = SerializeExecutionRequest(r);
  EXPECT_EQ(Keys(text),
            (std::set<std::string>{"run_id", "workflow_plan", "input_data", "timestamp", "message_type"}));
  json j = json::parse(text);
  EXPECT_EQ(j["message_type"], "execution_request");
  EXPECT_EQ(j["timestamp"], "2026-11-26T12:00:00.123Z");
  EXPECT_EQ(j["run_id"], "run-3f2b");

  auto parsed = ParseQueueMessage(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto* e = std::get_if<ExecutionRequest>(&*parsed);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->run_id, r.run_id);
  EXPECT_EQ(e->workflow_plan, r.workflow_plan);
  EXPECT_EQ(e->input_data, r.input_data);
  EXPECT_EQ(e->timestamp, r.timestamp);
  EXPECT_EQ(e->workflow_id, "");
  EXPECT_EQ(e->workflow_version, 0);
}

TEST(MessagesTest, ExecutionRequestCarriesWorkflowIdAndVersionWhenSet) {
  ExecutionRequest r;
  r.run_id = "run-1";
  r.workflow_plan = kPlan;
  r.workflow_id = "wf-9";
  r.workflow_version = 3;
  std::string text = SerializeExecutionRequest(r);
  EXPECT_EQ(Keys(text), (std::set<std::string>{"run_id", "workflow_plan", "input_data", "timestamp",
                                               "message_type", "workflow_id", "workflow_version"}));
  auto parsed = ParseQueueMessage(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto& e = std::get<ExecutionRequest>(*parsed);
  EXPECT_EQ(e.workflow_id, "wf-9");
  EXPECT_EQ(e.workflow_version, 3);
  EXPECT_EQ(e.input_data, json::object());
}

// The template writes byte for byte what the JSON library writes for the
// whole request (members sorted, invalid UTF-8 replaced), with and without
// the optional fields.
TEST(MessagesTest, ExecutionRequestTemplateWritesWhatTheJsonLibraryWrites) {
  const json plan = {{"name", "d\u00e9mo \"q\"\n"},
                     {"steps", json::array({{{"id", "s1"}, {"agent", "echo"}, {"inputs", {{"x", "$.input.x"}}}}})},
                     {"bad", "\xff\xfe"}};
  const json inputs[] = {json::object(), json(nullptr), json{{"x", 1.5}, {"t", "tab\there \xc3"}}};
  const std::pair<std::string, int> workflows[] = {{"", 0}, {"wf-9", 0}, {"", 4}, {"wf-\"9\"", 12}};
  const TimeMs at = *ParseIso8601("2026-11-26T12:00:00.123Z");
  for (const auto& [wf_id, version] : workflows) {
    ExecutionRequestTemplate t(plan, wf_id, version);
    for (const json& input : inputs) {
      json whole = {{"run_id", "run-\xe2\x82"},
                    {"workflow_plan", plan},
                    {"input_data", input.is_null() ? json::object() : input},
                    {"timestamp", "2026-11-26T12:00:00.123Z"},
                    {"message_type", "execution_request"}};
      if (!wf_id.empty()) whole["workflow_id"] = wf_id;
      if (version > 0) whole["workflow_version"] = version;
      const std::string expected = whole.dump(-1, ' ', false, json::error_handler_t::replace);
      EXPECT_EQ(t.Serialize("run-\xe2\x82", input, at), expected) << wf_id << " " << version << " " << input;
      ExecutionRequest r;
      r.run_id = "run-\xe2\x82";
      r.workflow_plan = plan;
      r.input_data = input;
      r.workflow_id = wf_id;
      r.workflow_version = version;
      r.timestamp = at;
      EXPECT_EQ(SerializeExecutionRequest(r), expected);
    }
  }
}

TEST(MessagesTest, CancellationRequestRoundTripWithSeedFieldNames) {
  CancellationRequest r;
  r.run_id = "run-7";
  r.cancelled_by = "user@example.com";
  r.reason = "User requested cancellation";
  r.timestamp = *ParseIso8601("2026-01-02T03:04:05.006Z");
  std::string text = SerializeCancellationRequest(r);
  EXPECT_EQ(Keys(text), (std::set<std::string>{"run_id", "cancelled_by", "reason", "timestamp", "message_type"}));
  EXPECT_EQ(json::parse(text)["message_type"], "cancellation_request");
  auto parsed = ParseQueueMessage(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto* c = std::get_if<CancellationRequest>(&*parsed);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->run_id, r.run_id);
  EXPECT_EQ(c->cancelled_by, r.cancelled_by);
  EXPECT_EQ(c->reason, r.reason);
  EXPECT_EQ(c->timestamp, r.timestamp);
}

// What the seed's Python publisher sends: datetime.utcnow().isoformat().
TEST(MessagesTest, AcceptsTheSeedPublishersTimestamps) {
  const TimeMs want = *ParseIso8601("2024-01-15T10:30:00.123Z");
  for (const char* ts : {"2024-01-15T10:30:00.123456", "2024-01-15T10:30:00.123456+00:00",
                         "2024-01-15T12:30:00.123+02:00", "2024-01-15T10:30:00.123Z"}) {
    json j = {{"run_id", "run-1"}, {"workflow_plan", kPlan}, {"timestamp", ts}, {"message_type", "execution_request"}};
    auto parsed = ParseQueueMessage(j.dump());
    ASSERT_TRUE(parsed.ok()) << ts << ": " << parsed.status().ToString();
    EXPECT_EQ(std::get<ExecutionRequest>(*parsed).timestamp, want) << ts;
  }
  json j = {{"run_id", "run-1"}, {"workflow_plan", kPlan}, {"timestamp", "2024-01-15T10:30:00"}};
  auto parsed = ParseQueueMessage(j.dump());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<ExecutionRequest>(*parsed).timestamp, want - 123);
}

// Found by tests/fuzz/fuzz_queue_messages (corpus: timestamp_*): an offset
// moved a timestamp past 9999-12-31, which FormatIso8601 writes as a
// five-digit year; the message, serialized again, read back with timestamp 0.
// Such timestamps now read as unreadable (0) in the first place.
TEST(MessagesTest, TimestampsOutsideFourDigitYearsReadAsUnreadable) {
  for (const char* ts : {"9999-12-31T23:59:59.999-23:59", "0000-01-01T00:00:00+23:59", "9999-12-31T23:59:60"}) {
    json j = {{"run_id", "run-1"}, {"message_type", "cancellation_request"}, {"timestamp", ts}};
    auto parsed = ParseQueueMessage(j.dump());
    ASSERT_TRUE(parsed.ok()) << ts << ": " << parsed.status().ToString();
    EXPECT_EQ(std::get<CancellationRequest>(*parsed).timestamp, 0) << ts;
  }
  for (const char* ts : {"9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999+01:00", "0000-01-01T00:00:00Z"}) {
    json j = {{"run_id", "run-1"}, {"message_type", "cancellation_request"}, {"timestamp", ts}};
    auto parsed = ParseQueueMessage(j.dump());
    ASSERT_TRUE(parsed.ok()) << ts << ": " << parsed.status().ToString();
    const auto& c = std::get<CancellationRequest>(*parsed);
    EXPECT_NE(c.timestamp, 0) << ts;
    auto again = ParseQueueMessage(SerializeCancellationRequest(c));
    ASSERT_TRUE(again.ok()) << ts;
    EXPECT_EQ(std::get<CancellationRequest>(*again).timestamp, c.timestamp) << ts;
  }
}

TEST(MessagesTest, OptionalFieldsDefault) {
  // No timestamp, no input_data, no message_type: a plan means execution.
  auto parsed = ParseQueueMessage(json{{"run_id", "run-1"}, {"workflow_plan", kPlan}}.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto& e = std::get<ExecutionRequest>(*parsed);
  EXPECT_EQ(e.input_data, json::object());
  EXPECT_EQ(e.timestamp, 0);

  parsed = ParseQueueMessage(
      json{{"run_id", "run-1"}, {"workflow_plan", kPlan}, {"input_data", nullptr}, {"timestamp", "yesterday"}}.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(std::get<ExecutionRequest>(*parsed).input_data, json::object());
  EXPECT_EQ(std::get<ExecutionRequest>(*parsed).timestamp, 0);  // unreadable timestamp: informational only

  parsed = ParseQueueMessage(json{{"run_id", "run-1"}, {"message_type", "cancellation_request"}}.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const auto& c = std::get<CancellationRequest>(*parsed);
  EXPECT_EQ(c.cancelled_by, "");
  EXPECT_EQ(c.reason, "");
  EXPECT_EQ(c.timestamp, 0);
}

TEST(MessagesTest, UnknownFieldsAreIgnored) {
  json j = {{"run_id", "run-1"}, {"workflow_plan", kPlan}, {"message_type", "execution_request"}, {"extra", 1}};
  EXPECT_TRUE(ParseQueueMessage(j.dump()).ok());
}

struct Malformed {
  std::string name;
  std::string payload;
  std::string field;  // the field the error must name
};

std::string Exec(json fields) {
  json j = {{"run_id", "run-1"}, {"workflow_plan", kPlan}, {"input_data", json::object()},
            {"timestamp", "2026-11-26T12:00:00.000Z"}, {"message_type", "execution_request"}};
  for (auto& [k, v] : fields.items()) {
    if (v.is_string() && v == "<absent>") {
      j.erase(k);
    } else {
      j[k] = v;
    }
  }
  return j.dump();
}

std::string Cancel(json fields) {
  json j = {{"run_id", "run-1"}, {"cancelled_by", "me"}, {"reason", "why"}, {"message_type", "cancellation_request"}};
  for (auto& [k, v] : fields.items()) j[k] = v;
  return j.dump();
}

class MalformedTest : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedTest, IsInvalidArgumentNamingTheField) {
  const Malformed& m = GetParam();
  Result<QueueRequest> r = Status::Internal("not run");
  ASSERT_NO_THROW(r = ParseQueueMessage(m.payload));
  ASSERT_FALSE(r.ok()) << m.payload;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find(m.field), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().details().value("field", ""), m.field);
  EXPECT_NE(r.status().message().find("Hint:"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Messages, MalformedTest,
    ::testing::Values(
        Malformed{"Empty", "", "(message)"}, Malformed{"NotJson", "{run_id:", "(message)"},
        Malformed{"Array", "[]", "(message)"}, Malformed{"String", "\"x\"", "(message)"},
        Malformed{"Null", "null", "(message)"},
        Malformed{"OnlyNumericRunId", R"({"run_id":5})", "message_type"},
        Malformed{"NoTypeNoPlan", R"({"run_id":"run-1"})", "message_type"},
        Malformed{"TypeNotString", Exec({{"message_type", 7}}), "message_type"},
        Malformed{"UnknownType", Exec({{"message_type", "status_request"}}), "message_type"},
        Malformed{"RunIdMissing", Exec({{"run_id", "<absent>"}}), "run_id"},
        Malformed{"RunIdNumber", Exec({{"run_id", 5}}), "run_id"},
        Malformed{"RunIdEmpty", Exec({{"run_id", ""}}), "run_id"},
        Malformed{"RunIdPath", Exec({{"run_id", "../etc/passwd"}}), "run_id"},
        Malformed{"RunIdDotDot", Exec({{"run_id", ".."}}), "run_id"},
        Malformed{"RunIdTooLong", Exec({{"run_id", std::string(129, 'a')}}), "run_id"},
        Malformed{"PlanMissing", Exec({{"workflow_plan", "<absent>"}}), "workflow_plan"},
        Malformed{"PlanArray", Exec({{"workflow_plan", json::array()}}), "workflow_plan"},
        Malformed{"PlanString", Exec({{"workflow_plan", "{}"}}), "workflow_plan"},
        Malformed{"InputArray", Exec({{"input_data", json::array({1})}}), "input_data"},
        Malformed{"InputString", Exec({{"input_data", "x"}}), "input_data"},
        Malformed{"TimestampNumber", Exec({{"timestamp", 1700000000}}), "timestamp"},
        Malformed{"WorkflowIdNumber", Exec({{"workflow_id", 3}}), "workflow_id"},
        Malformed{"VersionString", Exec({{"workflow_version", "2"}}), "workflow_version"},
        Malformed{"VersionFloat", Exec({{"workflow_version", 1.5}}), "workflow_version"},
        Malformed{"VersionNegative", Exec({{"workflow_version", -1}}), "workflow_version"},
        Malformed{"VersionHuge", Exec({{"workflow_version", 1LL << 40}}), "workflow_version"},
        Malformed{"CancelRunIdMissing", R"({"message_type":"cancellation_request"})", "run_id"},
        Malformed{"CancelledByNumber", Cancel({{"cancelled_by", 1}}), "cancelled_by"},
        Malformed{"ReasonObject", Cancel({{"reason", json::object()}}), "reason"},
        Malformed{"CancelTimestampBool", Cancel({{"timestamp", true}}), "timestamp"}),
    [](const ::testing::TestParamInfo<Malformed>& info) { return info.param.name; });

TEST(MessagesTest, DeeplyNestedPayloadIsRejectedNotRecursedInto) {
  std::string deep = R"({"run_id": "r-1", "workflow_plan": {"x": )" + std::string(200000, '[') +
                     std::string(200000, ']') + "}}";
  auto parsed = ParseQueueMessage(deep);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kInvalidArgument);
  EXPECT_NE(parsed.status().message().find("nested"), std::string::npos) << parsed.status().message();
}

TEST(MessagesTest, PayloadOverTheLimitIsTooLargeAndNotParsed) {
  ExecutionRequest r;
  r.run_id = "run-1";
  r.workflow_plan = {{"name", "p"}, {"steps", json::array()}};
  r.input_data = {{"blob", std::string(5000, 'x')}};
  std::string text = SerializeExecutionRequest(r);
  EXPECT_TRUE(ParseQueueMessage(text, text.size()).ok());
  EXPECT_TRUE(ParseQueueMessage(text, 0).ok());  // 0: no limit
  auto parsed = ParseQueueMessage(text, 1000);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), Code::kTooLarge);
  EXPECT_EQ(parsed.status().message(),
            "queue message is " + std::to_string(text.size()) + " bytes, over the limit of 1000 bytes");
  EXPECT_EQ(parsed.status().details()["limit"], 1000);
  // Not even JSON: the size is checked first.
  parsed = ParseQueueMessage(std::string(2000, '['), 1000);
  EXPECT_EQ(parsed.status().code(), Code::kTooLarge);
  EXPECT_EQ(kDefaultMaxQueueMessageBytes, size_t{16} << 20);
}

TEST(MessagesTest, NeverThrowsOnGarbage) {
  std::mt19937 rng(12345);  // fixed seed: reproducible
  for (int i = 0; i < 2000; ++i) {
    std::string s(rng() % 64, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng() & 0xff);
    EXPECT_NO_THROW((void)ParseQueueMessage(s));
  }
  // Every truncation of a valid message.
  ExecutionRequest r;
  r.run_id = "run-1";
  r.workflow_plan = kPlan;
  r.workflow_id = "wf-1";
  r.workflow_version = 2;
  std::string full = SerializeExecutionRequest(r);
  for (size_t n = 0; n < full.size(); ++n) {
    Result<QueueRequest> p = Status::Internal("not run");
    EXPECT_NO_THROW(p = ParseQueueMessage(full.substr(0, n)));
    EXPECT_FALSE(p.ok()) << full.substr(0, n);
  }
  // Deep nesting, invalid UTF-8 in a string, a NUL in the middle.
  EXPECT_NO_THROW((void)ParseQueueMessage(std::string(100000, '[')));
  EXPECT_NO_THROW((void)ParseQueueMessage("{\"run_id\":\"\xff\xfe\",\"workflow_plan\":{}}"));
  EXPECT_NO_THROW((void)ParseQueueMessage(std::string("{\"run_id\":\"run-1\"\0}", 19)));
}

TEST(MessagesTest, SerializeNeverThrowsOnInvalidUtf8) {
  CancellationRequest r;
  r.run_id = "run-1";
  r.reason = "bad \xff\xfe bytes";
  std::string text;
  ASSERT_NO_THROW(text = SerializeCancellationRequest(r));
  auto parsed = ParseQueueMessage(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(std::get<CancellationRequest>(*parsed).run_id, "run-1");
}

}  // namespace
}  // namespace af
