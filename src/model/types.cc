#include "model/types.h"

#include <string_view>

#include "common/json_text.h"
#include "common/trace.h"

namespace af {

const char* ToString(RunStatus s) {
  switch (s) {
    case RunStatus::kPending: return "PENDING";
    case RunStatus::kRunning: return "RUNNING";
    case RunStatus::kCompleted: return "COMPLETED";
    case RunStatus::kFailed: return "FAILED";
    case RunStatus::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

const char* ToString(StepStatus s) {
  switch (s) {
    case StepStatus::kRunning: return "RUNNING";
    case StepStatus::kCompleted: return "COMPLETED";
    case StepStatus::kFailed: return "FAILED";
    case StepStatus::kSkipped: return "SKIPPED";
    case StepStatus::kCancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

std::optional<RunStatus> ParseRunStatus(const std::string& s) {
  for (RunStatus v : {RunStatus::kPending, RunStatus::kRunning, RunStatus::kCompleted, RunStatus::kFailed,
                      RunStatus::kCancelled}) {
    if (s == ToString(v)) return v;
  }
  return std::nullopt;
}

std::optional<StepStatus> ParseStepStatus(const std::string& s) {
  for (StepStatus v : {StepStatus::kRunning, StepStatus::kCompleted, StepStatus::kFailed, StepStatus::kSkipped,
                       StepStatus::kCancelled}) {
    if (s == ToString(v)) return v;
  }
  return std::nullopt;
}

bool IsTerminal(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kFailed || s == RunStatus::kCancelled;
}
bool IsTerminal(StepStatus s) { return s != StepStatus::kRunning; }

namespace {
json OptTime(const std::optional<TimeMs>& t) { return t ? json(FormatIso8601(*t)) : json(nullptr); }
json OptText(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }
}  // namespace

json ToJson(const Workflow& w) {
  return json{{"workflow_id", w.id},
              {"name", w.name},
              {"description", w.description},
              {"version", w.version},
              {"latest_version", w.latest_version},
              {"plan", w.plan},
              {"created_at", FormatIso8601(w.created_at)},
              {"updated_at", FormatIso8601(w.updated_at)}};
}

json ToJson(const Run& r) {
  json j{{"run_id", r.id},
         {"workflow_id", r.workflow_id},
         {"workflow_version", r.workflow_version},
         {"status", ToString(r.status)},
         {"input", r.input},
         {"output", r.output},
         {"error_message", OptText(r.error_message)},
         {"attempt", r.attempt},
         {"created_at", FormatIso8601(r.created_at)},
         {"started_at", OptTime(r.started_at)},
         {"completed_at", OptTime(r.completed_at)}};
  if (r.cancel_requested || r.status == RunStatus::kCancelled) {
    j["cancelled_by"] = OptText(r.cancelled_by);
    j["cancel_reason"] = OptText(r.cancel_reason);
  }
  if (!r.idempotency_key.empty()) j["idempotency_key"] = r.idempotency_key;
  j["trace_id"] = TraceIdOf(r);
  return j;
}

namespace {

void AppendOptText(std::string& out, const std::string& s) {
  if (s.empty()) {
    out += "null";
  } else {
    AppendJsonString(out, s);
  }
}

void AppendOptTime(std::string& out, const std::optional<TimeMs>& t) {
  if (t) {
    AppendJsonString(out, FormatIso8601(*t));
  } else {
    out += "null";
  }
}

}  // namespace

std::string RunJsonText(const Run& r) {
  // Keys in ToJson's order: the JSON library keeps an object's keys sorted.
  std::string out;
  out.reserve(384);
  out += "{\"attempt\":";
  out += std::to_string(r.attempt);
  if (r.cancel_requested || r.status == RunStatus::kCancelled) {
    out += ",\"cancel_reason\":";
    AppendOptText(out, r.cancel_reason);
    out += ",\"cancelled_by\":";
    AppendOptText(out, r.cancelled_by);
  }
  out += ",\"completed_at\":";
  AppendOptTime(out, r.completed_at);
  out += ",\"created_at\":";
  AppendJsonString(out, FormatIso8601(r.created_at));
  out += ",\"error_message\":";
  AppendOptText(out, r.error_message);
  if (!r.idempotency_key.empty()) {
    out += ",\"idempotency_key\":";
    AppendJsonString(out, r.idempotency_key);
  }
  out += ",\"input\":";
  AppendJson(out, r.input);
  out += ",\"output\":";
  AppendJson(out, r.output);
  out += ",\"run_id\":";
  AppendJsonString(out, r.id);
  out += ",\"started_at\":";
  AppendOptTime(out, r.started_at);
  out += ",\"status\":";
  AppendJsonString(out, ToString(r.status));
  out += ",\"trace_id\":";
  AppendJsonString(out, TraceIdOf(r));
  out += ",\"workflow_id\":";
  AppendJsonString(out, r.workflow_id);
  out += ",\"workflow_version\":";
  out += std::to_string(r.workflow_version);
  out += '}';
  return out;
}

std::string TraceIdOf(const Run& r) {
  if (auto tp = trace::ParseTraceParent(r.traceparent)) return tp->trace_id;
  return trace::TraceIdForRunId(r.id);
}

json ToJson(const StepExecution& s) {
  return json{{"id", s.id},
              {"run_id", s.run_id},
              {"step_id", s.step_id},
              {"item_index", s.item_index ? json(*s.item_index) : json(nullptr)},
              {"agent_name", s.agent_name},
              {"attempt", s.attempt},
              {"status", ToString(s.status)},
              {"input", s.input},
              {"output", s.output},
              {"error_message", OptText(s.error_message)},
              {"started_at", FormatIso8601(s.started_at)},
              {"completed_at", OptTime(s.completed_at)}};
}

const char* ToString(AgentTransport t) { return t == AgentTransport::kKafka ? "kafka" : "http"; }

const char* ToString(AgentHealth h) {
  switch (h) {
    case AgentHealth::kHealthy:
      return "healthy";
    case AgentHealth::kUnhealthy:
      return "unhealthy";
    case AgentHealth::kUnknown:
      break;
  }
  return "unknown";
}

std::optional<AgentTransport> ParseAgentTransport(const std::string& s) {
  if (s == "http") return AgentTransport::kHttp;
  if (s == "kafka") return AgentTransport::kKafka;
  return std::nullopt;
}

std::optional<AgentHealth> ParseAgentHealth(const std::string& s) {
  if (s == "unknown") return AgentHealth::kUnknown;
  if (s == "healthy") return AgentHealth::kHealthy;
  if (s == "unhealthy") return AgentHealth::kUnhealthy;
  return std::nullopt;
}

std::string DefaultAgentTopic(const std::string& name) { return "agent." + name + ".requests"; }

json ToJson(const Agent& a) {
  auto opt_time = [](const std::optional<TimeMs>& t) { return t ? json(FormatIso8601(*t)) : json(nullptr); };
  auto opt_str = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  return json{{"name", a.name},
              {"transport", ToString(a.transport)},
              {"url", opt_str(a.url)},
              {"topic", opt_str(a.topic)},
              {"timeout_ms", a.timeout_ms},
              {"max_concurrency", a.max_concurrency},
              {"metadata", a.metadata},
              {"health_url", opt_str(a.health_url)},
              {"health", ToString(a.health)},
              {"health_error", opt_str(a.health_error)},
              {"last_seen_at", opt_time(a.last_seen_at)},
              {"health_checked_at", opt_time(a.health_checked_at)},
              {"created_at", FormatIso8601(a.created_at)},
              {"updated_at", FormatIso8601(a.updated_at)}};
}

const char* ToString(Role r) {
  switch (r) {
    case Role::kViewer: return "viewer";
    case Role::kOperator: return "operator";
    case Role::kAdmin: return "admin";
  }
  return "viewer";
}

std::optional<Role> ParseRole(const std::string& s) {
  if (s == "viewer") return Role::kViewer;
  if (s == "operator") return Role::kOperator;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}

json ToJson(const ApiKey& k) {
  auto opt_time = [](const std::optional<TimeMs>& t) { return t ? json(FormatIso8601(*t)) : json(nullptr); };
  return json{{"id", k.id},
              {"name", k.name},
              {"role", ToString(k.role)},
              {"created_at", FormatIso8601(k.created_at)},
              {"last_used_at", opt_time(k.last_used_at)},
              {"revoked_at", opt_time(k.revoked_at)}};
}

}  // namespace af
