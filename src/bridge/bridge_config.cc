#include "bridge/bridge_config.h"

#include <map>

#include "common/ids.h"
#include "http/http.h"

namespace af {
namespace {

// Splits "NAME=VALUE" at the first '='.
Result<std::pair<std::string, std::string>> SplitSpec(const std::string& spec, const char* flag, const char* what) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
    return Status::InvalidArgument(std::string(flag) + " takes NAME=" + what + ", got '" + spec + "'");
  }
  return std::make_pair(spec.substr(0, eq), spec.substr(eq + 1));
}

}  // namespace

Result<std::vector<BridgedAgent>> ParseBridgedAgents(const std::vector<std::string>& agent_specs,
                                                     const std::vector<std::string>& topic_specs) {
  if (agent_specs.empty()) {
    return Status::InvalidArgument("no agents to serve. Hint: pass --agent NAME=URL (repeatable)");
  }
  std::vector<BridgedAgent> agents;
  std::map<std::string, size_t> index;
  for (const std::string& spec : agent_specs) {
    auto kv = SplitSpec(spec, "--agent", "URL");
    if (!kv.ok()) return kv.status();
    const auto& [name, url] = *kv;
    if (!IsValidId(name)) {
      return Status::InvalidArgument("--agent " + spec + ": the name must be 1..128 characters of [A-Za-z0-9._:-]");
    }
    if (auto parsed = http::ParseUrl(url); !parsed.ok()) {
      return Status::InvalidArgument("--agent " + spec + ": " + parsed.status().message() +
                                     ". Hint: the agent's URL as the executor would POST to it, e.g. "
                                     "http://127.0.0.1:9000/agents/echo");
    }
    if (!index.emplace(name, agents.size()).second) {
      return Status::InvalidArgument("agent '" + name + "' is given twice with --agent");
    }
    agents.push_back(BridgedAgent{name, url, DefaultAgentTopic(name)});
  }
  for (const std::string& spec : topic_specs) {
    auto kv = SplitSpec(spec, "--topic", "TOPIC");
    if (!kv.ok()) return kv.status();
    const auto& [name, topic] = *kv;
    auto it = index.find(name);
    if (it == index.end()) {
      return Status::InvalidArgument("--topic " + spec + ": agent '" + name +
                                     "' is not served. Hint: give it with --agent NAME=URL as well");
    }
    if (!IsValidKafkaTopic(topic)) {
      return Status::InvalidArgument("--topic " + spec + ": invalid Kafka topic (1..249 characters of [A-Za-z0-9._-])");
    }
    agents[it->second].topic = topic;
  }
  for (const BridgedAgent& a : agents) {
    if (!IsValidKafkaTopic(a.topic)) {
      return Status::InvalidArgument("agent '" + a.name + "': its default topic " + a.topic +
                                     " is not a valid Kafka topic name. Hint: pass --topic " + a.name + "=TOPIC");
    }
  }
  return agents;
}

}  // namespace af
