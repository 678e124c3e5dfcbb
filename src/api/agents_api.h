// The agent registry's HTTP API under /api/v1/agents: register (POST, or PUT
// by name), list, get, delete, and heartbeats. Served by `agentflow serve`
// and `agentflow api` alongside the workflow API, and alone by `agentflow
// registry`. Logic over the Store interface; docs/agents.md documents it.
//
// Thread-safety: one AgentsApi may serve many connections on many threads.
#pragma once

#include <memory>

#include "auth/agent_hosts.h"
#include "http/http.h"
#include "storage/store.h"

namespace af {

class StoreWorker;

struct AgentsApiOptions {
  // Hosts an agent's url and health_url may name (--agent-hosts); a
  // registration naming another host is refused with 400. Default: any.
  auth::AgentHostAllowList agent_hosts;
};

class AgentsApi {
 public:
  explicit AgentsApi(Store* store, AgentsApiOptions options = {}) : store_(store), options_(std::move(options)) {}

  // Adds the /api/v1/agents routes to `router`; they use `this`, which must
  // outlive serving them (stop the server first). Their store calls run on
  // `readers`' threads (api/store_worker.h).
  void Register(http::Router& router, std::shared_ptr<StoreWorker> readers);

  // The handlers, synchronous (each does one store call or two).
  http::Response Create(http::Request& req);
  http::Response Put(http::Request& req);
  http::Response List(http::Request& req);
  http::Response Get(http::Request& req);
  http::Response Delete(http::Request& req);
  // POST /api/v1/agents/{name}/heartbeat, body {} or {"status":
  // "healthy"|"unhealthy", "error": "..."}: records the observation (204).
  http::Response Heartbeat(http::Request& req);

 private:
  // InvalidArgument naming the host if the agent's url or health_url is on
  // a host the allow-list does not hold.
  Status CheckHosts(const Agent& a) const;

  Store* store_;
  AgentsApiOptions options_;
};

// Validates an agent registration body (every problem listed in
// details.problems). `path_name` is the name from a PUT's path, or "".
Result<Agent> AgentFromJson(const json& body, const std::string& path_name);

}  // namespace af
