// Sample agents served over HTTP on loopback for demos and tests, at
// http://HOST:PORT/agents/<name>:
//   echo   → {"echo": input}; with input.echo_headers [names], also
//            "headers": {name: value or null} of the request
//   upper  → {"text": upper-case input.text}
//   sleep  → waits input.ms (no thread held), then {"slept_ms": ms}
//   fail   → 500 {"error": ...}; 400 when input.permanent is true
//   flaky  → fails (503) the first input.failures attempts per
//            Idempotency-Key, then {"attempts": n, "input": input}
// Thread-safety: Start/Stop from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/types.h"

namespace af {

class DemoAgents {
 public:
  virtual ~DemoAgents() = default;
  virtual uint16_t port() const = 0;
  virtual std::string base_url() const = 0;  // "http://127.0.0.1:PORT"
  // One Agent record per sample agent, pointing at this server.
  virtual std::vector<Agent> Records() const = 0;
  virtual void Stop() = 0;
};

Result<std::unique_ptr<DemoAgents>> StartDemoAgents(const std::string& host, uint16_t port);

}  // namespace af
