// The seed's message formats on the two topics, parsed and built. Pure
// functions with no broker, so they are unit-tested and fuzzed alone.
//
// Execution request (workflow.execution.requests, key = run_id):
//   {"run_id", "workflow_plan": {...}, "input_data": {...},
//    "timestamp": "ISO-8601", "message_type": "execution_request"}
//   agentflow adds "workflow_id" and "workflow_version" (readers ignore
//   unknown fields; the plan in the message is what the run executes).
// Cancellation request (workflow.cancellation.requests, key = run_id):
//   {"run_id", "cancelled_by", "reason", "timestamp",
//    "message_type": "cancellation_request"}
#pragma once

#include <string>
#include <variant>

#include "common/status.h"
#include "common/time.h"
#include "model/types.h"

namespace af {

struct ExecutionRequest {
  std::string run_id;
  json workflow_plan;
  json input_data = json::object();
  std::string workflow_id;   // optional
  int workflow_version = 0;  // optional (0 = unknown)
  TimeMs timestamp = 0;
};

struct CancellationRequest {
  std::string run_id;
  std::string cancelled_by;
  std::string reason;
  TimeMs timestamp = 0;
};

using QueueRequest = std::variant<ExecutionRequest, CancellationRequest>;

// Never throw. `timestamp` is written as given (set it to NowMs()); the
// optional workflow_id/workflow_version only when set (non-empty / > 0).
std::string SerializeExecutionRequest(const ExecutionRequest& r);
std::string SerializeCancellationRequest(const CancellationRequest& r);

// The execution requests of one workflow version, its plan (the bulk of a
// request) serialized once: Serialize gives exactly what
// SerializeExecutionRequest gives for the same fields. Immutable, so one
// may be shared across threads.
class ExecutionRequestTemplate {
 public:
  ExecutionRequestTemplate(const json& plan, const std::string& workflow_id, int workflow_version);
  std::string Serialize(const std::string& run_id, const json& input, TimeMs timestamp) const;

 private:
  std::string plan_;      // the plan, serialized
  std::string workflow_;  // ,"workflow_id":...  (empty when not set)
  std::string version_;   // ,"workflow_version":N  (empty when not set)
};

// Parses either message by its message_type. InvalidArgument (never an
// exception) for malformed JSON, a missing/invalid run_id, a missing plan,
// wrong types or an unknown message_type; the message says which, and
// details() is {"field": "<name>"} ("(message)" for the document itself).
// Lenient where the seed's publishers differ: no message_type but a
// workflow_plan means execution; absent or null optional fields take their
// defaults; timestamp also accepts Python's isoformat() (no zone = UTC, an
// offset, microseconds), and an unreadable timestamp string reads as 0.
//
// A payload over `max_bytes` is not parsed (a JSON document takes several
// times its size in memory): TooLarge "queue message is N bytes, over the
// limit of M bytes", details {"bytes", "limit"}. What the API publishes stays
// far below the default: a plan (512 KiB at most by default) and a run input
// (within the 1 MiB request body limit).
inline constexpr size_t kDefaultMaxQueueMessageBytes = 16 << 20;
Result<QueueRequest> ParseQueueMessage(const std::string& payload,
                                       size_t max_bytes = kDefaultMaxQueueMessageBytes);

}  // namespace af
