// The access-control flags of the services, in one place: --auth
// (AGENTFLOW_AUTH) on serve, api and registry; --agent-hosts
// (AGENTFLOW_AGENT_HOSTS) on serve, api, registry, consumer and executor;
// and the API key CLI clients send (AGENTFLOW_API_KEY, --api-key).
// Wiring only: the policy is src/auth.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "auth/agent_hosts.h"
#include "auth/auth.h"
#include "common/status.h"

namespace af::cli {

struct AccessFlags {
  std::string auth = "off";  // --auth required|off
  std::string agent_hosts;   // --agent-hosts h1,h2 ("" = any host)
};

struct Access {
  auth::AuthMode auth_mode = auth::AuthMode::kOff;
  auth::AgentHostAllowList agent_hosts;
};

// Adds --auth (when `with_auth`) and --agent-hosts to `cmd`.
void AddAccessOptions(CLI::App* cmd, AccessFlags& flags, bool with_auth);
// InvalidArgument for an unknown --auth or a malformed --agent-hosts.
Result<Access> ParseAccess(const AccessFlags& flags);

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Logs, at start-up, how `service` (bound to host:port) is protected: a
// warning when auth is off (a mild one on loopback, for local development; a
// loud one on any other address), an info line when it is required, and the
// agent host allow-list when there is one.
void LogAccess(const std::string& service, const std::string& host, uint16_t port, const Access& access);

// AGENTFLOW_API_KEY, for the service-to-service calls (registry lookups,
// heartbeats, demo-agents --register); "" when unset.
std::string ApiKeyFromEnv();

}  // namespace af::cli
