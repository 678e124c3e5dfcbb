// The bridge's command-line agent list, parsed and checked (pure; tested
// alone): `--agent NAME=URL` (repeatable) and `--topic NAME=TOPIC`
// (repeatable; agents without one use agent.<NAME>.requests).
#pragma once

#include <string>
#include <vector>

#include "bridge/bridge.h"
#include "common/status.h"

namespace af {

// InvalidArgument (with a hint) for a spec without '=', an invalid agent
// name (1..128 of [A-Za-z0-9._:-]), a URL that is not http://host[:port]/...,
// a name given twice, a --topic for an agent not given with --agent, or an
// invalid topic name.
Result<std::vector<BridgedAgent>> ParseBridgedAgents(const std::vector<std::string>& agent_specs,
                                                     const std::vector<std::string>& topic_specs);

}  // namespace af
