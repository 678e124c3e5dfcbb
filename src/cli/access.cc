#include "cli/access.h"

#include <cstdlib>

#include "common/log.h"

namespace af::cli {

void AddAccessOptions(CLI::App* cmd, AccessFlags& flags, bool with_auth) {
  if (with_auth) {
    cmd->add_option("--auth", flags.auth,
                    "required: every API request but /healthz, /readyz and /metrics needs an API key "
                    "(Authorization: Bearer KEY; see 'agentflow apikey'); off: the API is open")
        ->envname("AGENTFLOW_AUTH")
        ->check(CLI::IsMember({"required", "off"}))
        ->capture_default_str();
  }
  cmd->add_option("--agent-hosts", flags.agent_hosts,
                  "comma-separated hosts agent URLs may name (e.g. agents.internal,10.0.0.5,*.example.com); "
                  "agents elsewhere cannot be registered or called (default: any host)")
      ->envname("AGENTFLOW_AGENT_HOSTS");
}

Result<Access> ParseAccess(const AccessFlags& flags) {
  Access out;
  auto mode = auth::ParseAuthMode(flags.auth);
  if (!mode) {
    return Status::InvalidArgument("--auth must be 'required' or 'off', not '" + flags.auth + "'");
  }
  out.auth_mode = *mode;
  auto hosts = auth::AgentHostAllowList::Parse(flags.agent_hosts);
  if (!hosts.ok()) return hosts.status();
  out.agent_hosts = std::move(hosts).value();
  return out;
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

void LogAccess(const std::string& service, const std::string& host, uint16_t port, const Access& access) {
  std::string where = host + ":" + std::to_string(port);
  if (access.auth_mode == auth::AuthMode::kRequired) {
    log::Info(service + ": authentication required: API keys (Authorization: Bearer) are checked on every route "
                        "but /healthz, /readyz and /metrics");
  } else if (IsLoopbackHost(host)) {
    log::Warn(service + ": the API on " + where +
              " is open (--auth off): anyone on this machine may use it. That is meant for local development; "
              "start with --auth required (AGENTFLOW_AUTH=required) to require API keys");
  } else {
    log::Warn("SECURITY WARNING: " + service + " listens on " + where +
              " with --auth off: ANYONE WHO CAN REACH THIS PORT can create workflows, register agents and trigger "
              "runs. Start with --auth required (AGENTFLOW_AUTH=required) and create keys with 'agentflow apikey "
              "create', or bind to 127.0.0.1");
  }
  if (!access.agent_hosts.allows_all()) {
    log::Info(service + ": agent URLs are limited to the hosts " + access.agent_hosts.ToString());
  }
}

std::string ApiKeyFromEnv() {
  const char* v = std::getenv("AGENTFLOW_API_KEY");
  return v ? v : "";
}

}  // namespace af::cli
