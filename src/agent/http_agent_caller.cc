// The HTTP transport for agent calls: the protocol's pure parts (idempotency
// key, Retry-After, reply classification) and the caller on http::Client.
#include <algorithm>
#include <array>
#include <cctype>
#include <limits>

#include "agent/agent.h"
#include "common/json_limits.h"
#include "common/json_text.h"
#include "http/http.h"

namespace af {

namespace {

constexpr size_t kExcerptBytes = 300;

// A short, printable, valid-UTF-8 excerpt of a body for error messages (they
// end up in JSON, which must not receive broken UTF-8).
std::string Excerpt(std::string_view body) {
  std::string out;
  size_t i = 0;
  while (i < body.size() && out.size() < kExcerptBytes) {
    auto c = static_cast<unsigned char>(body[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool valid = len > 0 && i + len <= body.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(body[i + k]) & 0xC0) == 0x80;
    }
    if (!valid) {
      out.push_back('?');
      ++i;
      continue;
    }
    if (out.size() + len > kExcerptBytes) break;
    if (len == 1) {
      out.push_back(c < 0x20 || c == 0x7f ? ' ' : static_cast<char>(c));  // newlines, tabs, controls
    } else {
      out.append(body.substr(i, len));
    }
    i += len;
  }
  // Trim trailing whitespace (bodies often end in a newline).
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (i < body.size()) out += "...";
  return out;
}

std::string HttpErrorText(int status, std::string_view body) {
  std::string text = "HTTP " + std::to_string(status);
  if (!body.empty()) text += ": " + Excerpt(body);
  return text;
}

// Days since 1970-01-01 of a civil date (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool ParseDigits(std::string_view s, int& out) {
  if (s.empty()) return false;
  out = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    out = out * 10 + (c - '0');
  }
  return true;
}

int ParseMonth(std::string_view s) {
  static constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (s == kMonths[i]) return static_cast<int>(i) + 1;
  }
  return 0;
}

bool ParseClock(std::string_view s, int& h, int& m, int& sec) {
  return s.size() == 8 && s[2] == ':' && s[5] == ':' && ParseDigits(s.substr(0, 2), h) &&
         ParseDigits(s.substr(3, 2), m) && ParseDigits(s.substr(6, 2), sec);
}

// HTTP-date (RFC 9110 section 5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT",
// and the obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime
// "Sun Nov  6 08:49:37 1994" forms recipients must accept.
std::optional<TimeMs> ParseHttpDate(std::string_view s) {
  int day = 0, month = 0, year = 0, h = 0, m = 0, sec = 0;
  size_t comma = s.find(',');
  if (comma == 3 && s.size() == 29) {  // IMF-fixdate
    if (s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s.substr(25) != " GMT") return std::nullopt;
    if (!ParseDigits(s.substr(5, 2), day) || !ParseDigits(s.substr(12, 4), year)) return std::nullopt;
    month = ParseMonth(s.substr(8, 3));
    if (!ParseClock(s.substr(17, 8), h, m, sec)) return std::nullopt;
  } else if (comma != std::string_view::npos && comma > 3) {  // RFC 850
    std::string_view rest = s.substr(comma + 1);
    if (rest.size() != 23 || rest[0] != ' ' || rest[3] != '-' || rest[7] != '-' || rest[10] != ' ' ||
        rest.substr(19) != " GMT") {
      return std::nullopt;
    }
    if (!ParseDigits(rest.substr(1, 2), day) || !ParseDigits(rest.substr(8, 2), year)) return std::nullopt;
    year += year >= 70 ? 1900 : 2000;
    month = ParseMonth(rest.substr(4, 3));
    if (!ParseClock(rest.substr(11, 8), h, m, sec)) return std::nullopt;
  } else if (comma == std::string_view::npos && s.size() == 24) {  // asctime
    if (s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ') return std::nullopt;
    std::string_view d = s.substr(8, 2);
    if (d[0] == ' ') d.remove_prefix(1);
    if (!ParseDigits(d, day) || !ParseDigits(s.substr(20, 4), year)) return std::nullopt;
    month = ParseMonth(s.substr(4, 3));
    if (!ParseClock(s.substr(11, 8), h, m, sec)) return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (month == 0 || day < 1 || day > 31 || h > 23 || m > 59 || sec > 60) return std::nullopt;
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  return ((days * 24 + h) * 60 + m) * 60000 + static_cast<int64_t>(sec) * 1000;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string IdempotencyKey(const AgentCall& call) {
  std::string key = call.run_id + "/" + call.step_id;
  if (call.item_index) key += "/" + std::to_string(*call.item_index);
  return key;
}

std::string AgentRequestBody(const AgentCall& call) {
  // Keys in the order the JSON library prints an object's (sorted).
  std::string body;
  body.reserve(96 + call.run_id.size() + call.step_id.size());
  body += "{\"attempt\":";
  body += std::to_string(call.attempt);
  body += ",\"input\":";
  AppendJson(body, call.input);
  if (call.item_index) {
    body += ",\"item_index\":";
    body += std::to_string(*call.item_index);
  }
  body += ",\"run_id\":";
  AppendJsonString(body, call.run_id);
  body += ",\"step_id\":";
  AppendJsonString(body, call.step_id);
  body += '}';
  return body;
}

std::optional<int64_t> ParseRetryAfterMs(const std::string& value, TimeMs now) {
  std::string_view v = Trim(value);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000;
    int64_t seconds = 0;
    for (char c : v) {
      if (seconds > (kMaxSeconds - (c - '0')) / 10) return std::nullopt;  // not representable
      seconds = seconds * 10 + (c - '0');
    }
    return seconds * 1000;
  }
  std::optional<TimeMs> at = ParseHttpDate(v);
  if (!at) return std::nullopt;
  return *at > now ? *at - now : 0;  // a date in the past: retry now
}

AgentReply ClassifyHttpReply(const Result<http::ClientResponse>& exchange, int64_t timeout_ms) {
  AgentReply reply;
  if (!exchange.ok()) {
    const Status& s = exchange.status();
    switch (s.code()) {
      case Code::kDeadlineExceeded:
        reply.outcome = AgentReply::Outcome::kRetryable;
        reply.error = "timed out after " + std::to_string(timeout_ms) + " ms";
        break;
      case Code::kCancelled:
        reply.outcome = AgentReply::Outcome::kCancelled;
        reply.error = s.message();
        break;
      case Code::kTooLarge: {  // the client stopped reading at its limit (details: bytes, limit)
        reply.outcome = AgentReply::Outcome::kPermanent;
        const json& d = s.details();
        if (d.is_object() && d.contains("limit")) {
          const json& bytes = d["bytes"];
          reply.error = "agent response is " +
                        (bytes.is_number() ? std::to_string(bytes.get<uint64_t>()) + " bytes"
                                           : std::string("larger (it sent no Content-Length; reading stopped)")) +
                        ", over the limit of " + std::to_string(d["limit"].get<uint64_t>()) +
                        " bytes. Hint: have the agent return less (e.g. a reference to stored data), or raise the "
                        "limit (--max-step-output-bytes)";
        } else {
          reply.error = s.message();
        }
        break;
      }
      case Code::kInvalidArgument:  // a bad agent URL: retrying cannot help
        reply.outcome = AgentReply::Outcome::kPermanent;
        reply.error = s.message();
        break;
      default:  // Unavailable (refused, reset, malformed reply) and anything unexpected
        reply.outcome = AgentReply::Outcome::kRetryable;
        reply.error = s.message();
        break;
    }
    return reply;
  }

  const http::ClientResponse& res = *exchange;
  reply.http_status = res.status;
  if (res.status >= 200 && res.status < 300) {
    if (JsonNestingDepth(res.body) > kMaxJsonDepth) {
      reply.outcome = AgentReply::Outcome::kPermanent;
      reply.error = "agent returned JSON nested more than " + std::to_string(kMaxJsonDepth) +
                    " levels deep (HTTP " + std::to_string(res.status) + ")";
      return reply;
    }
    json output = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
    if (res.body.empty() || output.is_discarded()) {
      reply.outcome = AgentReply::Outcome::kPermanent;
      reply.error = "agent returned a non-JSON body (HTTP " + std::to_string(res.status) + ", " +
                    (res.body.empty() ? std::string("empty") : "\"" + Excerpt(res.body) + "\"") +
                    "). Hint: an agent must answer with a JSON document";
      return reply;
    }
    reply.outcome = AgentReply::Outcome::kOk;
    reply.output = std::move(output);
    return reply;
  }
  reply.error = HttpErrorText(res.status, res.body);
  if (res.status == 408 || res.status == 429 || res.status >= 500) {
    reply.outcome = AgentReply::Outcome::kRetryable;
    if (std::string ra = res.Header("Retry-After"); !ra.empty()) reply.retry_after_ms = ParseRetryAfterMs(ra, NowMs());
    return reply;
  }
  reply.outcome = AgentReply::Outcome::kPermanent;
  if (res.status >= 300 && res.status < 400) {
    reply.error += " (redirects are not followed. Hint: register the agent's final URL)";
  } else if (res.status == 404) {
    reply.error += " (Hint: check the URL the agent is registered with)";
  }
  return reply;
}

namespace {

// Thread-safety: use from its executor only (as http::Client).
class HttpAgentCaller final : public AgentCaller {
 public:
  HttpAgentCaller(boost::asio::any_io_executor executor, const HttpAgentCallerOptions& options) {
    http::ClientOptions copts;
    copts.max_body_bytes = options.max_response_bytes;
    copts.one_thread = options.one_thread;
    client_ = http::NewClient(std::move(executor), copts);
  }

  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                          CancelSignal* cancel) override {
    // Everything needed from `agent` and `call` is copied before the first
    // suspension: the caller's objects may change while we wait.
    std::string agent_name = agent.name;
    int64_t timeout_ms = call.timeout_ms > 0 ? call.timeout_ms : agent.timeout_ms > 0 ? agent.timeout_ms : 30000;
    AgentReply reply;
    std::string failure;
    try {
      http::ClientRequest req;
      req.method = "POST";
      req.url = agent.url;
      req.headers.reserve(4);
      req.headers.emplace_back("Content-Type", "application/json");
      req.headers.emplace_back("Accept", "application/json");
      req.headers.emplace_back("Idempotency-Key", IdempotencyKey(call));
      if (!call.traceparent.empty()) req.headers.emplace_back("traceparent", call.traceparent);
      req.body = AgentRequestBody(call);
      req.timeout = std::chrono::milliseconds(timeout_ms);
      boost::asio::awaitable<Result<http::ClientResponse>> send = client_->Send(std::move(req), cancel);
      Result<http::ClientResponse> res = co_await std::move(send);
      reply = ClassifyHttpReply(res, timeout_ms);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (!failure.empty()) {
      reply = AgentReply();
      reply.outcome = AgentReply::Outcome::kRetryable;
      reply.error = "calling agent '" + agent_name + "' failed: " + failure;
    }
    co_return reply;
  }

 private:
  std::unique_ptr<http::Client> client_;
};

}  // namespace

std::unique_ptr<AgentCaller> NewHttpAgentCaller(boost::asio::any_io_executor executor,
                                                const HttpAgentCallerOptions& options) {
  return std::make_unique<HttpAgentCaller>(std::move(executor), options);
}

}  // namespace af
