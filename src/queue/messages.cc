#include "queue/messages.h"

#include <cctype>
#include <exception>
#include <limits>
#include <optional>
#include <string_view>

#include "common/ids.h"
#include "common/json_limits.h"
#include "common/json_text.h"

namespace af {
namespace {

constexpr const char* kExecutionType = "execution_request";
constexpr const char* kCancellationType = "cancellation_request";

// Every parse error names its field both in the message and in details, so
// the consumer can log it and a test can check it without matching prose.
Status FieldError(const std::string& field, const std::string& problem) {
  return Status::InvalidArgument("queue message field '" + field + "' " + problem +
                                     ". Hint: the publisher must follow the seed's message format "
                                     "(see src/queue/messages.h).",
                                 json{{"field", field}});
}

bool ParseDigits(std::string_view s, size_t& pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  pos += n;
  return true;
}

bool Expect(std::string_view s, size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

// Accepts what af::FormatIso8601 writes and what Python's isoformat() writes
// for the seed's publishers: "YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|±HH:MM]" (no
// zone = UTC, as datetime.utcnow().isoformat() means it).
std::optional<TimeMs> ParseTimestamp(std::string_view s) {
  if (auto t = ParseIso8601(std::string(s))) return t;
  size_t pos = 0;
  int y, mo, d, h, mi, sec;
  if (!ParseDigits(s, pos, 4, y) || !Expect(s, pos, '-') || !ParseDigits(s, pos, 2, mo) || !Expect(s, pos, '-') ||
      !ParseDigits(s, pos, 2, d))
    return std::nullopt;
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return std::nullopt;
  ++pos;
  if (!ParseDigits(s, pos, 2, h) || !Expect(s, pos, ':') || !ParseDigits(s, pos, 2, mi) || !Expect(s, pos, ':') ||
      !ParseDigits(s, pos, 2, sec))
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  int ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 3) ms = ms * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0 || digits > 9) return std::nullopt;
    for (size_t i = digits; i < 3; ++i) ms *= 10;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om;
    if (!ParseDigits(s, pos, 2, oh) || !Expect(s, pos, ':') || !ParseDigits(s, pos, 2, om)) return std::nullopt;
    offset_min = sign * (oh * 60 + om);
  }
  if (pos != s.size()) return std::nullopt;
  // Days from civil (Howard Hinnant's algorithm), so no locale or TZ is involved.
  int yy = mo <= 2 ? y - 1 : y;
  int era = (yy >= 0 ? yy : yy - 399) / 400;
  int yoe = yy - era * 400;
  int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  int64_t days = static_cast<int64_t>(era) * 146097 + doe - 719468;
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - static_cast<int64_t>(offset_min) * 60;
  // An offset can move a time just outside what FormatIso8601 writes (and
  // ParseIso8601 reads back): such a timestamp is as unreadable as any other.
  TimeMs t = secs * 1000 + ms;
  if (t < kMinIso8601Ms || t > kMaxIso8601Ms) return std::nullopt;
  return t;
}

// Optional string field: absent or null → "", a string → its value, anything else → error.
Status OptionalString(const json& j, const std::string& field, std::string& out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return FieldError(field, "must be a string");
  out = it->get<std::string>();
  return Status::Ok();
}

Status ParseRunId(const json& j, std::string& out) {
  auto it = j.find("run_id");
  if (it == j.end() || it->is_null()) return FieldError("run_id", "is missing");
  if (!it->is_string()) return FieldError("run_id", "must be a string");
  const std::string& id = it->get_ref<const std::string&>();
  if (!IsValidId(id)) return FieldError("run_id", "must be 1..128 characters of [A-Za-z0-9._:-]");
  out = id;
  return Status::Ok();
}

Status ParseTimestampField(const json& j, TimeMs& out) {
  auto it = j.find("timestamp");
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return FieldError("timestamp", "must be an ISO-8601 string");
  // The timestamp is informational (when the request was published): an
  // unreadable one must not make the run undeliverable, so it reads as 0.
  out = ParseTimestamp(it->get_ref<const std::string&>()).value_or(0);
  return Status::Ok();
}

// Moves the plan and the input out of `j` (the caller's parsed document,
// discarded afterwards): a plan copied here was, per run, as many
// allocations as parsing it.
Result<QueueRequest> ParseExecution(json& j) {
  ExecutionRequest r;
  AF_RETURN_IF_ERROR(ParseRunId(j, r.run_id));
  auto plan = j.find("workflow_plan");
  if (plan == j.end() || plan->is_null()) return FieldError("workflow_plan", "is missing");
  if (!plan->is_object()) return FieldError("workflow_plan", "must be a JSON object");
  r.workflow_plan = std::move(*plan);
  auto input = j.find("input_data");
  if (input != j.end() && !input->is_null()) {
    if (!input->is_object()) return FieldError("input_data", "must be a JSON object");
    r.input_data = std::move(*input);
  }
  AF_RETURN_IF_ERROR(OptionalString(j, "workflow_id", r.workflow_id));
  auto version = j.find("workflow_version");
  if (version != j.end() && !version->is_null()) {
    if (!version->is_number_integer()) return FieldError("workflow_version", "must be an integer");
    bool fits = version->is_number_unsigned()
                    ? version->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max())
                    : version->get<int64_t>() >= 0 && version->get<int64_t>() <= std::numeric_limits<int>::max();
    if (!fits) return FieldError("workflow_version", "must be a non-negative 32-bit integer");
    r.workflow_version = version->get<int>();
  }
  AF_RETURN_IF_ERROR(ParseTimestampField(j, r.timestamp));
  return QueueRequest(std::move(r));
}

Result<QueueRequest> ParseCancellation(const json& j) {
  CancellationRequest r;
  AF_RETURN_IF_ERROR(ParseRunId(j, r.run_id));
  AF_RETURN_IF_ERROR(OptionalString(j, "cancelled_by", r.cancelled_by));
  AF_RETURN_IF_ERROR(OptionalString(j, "reason", r.reason));
  AF_RETURN_IF_ERROR(ParseTimestampField(j, r.timestamp));
  return QueueRequest(std::move(r));
}

Result<QueueRequest> ParseDocument(json& j) {
  if (!j.is_object()) return FieldError("(message)", "must be a JSON object");
  auto type = j.find("message_type");
  if (type == j.end() || type->is_null()) {
    // Tolerate publishers that omit the type: a plan can only mean execution.
    if (j.contains("workflow_plan")) return ParseExecution(j);
    return FieldError("message_type", "is missing (and there is no workflow_plan)");
  }
  if (!type->is_string()) return FieldError("message_type", "must be a string");
  const std::string& t = type->get_ref<const std::string&>();
  if (t == kExecutionType) return ParseExecution(j);
  if (t == kCancellationType) return ParseCancellation(j);
  return FieldError("message_type", "must be \"execution_request\" or \"cancellation_request\"");
}

}  // namespace

std::string SerializeExecutionRequest(const ExecutionRequest& r) {
  return ExecutionRequestTemplate(r.workflow_plan, r.workflow_id, r.workflow_version)
      .Serialize(r.run_id, r.input_data, r.timestamp);
}

// Messages carry user strings to other processes: written with
// common/json_text, invalid UTF-8 is replaced instead of thrown on.
// The members in the order JsonText writes an object's (json sorts its keys),
// so a request reads the same whichever way it was made.
ExecutionRequestTemplate::ExecutionRequestTemplate(const json& plan, const std::string& workflow_id,
                                                   int workflow_version)
    : plan_(JsonText(plan)) {
  if (!workflow_id.empty()) {
    workflow_ = ",\"workflow_id\":";
    AppendJsonString(workflow_, workflow_id);
  }
  if (workflow_version > 0) version_ = ",\"workflow_version\":" + std::to_string(workflow_version);
}

std::string ExecutionRequestTemplate::Serialize(const std::string& run_id, const json& input, TimeMs timestamp) const {
  std::string out;
  out.reserve(plan_.size() + 256);
  out += "{\"input_data\":";
  if (input.is_null()) {
    out += "{}";
  } else {
    AppendJson(out, input);
  }
  out += ",\"message_type\":\"";
  out += kExecutionType;
  out += "\",\"run_id\":";
  AppendJsonString(out, run_id);
  out += ",\"timestamp\":\"";
  out += FormatIso8601(timestamp);  // digits and punctuation only: nothing to escape
  out += '"';
  out += workflow_;
  out += ",\"workflow_plan\":";
  out += plan_;
  out += version_;
  out += '}';
  return out;
}

std::string SerializeCancellationRequest(const CancellationRequest& r) {
  json j = {
      {"run_id", r.run_id},
      {"cancelled_by", r.cancelled_by},
      {"reason", r.reason},
      {"timestamp", FormatIso8601(r.timestamp)},
      {"message_type", kCancellationType},
  };
  return JsonText(j);
}

Result<QueueRequest> ParseQueueMessage(const std::string& payload, size_t max_bytes) {
  if (max_bytes > 0 && payload.size() > max_bytes) {
    return Status(Code::kTooLarge,
                  "queue message is " + std::to_string(payload.size()) + " bytes, over the limit of " +
                      std::to_string(max_bytes) + " bytes",
                  json{{"bytes", payload.size()}, {"limit", max_bytes}});
  }
  if (JsonNestingDepth(payload) > kMaxJsonDepth) {
    return FieldError("(message)", "is nested more than " + std::to_string(kMaxJsonDepth) + " levels deep");
  }
  try {
    json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return FieldError("(message)", "is not valid JSON");
    return ParseDocument(j);
  } catch (const std::exception& e) {
    // parse() with allow_exceptions=false does not throw on bad input; this
    // catches what remains (bad_alloc on absurd input, library bugs).
    return FieldError("(message)", std::string("could not be parsed: ") + e.what());
  }
}

}  // namespace af
