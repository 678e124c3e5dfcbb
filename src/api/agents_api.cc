#include "api/agents_api.h"

#include "api/api.h"
#include "api/request_util.h"
#include "api/store_worker.h"
#include "common/ids.h"
#include "common/time.h"

namespace af {

using api::CheckFields;
using api::CheckId;
using api::ParseBody;
using http::Request;
using http::Response;

Result<Agent> AgentFromJson(const json& body, const std::string& path_name) {
  // The read-only fields of a GET are accepted and ignored, so a record read
  // from the API can be edited and PUT back.
  AF_RETURN_IF_ERROR(CheckFields(body, {"name", "transport", "url", "topic", "timeout_ms", "max_concurrency",
                                        "metadata", "health_url", "health", "health_error", "last_seen_at",
                                        "health_checked_at", "created_at", "updated_at"}));
  Agent a;
  json problems = json::array();
  auto problem = [&](const char* field, std::string msg) {
    problems.push_back({{"field", field}, {"message", std::string(field) + ": " + msg}});
  };
  if (body.contains("name")) {
    if (!body["name"].is_string()) {
      problem("name", "must be a string");
    } else {
      a.name = body["name"].get<std::string>();
    }
  }
  if (a.name.empty()) a.name = path_name;
  if (!path_name.empty() && a.name != path_name) problem("name", "does not match the name in the path");
  if (a.name.empty()) {
    problem("name", "is required");
  } else if (!IsValidId(a.name)) {
    problem("name", "must be 1-128 characters of letters, digits, '.', '_', ':' and '-'");
  }
  if (body.contains("transport")) {
    const json& t = body["transport"];
    auto transport = t.is_string() ? ParseAgentTransport(t.get<std::string>()) : std::nullopt;
    if (!transport) {
      problem("transport", "must be \"http\" or \"kafka\"");
    } else {
      a.transport = *transport;
    }
  }
  if (a.transport == AgentTransport::kHttp) {
    if (!body.contains("url") || !body["url"].is_string() || body["url"].get<std::string>().empty()) {
      problem("url", "is required for an http agent (e.g. http://127.0.0.1:9000/agents/echo)");
    } else {
      a.url = body["url"].get<std::string>();
      if (!http::ParseUrl(a.url).ok()) problem("url", "must be an http:// URL");
    }
    if (body.contains("topic") && !body["topic"].is_null()) problem("topic", "is only for kafka agents");
  } else {
    if (body.contains("url") && !body["url"].is_null()) {
      problem("url", "is only for http agents (a kafka agent has a topic)");
    }
    if (!body.contains("topic") || body["topic"].is_null()) {
      a.topic = DefaultAgentTopic(a.name);
    } else if (!body["topic"].is_string() || !IsValidKafkaTopic(body["topic"].get<std::string>())) {
      problem("topic", "must be 1-249 characters of letters, digits, '.', '_' and '-'");
    } else {
      a.topic = body["topic"].get<std::string>();
    }
  }
  if (body.contains("health_url") && !body["health_url"].is_null()) {
    if (!body["health_url"].is_string() || !http::ParseUrl(body["health_url"].get<std::string>()).ok()) {
      problem("health_url", "must be an http:// URL");
    } else {
      a.health_url = body["health_url"].get<std::string>();
    }
  }
  if (body.contains("timeout_ms")) {
    const json& t = body["timeout_ms"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 86400000) {
      problem("timeout_ms", "must be an integer from 1 to 86400000");
    } else {
      a.timeout_ms = t.get<int64_t>();
    }
  }
  if (body.contains("max_concurrency")) {
    const json& c = body["max_concurrency"];
    if (!c.is_number_integer() || c.get<int64_t>() < 0 || c.get<int64_t>() > 1000000) {
      problem("max_concurrency", "must be an integer >= 0 (0 = unlimited)");
    } else {
      a.max_concurrency = c.get<int>();
    }
  }
  if (body.contains("metadata")) {
    if (!body["metadata"].is_object()) {
      problem("metadata", "must be an object");
    } else {
      a.metadata = body["metadata"];
    }
  }
  if (!problems.empty()) {
    return Status::InvalidArgument(problems[0]["message"].get<std::string>(), {{"problems", problems}});
  }
  return a;
}

Status AgentsApi::CheckHosts(const Agent& a) const {
  if (a.transport == AgentTransport::kHttp) AF_RETURN_IF_ERROR(options_.agent_hosts.CheckUrl("url", a.url));
  if (!a.health_url.empty()) AF_RETURN_IF_ERROR(options_.agent_hosts.CheckUrl("health_url", a.health_url));
  return Status::Ok();
}

Response AgentsApi::Create(Request& req) {
  auto body = ParseBody(req, nullptr);
  if (!body.ok()) return ErrorResponse(body.status());
  auto agent = AgentFromJson(*body, "");
  if (!agent.ok()) return ErrorResponse(agent.status());
  if (Status hosts = CheckHosts(*agent); !hosts.ok()) return ErrorResponse(hosts);
  auto created = store_->CreateAgent(*agent);
  if (!created.ok()) return ErrorResponse(created.status());
  return http::JsonResponse(201, ToJson(*created));
}

Response AgentsApi::Put(Request& req) {
  const std::string& name = req.path_params["name"];
  Status valid = CheckId(name, "agent name");
  if (!valid.ok()) return ErrorResponse(valid);
  auto body = ParseBody(req, nullptr);
  if (!body.ok()) return ErrorResponse(body.status());
  auto agent = AgentFromJson(*body, name);
  if (!agent.ok()) return ErrorResponse(agent.status());
  if (Status hosts = CheckHosts(*agent); !hosts.ok()) return ErrorResponse(hosts);
  auto saved = store_->UpsertAgent(*agent);
  if (!saved.ok()) return ErrorResponse(saved.status());
  return http::JsonResponse(200, ToJson(*saved));
}

Response AgentsApi::List(Request&) {
  auto agents = store_->ListAgents();
  if (!agents.ok()) return ErrorResponse(agents.status());
  json items = json::array();
  for (const auto& a : *agents) items.push_back(ToJson(a));
  return http::JsonResponse(200, {{"items", items}});
}

Response AgentsApi::Get(Request& req) {
  const std::string& name = req.path_params["name"];
  Status valid = CheckId(name, "agent name");
  if (!valid.ok()) return ErrorResponse(valid);
  auto a = store_->GetAgent(name);
  if (!a.ok()) return ErrorResponse(a.status());
  return http::JsonResponse(200, ToJson(*a));
}

Response AgentsApi::Delete(Request& req) {
  const std::string& name = req.path_params["name"];
  Status valid = CheckId(name, "agent name");
  if (!valid.ok()) return ErrorResponse(valid);
  Status s = store_->DeleteAgent(name);
  if (!s.ok()) return ErrorResponse(s);
  Response r;
  r.status = 204;
  return r;
}

Response AgentsApi::Heartbeat(Request& req) {
  const std::string& name = req.path_params["name"];
  Status valid = CheckId(name, "agent name");
  if (!valid.ok()) return ErrorResponse(valid);
  auto body = ParseBody(req, json::object());
  if (!body.ok()) return ErrorResponse(body.status());
  Status fields = CheckFields(*body, {"status", "error"});
  if (!fields.ok()) return ErrorResponse(fields);
  AgentHealthUpdate u;
  u.name = name;
  u.health = AgentHealth::kHealthy;
  u.at = NowMs();
  if (body->contains("status")) {
    const json& st = (*body)["status"];
    auto h = st.is_string() ? ParseAgentHealth(st.get<std::string>()) : std::nullopt;
    if (!h || *h == AgentHealth::kUnknown) {
      return ErrorResponse(Status::InvalidArgument("status must be \"healthy\" or \"unhealthy\""));
    }
    u.health = *h;
  }
  if (body->contains("error") && !(*body)["error"].is_null()) {
    if (!(*body)["error"].is_string()) return ErrorResponse(Status::InvalidArgument("error must be a string"));
    u.error = (*body)["error"].get<std::string>();
  }
  if (u.health == AgentHealth::kUnhealthy && u.error.empty()) u.error = "the agent reported itself unhealthy";
  Status s = store_->RecordAgentHealth(u);
  if (!s.ok()) return ErrorResponse(s);
  Response r;
  r.status = 204;
  return r;
}

void AgentsApi::Register(http::Router& router, std::shared_ptr<StoreWorker> readers) {
  auto sync = [this, &readers](Response (AgentsApi::*fn)(Request&)) -> http::Handler {
    return OffIoThread(readers, [this, fn](Request& req) { return (this->*fn)(req); });
  };
  const std::string base = "/api/v1/agents";
  router.Add("POST", base, sync(&AgentsApi::Create));
  router.Add("GET", base, sync(&AgentsApi::List));
  router.Add("GET", base + "/{name}", sync(&AgentsApi::Get));
  router.Add("PUT", base + "/{name}", sync(&AgentsApi::Put));
  router.Add("DELETE", base + "/{name}", sync(&AgentsApi::Delete));
  router.Add("POST", base + "/{name}/heartbeat", sync(&AgentsApi::Heartbeat));
}

}  // namespace af
