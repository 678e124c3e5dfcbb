// The records agentflow stores and serves: workflows, runs, step executions
// and agents. Plain values; thread-safety is the holder's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/time.h"

namespace af {

using json = nlohmann::json;

enum class RunStatus { kPending, kRunning, kCompleted, kFailed, kCancelled };
enum class StepStatus { kRunning, kCompleted, kFailed, kSkipped, kCancelled };

// "PENDING", "RUNNING", ... exactly as stored in workflow_runs.status.
const char* ToString(RunStatus s);
const char* ToString(StepStatus s);
std::optional<RunStatus> ParseRunStatus(const std::string& s);
std::optional<StepStatus> ParseStepStatus(const std::string& s);
bool IsTerminal(RunStatus s);   // COMPLETED, FAILED, CANCELLED
bool IsTerminal(StepStatus s);  // everything but RUNNING

// One version of a workflow plan. PUT creates a new version; runs keep theirs.
struct Workflow {
  std::string id;           // "wf-<uuid>"
  std::string name;         // unique among live workflows
  std::string description;
  int version = 1;          // the version this record holds
  int latest_version = 1;   // the workflow's newest version
  json plan;                // the plan document as submitted (validated)
  TimeMs created_at = 0;    // when the workflow was first created
  TimeMs updated_at = 0;    // when this version was written
};

struct Run {
  std::string id;  // "run-<uuid>"
  std::string workflow_id;
  int workflow_version = 0;
  RunStatus status = RunStatus::kPending;
  json input = json::object();
  json output;                 // null until COMPLETED
  std::string error_message;   // set when FAILED (or why CANCELLED)
  std::string idempotency_key; // empty if none was given
  bool cancel_requested = false;
  std::string cancelled_by;
  std::string cancel_reason;
  int attempt = 1;             // 1 + number of times the run was retried
  TimeMs created_at = 0;
  std::optional<TimeMs> started_at;
  std::optional<TimeMs> completed_at;
  TimeMs updated_at = 0;
  // The W3C traceparent the run was triggered with, or the one the API
  // started for it (common/trace.h); empty for runs stored without one.
  std::string traceparent;
  // Ownership (store.h, "leases"): the executor that holds the run, its
  // fencing token (incremented on every acquire) and until when the lease
  // holds without renewal. Empty owner: nobody holds it.
  std::string lease_owner;
  int64_t lease_token = 0;
  std::optional<TimeMs> lease_expires_at;
  // When an execution request for the run was last written to the outbox
  // (trigger, retry, or the sweeper handing it out again).
  std::optional<TimeMs> dispatched_at;
};

// The run's trace id: from its traceparent, else derived from its id
// (trace::TraceIdForRunId), so it is never empty.
std::string TraceIdOf(const Run& r);

// One attempt of one step (or of one item of a for_each step).
// A for_each step also has one row with item_index empty whose output is the
// array of item outputs (the fan-in).
struct StepExecution {
  int64_t id = 0;  // assigned by the store
  std::string run_id;
  std::string step_id;
  std::optional<int> item_index;
  std::string agent_name;
  int attempt = 1;
  StepStatus status = StepStatus::kRunning;
  json input;
  json output;
  std::string error_message;
  TimeMs started_at = 0;
  std::optional<TimeMs> completed_at;
};

// How the executor reaches an agent: HTTP POST to `url`, or a request on the
// Kafka topic `topic` answered on a reply topic (docs/agents.md).
enum class AgentTransport { kHttp, kKafka };
// What the registry last observed: kUnknown until a health check or a
// heartbeat says otherwise (agents without health_url that never heartbeat
// stay kUnknown, and are called).
enum class AgentHealth { kUnknown, kHealthy, kUnhealthy };

const char* ToString(AgentTransport t);  // "http", "kafka"
const char* ToString(AgentHealth h);     // "unknown", "healthy", "unhealthy"
std::optional<AgentTransport> ParseAgentTransport(const std::string& s);
std::optional<AgentHealth> ParseAgentHealth(const std::string& s);

// The default request topic of a kafka agent: "agent.<name>.requests".
std::string DefaultAgentTopic(const std::string& name);

// An agent registered by name. The first group is configuration (written by
// create/PUT); the second is observed state, written only by
// Store::RecordAgentHealth and kept across PUTs.
struct Agent {
  std::string name;
  AgentTransport transport = AgentTransport::kHttp;
  std::string url;           // http: POST target, e.g. http://127.0.0.1:9000/agents/echo
  std::string topic;         // kafka: request topic
  int64_t timeout_ms = 30000;// default per-call timeout when a step sets none
  int max_concurrency = 0;   // in-flight calls per process; 0 = unlimited
  json metadata = json::object();
  std::string health_url;    // GET target of the registry's health check; empty = none
  TimeMs created_at = 0;
  TimeMs updated_at = 0;

  AgentHealth health = AgentHealth::kUnknown;
  std::string health_error;          // why kUnhealthy
  std::optional<TimeMs> last_seen_at;       // last successful check or heartbeat
  std::optional<TimeMs> health_checked_at;  // last check or heartbeat, either outcome
};

// An observation of an agent's health (a check's outcome or a heartbeat).
struct AgentHealthUpdate {
  std::string name;
  AgentHealth health = AgentHealth::kUnknown;
  std::string error;  // empty unless kUnhealthy
  TimeMs at = 0;      // health_checked_at; also last_seen_at when kHealthy
};

// Access control (docs/api.md#authentication). Each role includes the ones
// before it: viewer reads (GET), operator also triggers, cancels and
// retries runs, admin also manages workflows, agents and API keys.
enum class Role { kViewer, kOperator, kAdmin };
const char* ToString(Role r);  // "viewer", "operator", "admin"
std::optional<Role> ParseRole(const std::string& s);

// An API key as stored: the secret itself is never kept, only its SHA-256
// (src/auth/api_keys.h makes and checks keys).
struct ApiKey {
  std::string id;           // the lookup part of the key: af_<id>_<secret>
  std::string name;         // free text, for people; may be empty
  Role role = Role::kViewer;
  std::string secret_hash;  // lowercase hex SHA-256 of the secret
  TimeMs created_at = 0;
  std::optional<TimeMs> last_used_at;  // updated at most about once a minute
  std::optional<TimeMs> revoked_at;    // set: the key no longer authenticates
};

// JSON shapes used by the API and the CLI (timestamps ISO-8601, nulls kept).
json ToJson(const Workflow& w);
json ToJson(const Run& r);
// The text of ToJson(r) as JSON (the API's answer for a run): byte for byte
// ToJson(r).dump() with invalid UTF-8 replaced, but written directly, without
// a tree of the run or a copy of its input and output (an answer per
// trigger, wait and read; the tree cost as much as the rest of a trigger's
// handler).
std::string RunJsonText(const Run& r);
json ToJson(const StepExecution& s);
json ToJson(const Agent& a);
// id, name, role, created_at, last_used_at, revoked_at: never the hash.
json ToJson(const ApiKey& k);

}  // namespace af
