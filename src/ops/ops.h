// The operational endpoints every agentflow service serves (docs/api.md,
// "Health, readiness and metrics"):
//
//   GET /healthz  200 {"status": "ok", ...} while the process serves HTTP.
//                 Liveness only: no dependency is checked, so a database
//                 outage never gets a healthy process restarted.
//   GET /readyz   200 {"status": "ok", "checks": {...}} when every check
//                 passes; 503 {"status": "unavailable", "checks": {name:
//                 "ok" | why}, "down": [names]} otherwise.
//   GET /metrics  the service's metrics registry, Prometheus text 0.0.4.
//
// and the agentflow_http_request_duration_seconds metric of every route of
// the service (Instrument).
//
// The checks block (a database ping, a Kafka metadata request of up to 2 s),
// so they run on a thread of their own, never on the HTTP server's io
// threads; concurrent /readyz requests share one round of checks.
//
// Thread-safety: Register and Instrument during setup, from one thread; the
// handlers they install run on any io thread. The Endpoints must outlive the
// HTTP server that serves them (stop the server first).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "http/http.h"
#include "metrics/agentflow_metrics.h"
#include "metrics/metrics.h"

namespace af::ops {

// One dependency /readyz checks. `probe` blocks until the dependency answers
// or fails (it should bound its own wait).
struct Check {
  std::string name;  // "database", "kafka", "queue", "registry"
  std::function<Status()> probe;
};

// The outcome of one round of checks.
struct Readiness {
  std::vector<std::pair<std::string, Status>> results;  // in the order of the checks
  bool ready() const;
  int http_status() const { return ready() ? 200 : 503; }
  // {"status": "ok"|"unavailable", "checks": {name: "ok"|message}, "down": [names]}
  nlohmann::json ToJson() const;
};

// Runs every check, one after the other (a probe that throws counts as down).
Readiness RunChecks(const std::vector<Check>& checks);

// A check that GETs `url` (e.g. a registry's /healthz) and passes on any
// 2xx answer within `timeout`.
Check HttpCheck(std::string name, std::string url, std::chrono::milliseconds timeout = std::chrono::seconds(2));

struct EndpointsOptions {
  std::vector<Check> checks;  // what /readyz checks
  // Extra fields of the /healthz body (e.g. the consumer's active_runs);
  // must be quick and non-blocking.
  std::function<nlohmann::json()> health_details;
};

class Endpoints {
 public:
  // `registry` must outlive the Endpoints.
  Endpoints(metrics::Registry* registry, EndpointsOptions options);
  ~Endpoints();  // waits for a round of checks in progress
  Endpoints(const Endpoints&) = delete;
  Endpoints& operator=(const Endpoints&) = delete;

  // Adds GET /healthz, /readyz and /metrics to `router`.
  void Register(http::Router& router);
  // `inner` (usually Router::AsHandler()) with every request recorded in
  // agentflow_http_request_duration_seconds{method, route, status}.
  http::Handler Instrument(http::Handler inner);

  // One round of checks from the calling thread (blocks).
  Readiness CheckNow() const { return RunChecks(options_.checks); }
  metrics::Registry& registry() { return *registry_; }

 private:
  struct Round;  // one round of checks, shared by the requests waiting for it
  std::shared_ptr<Round> StartRound();
  void CheckLoop();
  boost::asio::awaitable<http::Response> Ready();

  metrics::Registry* registry_;
  EndpointsOptions options_;
  metrics::HttpMetrics http_metrics_;

  std::mutex mu_;  // guards next_, stop_
  std::condition_variable cv_;
  std::shared_ptr<Round> next_;  // requested, not yet started
  bool stop_ = false;
  std::thread checker_;
};

}  // namespace af::ops
