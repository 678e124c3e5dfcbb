// The agent host allow-list (--agent-hosts / AGENTFLOW_AGENT_HOSTS): which
// hosts agent URLs may point at. Agents are reached only through URLs kept in
// the registry (a plan names agents, never URLs), so the list is enforced at
// the two places a URL enters or leaves: registering an agent (its url and
// health_url; 400 naming the host) and calling one (the executor refuses to
// call a host that is not listed; the step fails, not retried). That keeps a
// registry writer from turning the executor into a client for any host on
// its network.
//
// Entries are host names or IP addresses, compared case-insensitively; an
// entry "*.example.com" allows every subdomain of example.com (not
// example.com itself). An empty list allows every host (the default).
//
// Thread-safety: an AgentHostAllowList is an immutable value; the caller
// decorator is used from its executor only, like the caller it wraps.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent.h"
#include "common/status.h"

namespace af::auth {

class AgentHostAllowList {
 public:
  AgentHostAllowList() = default;  // allows every host

  // "host1,host2,*.example.com" (spaces around entries ignored; "" allows
  // every host). InvalidArgument for an entry that is not a host name or IP.
  static Result<AgentHostAllowList> Parse(std::string_view comma_list);

  // True when no list was given (every host allowed).
  bool allows_all() const { return entries_.empty(); }
  bool Allows(std::string_view host) const;
  // OK if `url` is an http URL whose host Allows; else InvalidArgument
  // naming `field` and the host.
  Status CheckUrl(std::string_view field, const std::string& url) const;
  // "a, b, *.c" for messages.
  std::string ToString() const;

 private:
  std::vector<std::string> entries_;  // lowercase
};

// Wraps `inner`: an HTTP agent whose URL host the list does not allow gets
// a permanent failure naming the host, without a call. Kafka agents (no URL)
// pass through.
std::unique_ptr<AgentCaller> NewHostCheckingAgentCaller(std::unique_ptr<AgentCaller> inner,
                                                        AgentHostAllowList allow);

}  // namespace af::auth
