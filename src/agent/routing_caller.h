// An AgentCaller that sends each call to the caller of the endpoint's
// transport: HTTP agents to `http`, Kafka agents to `kafka`. Executors that
// have no Kafka configured pass no kafka caller; a call to a kafka agent then
// fails permanently with a hint, since retrying cannot help.
// Thread-safety: as the callers it routes to (used from their executor).
#pragma once

#include <memory>

#include "agent/agent.h"

namespace af {

// `http` is required; `kafka` may be null.
std::unique_ptr<AgentCaller> NewRoutingAgentCaller(std::unique_ptr<AgentCaller> http,
                                                   std::unique_ptr<AgentCaller> kafka);

}  // namespace af
