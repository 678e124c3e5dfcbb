#include "agent/kafka/agent_messages.h"

#include <exception>
#include <limits>

#include "common/ids.h"
#include "common/json_limits.h"
#include "common/json_text.h"
#include "common/trace.h"

namespace af {
namespace {

// Error texts from agents end up in step_executions.error_message: keep them
// to a readable size.
constexpr size_t kMaxErrorBytes = 1000;

Status FieldError(const std::string& what, const std::string& field, const std::string& problem,
                  json details = json::object()) {
  details["field"] = field;
  return Status::InvalidArgument("agent " + what + " field '" + field + "' " + problem +
                                     ". Hint: see the Kafka transport's message formats in docs/agents.md.",
                                 std::move(details));
}

// Parses text from outside the process into a JSON object, or says why not.
Result<json> ParseObject(std::string_view payload, const std::string& what) {
  if (JsonNestingDepth(payload) > kMaxJsonDepth) {
    return FieldError(what, "(message)", "is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
  }
  json j;
  try {
    j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  } catch (const std::exception& e) {
    // allow_exceptions=false covers bad input; this is for bad_alloc and the like.
    return FieldError(what, "(message)", std::string("could not be parsed: ") + e.what());
  }
  if (j.is_discarded()) return FieldError(what, "(message)", "is not valid JSON");
  if (!j.is_object()) return FieldError(what, "(message)", "must be a JSON object");
  return j;
}

// A required string that is a valid id (run_id, step_id).
Status IdField(const json& j, const char* field, std::string& out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return FieldError("request", field, "is missing");
  if (!it->is_string()) return FieldError("request", field, "must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (!IsValidId(s)) return FieldError("request", field, "must be 1..128 characters of [A-Za-z0-9._:-]");
  out = s;
  return Status::Ok();
}

// An integer in [min, INT_MAX].
Status IntField(const json& j, const char* field, int min, int& out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return FieldError("request", field, "is missing");
  if (!it->is_number_integer()) return FieldError("request", field, "must be an integer");
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  bool fits = it->is_number_unsigned() ? it->get<uint64_t>() <= static_cast<uint64_t>(kMax)
                                       : it->get<int64_t>() <= kMax;
  if (!fits || it->get<int64_t>() < min) {
    return FieldError("request", field, "must be an integer from " + std::to_string(min) + " to " + std::to_string(kMax));
  }
  out = static_cast<int>(it->get<int64_t>());
  return Status::Ok();
}

Status CorrelationField(const json& j, const char* what, std::string& out) {
  auto it = j.find("correlation_id");
  if (it == j.end() || it->is_null()) return FieldError(what, "correlation_id", "is missing");
  if (!it->is_string()) return FieldError(what, "correlation_id", "must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > kMaxCorrelationIdBytes) {
    return FieldError(what, "correlation_id", "must be 1.." + std::to_string(kMaxCorrelationIdBytes) + " bytes");
  }
  out = s;
  return Status::Ok();
}

// The longest prefix of `s` of at most `max` bytes that ends on a UTF-8
// character boundary, plus "..." if anything was cut.
std::string Truncate(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "...";
}

Result<AgentRequestMessage> ParseRequestDocument(const json& j) {
  AgentRequestMessage m;
  AF_RETURN_IF_ERROR(IdField(j, "run_id", m.run_id));
  AF_RETURN_IF_ERROR(IdField(j, "step_id", m.step_id));
  if (auto it = j.find("item_index"); it != j.end() && !it->is_null()) {
    int index = 0;
    AF_RETURN_IF_ERROR(IntField(j, "item_index", 0, index));
    m.item_index = index;
  }
  AF_RETURN_IF_ERROR(IntField(j, "attempt", 1, m.attempt));
  auto input = j.find("input");
  if (input == j.end() || input->is_null()) return FieldError("request", "input", "is missing");
  if (!input->is_object()) return FieldError("request", "input", "must be a JSON object");
  m.input = *input;
  auto reply = j.find("reply_topic");
  if (reply == j.end() || reply->is_null()) return FieldError("request", "reply_topic", "is missing");
  if (!reply->is_string() || !IsValidKafkaTopic(reply->get<std::string>())) {
    return FieldError("request", "reply_topic", "must be a Kafka topic name (1..249 characters of [A-Za-z0-9._-])");
  }
  m.reply_topic = reply->get<std::string>();
  AF_RETURN_IF_ERROR(CorrelationField(j, "request", m.correlation_id));
  auto deadline = j.find("deadline");
  if (deadline == j.end() || deadline->is_null()) return FieldError("request", "deadline", "is missing");
  std::optional<TimeMs> at;
  if (deadline->is_string()) at = ParseIso8601(deadline->get<std::string>());
  if (!at) return FieldError("request", "deadline", "must be an ISO-8601 UTC timestamp like 2026-11-26T12:00:00.123Z");
  m.deadline = *at;
  auto key = j.find("idempotency_key");
  if (key != j.end() && !key->is_null()) {
    if (!key->is_string() || key->get_ref<const std::string&>().empty()) {
      return FieldError("request", "idempotency_key", "must be a non-empty string");
    }
    m.idempotency_key = key->get<std::string>();
  } else {
    AgentCall call;
    call.run_id = m.run_id;
    call.step_id = m.step_id;
    call.item_index = m.item_index;
    m.idempotency_key = IdempotencyKey(call);
  }
  // Tracing never fails a request: a traceparent that is not valid is dropped.
  auto tp = j.find("traceparent");
  if (tp != j.end() && tp->is_string()) {
    if (auto parsed = trace::ParseTraceParent(tp->get_ref<const std::string&>())) {
      m.traceparent = trace::FormatTraceParent(*parsed);
    }
  }
  return m;
}

Result<AgentReplyMessage> ParseReplyDocument(const json& j) {
  AgentReplyMessage m;
  AF_RETURN_IF_ERROR(CorrelationField(j, "reply", m.correlation_id));
  // From here on, errors carry the correlation id.
  json id = {{"correlation_id", m.correlation_id}};
  auto status = j.find("status");
  if (status == j.end() || status->is_null()) return FieldError("reply", "status", "is missing", id);
  if (!status->is_string() || (*status != "ok" && *status != "error")) {
    return FieldError("reply", "status", "must be \"ok\" or \"error\"", id);
  }
  m.ok = *status == "ok";
  if (m.ok) {
    auto output = j.find("output");
    if (output == j.end()) return FieldError("reply", "output", "is missing (required when status is \"ok\")", id);
    m.output = *output;
    return m;
  }
  auto error = j.find("error");
  if (error != j.end() && !error->is_null()) {
    if (!error->is_string()) return FieldError("reply", "error", "must be a string", id);
    m.error = error->get<std::string>();
  }
  if (m.error.empty()) m.error = "the agent replied with status \"error\" and no message";
  auto retryable = j.find("retryable");
  if (retryable != j.end() && !retryable->is_null()) {
    if (!retryable->is_boolean()) return FieldError("reply", "retryable", "must be true or false", id);
    m.retryable = retryable->get<bool>();
  }
  auto after = j.find("retry_after_ms");
  if (after != j.end() && !after->is_null()) {
    if (!after->is_number_integer() || (!after->is_number_unsigned() && after->get<int64_t>() < 0) ||
        (after->is_number_unsigned() &&
         after->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      return FieldError("reply", "retry_after_ms", "must be a non-negative integer", id);
    }
    m.retry_after_ms = after->get<int64_t>();
  }
  return m;
}

}  // namespace

std::string SerializeAgentRequest(const AgentRequestMessage& m) {
  json j = {
      {"run_id", m.run_id},
      {"step_id", m.step_id},
      {"attempt", m.attempt},
      {"input", m.input.is_null() ? json::object() : m.input},
      {"reply_topic", m.reply_topic},
      {"correlation_id", m.correlation_id},
      {"deadline", FormatIso8601(m.deadline)},
  };
  if (m.item_index) j["item_index"] = *m.item_index;
  if (!m.idempotency_key.empty()) j["idempotency_key"] = m.idempotency_key;
  if (!m.traceparent.empty()) j["traceparent"] = m.traceparent;
  return JsonText(j);
}

std::string SerializeAgentReply(const AgentReplyMessage& m) {
  json j = {{"correlation_id", m.correlation_id}, {"status", m.ok ? "ok" : "error"}};
  if (m.ok) {
    j["output"] = m.output;
  } else {
    j["error"] = m.error;
    j["retryable"] = m.retryable;
    if (m.retry_after_ms) j["retry_after_ms"] = *m.retry_after_ms;
  }
  return JsonText(j);
}

Result<AgentRequestMessage> ParseAgentRequest(std::string_view payload) {
  auto doc = ParseObject(payload, "request");
  if (!doc.ok()) return doc.status();
  return ParseRequestDocument(*doc);
}

Result<AgentReplyMessage> ParseAgentReply(std::string_view payload) {
  auto doc = ParseObject(payload, "reply");
  if (!doc.ok()) return doc.status();
  return ParseReplyDocument(*doc);
}

AgentRequestMessage MakeAgentRequest(const AgentCall& call, const std::string& reply_topic,
                                     const std::string& correlation_id, TimeMs deadline) {
  AgentRequestMessage m;
  m.run_id = call.run_id;
  m.step_id = call.step_id;
  m.item_index = call.item_index;
  m.attempt = call.attempt;
  m.input = call.input.is_null() ? json::object() : call.input;
  m.reply_topic = reply_topic;
  m.correlation_id = correlation_id;
  m.deadline = deadline;
  m.idempotency_key = IdempotencyKey(call);
  m.traceparent = call.traceparent;
  return m;
}

AgentCall ToAgentCall(const AgentRequestMessage& m, int64_t timeout_ms) {
  AgentCall call;
  call.run_id = m.run_id;
  call.step_id = m.step_id;
  call.item_index = m.item_index;
  call.attempt = m.attempt;
  call.input = m.input;
  call.timeout_ms = timeout_ms;
  call.traceparent = m.traceparent;
  return call;
}

AgentReplyMessage MakeAgentReply(const std::string& correlation_id, const AgentReply& reply) {
  AgentReplyMessage m;
  m.correlation_id = correlation_id;
  switch (reply.outcome) {
    case AgentReply::Outcome::kOk:
      m.ok = true;
      m.output = reply.output;
      break;
    case AgentReply::Outcome::kPermanent:
      m.ok = false;
      m.error = reply.error;
      m.retryable = false;
      break;
    case AgentReply::Outcome::kRetryable:
    case AgentReply::Outcome::kCancelled:
      m.ok = false;
      m.error = reply.error;
      m.retryable = true;
      m.retry_after_ms = reply.retry_after_ms;
      break;
  }
  return m;
}

AgentReply ToAgentReply(const AgentReplyMessage& m) {
  AgentReply r;
  if (m.ok) {
    r.outcome = AgentReply::Outcome::kOk;
    r.output = m.output;
    return r;
  }
  r.outcome = m.retryable ? AgentReply::Outcome::kRetryable : AgentReply::Outcome::kPermanent;
  r.error = Truncate(m.error, kMaxErrorBytes);
  if (m.retryable) r.retry_after_ms = m.retry_after_ms;
  return r;
}

}  // namespace af
