// The Kafka transport's wire formats (docs/agents.md, "Kafka transport"):
// what the executor publishes on an agent's request topic and what the agent
// (or `agentflow bridge`) answers on the reply topic. Pure functions with no
// broker, unit-tested and fuzzed alone.
//
// Request (topic: the agent's, "agent.<name>.requests" by default; key = run_id):
//   {"run_id", "step_id", "attempt", "input", "reply_topic", "correlation_id",
//    "deadline": "ISO-8601 UTC with milliseconds", "idempotency_key"}
//   plus "item_index" for an element of a for_each step, and "traceparent"
//   (W3C trace context of the call: the run's trace id, a new span id) when
//   the call has one; `agentflow bridge` sends it to the HTTP agent as the
//   traceparent header. A reader ignores a traceparent that is not valid.
// Reply (topic: the request's reply_topic; key = run_id):
//   {"correlation_id", "status": "ok" | "error", "output" (ok),
//    "error" (error), "retryable" (error; default false),
//    "retry_after_ms" (error, optional: wait at least this long before the
//    next attempt, like HTTP's Retry-After)}
// Readers ignore fields they do not know.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "agent/agent.h"
#include "common/status.h"
#include "common/time.h"
#include "model/types.h"

namespace af {

// The default topic every executor reads replies from (KAFKA_AGENT_REPLY_TOPIC).
inline constexpr const char* kAgentReplyTopic = "agentflow.agent.replies";

// Longest correlation id a reader accepts.
inline constexpr size_t kMaxCorrelationIdBytes = 256;

struct AgentRequestMessage {
  std::string run_id;                // 1..128 of [A-Za-z0-9._:-]
  std::string step_id;               // same alphabet
  std::optional<int> item_index;     // for_each element, >= 0
  int attempt = 1;                   // >= 1
  json input = json::object();       // a JSON object
  std::string reply_topic;           // a valid Kafka topic name
  std::string correlation_id;        // non-empty, at most kMaxCorrelationIdBytes
  TimeMs deadline = 0;               // when the executor stops waiting for the reply
  // The HTTP protocol's Idempotency-Key ("<run_id>/<step_id>[/<item_index>]").
  // Always written; a reader given a request without it derives that value.
  std::string idempotency_key;
  std::string traceparent;  // "" = none (not written; an invalid one is read as none)
};

struct AgentReplyMessage {
  std::string correlation_id;
  bool ok = true;                         // "status": "ok" | "error"
  json output;                            // ok: the step's output (any JSON value, null included)
  std::string error;                      // error: what went wrong
  bool retryable = false;                 // error: may another attempt succeed?
  std::optional<int64_t> retry_after_ms;  // error: the earliest next attempt, >= 0
};

// Never throw (strings that are not valid UTF-8 are written with U+FFFD).
std::string SerializeAgentRequest(const AgentRequestMessage& m);
std::string SerializeAgentReply(const AgentReplyMessage& m);

// InvalidArgument (never an exception, whatever the bytes) for text that is
// not a JSON object, nested deeper than kMaxJsonDepth, or has a missing or
// invalid field; the message names the field and details() is
// {"field": "<name>"} ("(message)" for the document itself).
// ParseAgentRequest: every field but item_index and idempotency_key is
// required; "deadline" must read as ISO-8601 UTC ("...Z", milliseconds
// optional). An absent idempotency_key is derived as above.
Result<AgentRequestMessage> ParseAgentRequest(std::string_view payload);
// ParseAgentReply: "output" is required when status is "ok"; "error" (a
// string) is optional and defaults to a generic text. When the reply is
// invalid but its correlation_id could be read, details() also holds
// {"correlation_id": "<id>"}, so a caller can fail the call it belongs to
// instead of waiting for its timeout.
Result<AgentReplyMessage> ParseAgentReply(std::string_view payload);

// The request for one attempt: `call`'s fields, the idempotency key, and
// where and how to answer.
AgentRequestMessage MakeAgentRequest(const AgentCall& call, const std::string& reply_topic,
                                     const std::string& correlation_id, TimeMs deadline);

// The attempt a request asks for, with `timeout_ms` for the exchange.
AgentCall ToAgentCall(const AgentRequestMessage& m, int64_t timeout_ms);

// A reply carrying an AgentReply's outcome: kOk → ok with the output;
// kRetryable / kPermanent → error with retryable true / false (and
// retry_after_ms); kCancelled → a retryable error.
AgentReplyMessage MakeAgentReply(const std::string& correlation_id, const AgentReply& reply);

// The executor's view of a reply: ok → kOk; error → kRetryable if retryable,
// else kPermanent, with the error text (and retry_after_ms).
AgentReply ToAgentReply(const AgentReplyMessage& m);

}  // namespace af
