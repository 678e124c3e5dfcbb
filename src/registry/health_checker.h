// The agent registry's health checker: every interval it GETs the health_url
// of each agent that has one and records healthy (2xx) or unhealthy (anything
// else, with the reason); an agent without a health_url that sent heartbeats
// turns unhealthy when none arrived for heartbeat_ttl. Agents that have
// neither stay "unknown" (and are called).
//
// Runs on its own thread and io_context; the checks of one round run
// concurrently (no thread per check). Several registry instances may check
// the same agents: each writes its observation, the last one wins.
//
// Thread-safety: Start/Stop from one thread. CheckOnce from any thread while
// not started (tests).
#pragma once

#include <chrono>
#include <memory>

#include "storage/store.h"

namespace af {

struct HealthCheckOptions {
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds timeout{2000};  // per GET
  // Heartbeat-only agents turn unhealthy after this long without one;
  // 0 means 3 × interval.
  std::chrono::milliseconds heartbeat_ttl{0};
};

class HealthChecker {
 public:
  virtual ~HealthChecker() = default;
  // Checks now, then every interval, until Stop.
  virtual void Start() = 0;
  // Waits for the round in progress to end. Idempotent.
  virtual void Stop() = 0;
  // One round, synchronously: returns after every observation is recorded.
  virtual Status CheckOnce() = 0;
};

// `store` must outlive the checker.
std::unique_ptr<HealthChecker> NewHealthChecker(Store* store, HealthCheckOptions options);

}  // namespace af
