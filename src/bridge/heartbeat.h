// The bridge's side of the agent registry (AGENT_REGISTRY_URL): optionally
// registers each bridged agent as a kafka agent, and sends heartbeats for it
// while its HTTP service answers.
//
// Every `interval`, for each agent:
//  1. with `register_agents`, if not registered yet (or the registry forgot
//     it: a heartbeat answered 404): PUT {registry}/api/v1/agents/NAME with
//     {"name", "transport": "kafka", "topic", "timeout_ms"}; a failure is
//     logged and tried again next round, so the registry may start after the
//     bridge;
//  2. probe the HTTP agent: GET on its base URL (http://host:port/); any HTTP
//     answer counts as alive (a 404 for "/" still means the server is up);
//  3. if alive: POST {registry}/api/v1/agents/NAME/heartbeat with body {}
//     (204 expected; 404 means the registry does not know the agent).
// So an agent whose service is down gets no heartbeat, and the registry can
// mark it unhealthy.
//
// Thread-safety: Start and Stop from one thread (not the executor's);
// stats from any. The loop runs on `executor` (single-threaded), which must
// keep running until Stop returns.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "bridge/bridge.h"
#include "common/cancel.h"
#include "common/status.h"

namespace af {

struct HeartbeatOptions {
  std::string registry_url;                     // "http://host:port" (AGENT_REGISTRY_URL)
  // Sent as "Authorization: Bearer <key>" when the registry runs with
  // --auth required (AGENTFLOW_API_KEY; registering needs admin, heartbeats
  // operator). Empty: no header.
  std::string api_key;
  bool register_agents = false;                 // --register
  std::chrono::milliseconds interval{10000};    // --heartbeat-interval
  int64_t timeout_ms = 30000;                   // the timeout_ms registered for each agent
  std::chrono::milliseconds probe_timeout{5000};  // per probe and per registry request
};

struct HeartbeatStats {
  uint64_t registrations = 0;     // successful PUTs
  uint64_t heartbeats = 0;        // heartbeats the registry accepted
  uint64_t probe_failures = 0;    // rounds in which an agent did not answer
  uint64_t registry_errors = 0;   // registry requests that failed
};

// Pure parts, tested alone.
// "http://host:port/" for an agent URL; InvalidArgument if it is not http://.
Result<std::string> AgentBaseUrl(const std::string& url);
// The registration body: {"name", "transport": "kafka", "topic", "timeout_ms"}.
json RegistrationBody(const BridgedAgent& agent, int64_t timeout_ms);

class RegistryHeartbeat {
 public:
  RegistryHeartbeat(boost::asio::any_io_executor executor, std::vector<BridgedAgent> agents, HeartbeatOptions options);
  ~RegistryHeartbeat();  // Stop()

  void Start();
  // Stops the loop and waits (bounded) for it to end. Idempotent.
  void Stop();
  HeartbeatStats stats() const;

 private:
  boost::asio::awaitable<void> Loop();

  boost::asio::any_io_executor executor_;
  std::vector<BridgedAgent> agents_;
  HeartbeatOptions options_;
  CancelSignal stop_signal_;  // executor thread only
  bool started_ = false;
  bool stopped_ = false;
  std::promise<void> done_;
  std::atomic<uint64_t> registrations_{0}, heartbeats_{0}, probe_failures_{0}, registry_errors_{0};
};

}  // namespace af
