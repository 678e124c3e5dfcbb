// Wiring of the embedded default: one process with the SQLite store, the
// embedded durable queue, the executor engine with its execution consumer,
// the Workflow Management API and (optionally) the demo agents.
// Logic lives in the modules; this file only connects them.
// Thread-safety: Start/Stop from one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "agent/agent.h"
#include "agent/demo_agents.h"
#include "api/api.h"
#include "auth/agent_hosts.h"
#include "auth/auth.h"
#include "dispatch/dispatcher.h"
#include "cli/limit_flags.h"
#include "cli/reliability_flags.h"
#include "executor/consumer.h"
#include "executor/engine.h"
#include "executor/loop.h"
#include "http/http.h"
#include "metrics/agentflow_metrics.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "queue/queue.h"
#include "registry/health_checker.h"
#include "storage/change_feed.h"
#include "storage/store.h"

namespace af {

struct PlatformOptions {
  std::string host = "127.0.0.1";  // API bind address
  uint16_t port = 8000;            // API port (0: pick a free one)
  std::string data_dir = ".agentflow";  // SQLite database and queue file
  std::string database_url;        // overrides data_dir/agentflow.db when set (DATABASE_URL)
  bool demo = false;               // start demo agents, register them, load sample workflows
  uint16_t demo_port = 0;          // demo agents' port (0: pick a free one)
  // HTTP server threads. 1: no handler waits for the store on an io thread,
  // and on 2 cores a second io thread only adds switches: one accepted as
  // many triggers at less CPU each, and chain10 ran faster (docs/
  // benchmarks.md item 39). Raise it on machines with cores to spare.
  int api_threads = 1;
  size_t max_body_bytes = 1 << 20; // request body limit (413 above)
  size_t max_active_runs = 10000;  // runs executing at once before the consumer pauses (--max-runs)
  // false (--accept-only): no execution consumer and no sweeper. Runs are
  // accepted, stored PENDING and queued; a later serve on the data
  // directory without the flag executes them.
  bool execute = true;
  // Plans, step inputs and outputs, for_each, request timeouts
  // (docs/reliability.md, "Bad input and limits"); defaults in place there.
  cli::LimitFlags limits;
  bool sqlite_full_sync = false;   // synchronous=FULL (power-loss durable)
  double health_interval_seconds = 10;  // agent health checks (0: none)
  auth::AuthMode auth_mode = auth::AuthMode::kOff;  // --auth: API keys required on the API routes
  auth::AgentHostAllowList agent_hosts;             // --agent-hosts: where agents may be registered and called
  // Reliability (docs/reliability.md): run leases lapse this long after
  // their executor's last renewal; a run not finished, held by nobody and
  // last dispatched stranded_after ago is dispatched again (checked every
  // sweep_interval).
  cli::ReliabilityFlags reliability;
};

class Platform {
 public:
  explicit Platform(PlatformOptions options);
  ~Platform();

  Status Start();
  void Stop();

  uint16_t port() const;
  std::string url() const;  // "http://host:port"
  const DemoAgents* demo_agents() const { return demo_.get(); }
  Store* store() { return store_.get(); }
  metrics::Registry& registry() { return registry_; }

 private:
  Status LoadSampleWorkflows();
  // The engine, its event loop and agent caller, and the execution consumer
  // (not with --accept-only).
  Status StartExecutor();

  PlatformOptions options_;
  // Declared first: destroyed last (the engine, the API and the endpoints use them).
  metrics::Registry registry_;
  metrics::ExecutorMetrics executor_metrics_{registry_};
  metrics::ApiRunMetrics api_metrics_{registry_};
  std::shared_ptr<ChangeFeed> feed_;
  std::unique_ptr<HealthChecker> health_checker_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<Dispatcher> dispatcher_;  // outbox relay and sweeper
  int data_dir_lock_ = -1;                   // flock on <data_dir>/serve.lock (SQLite in the data dir only)
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<AgentDirectory> directory_;
  std::unique_ptr<AgentCaller> caller_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ExecutionConsumer> consumer_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<auth::Authenticator> authenticator_;  // the router's guard; outlives server_
  std::unique_ptr<ops::Endpoints> ops_;  // /healthz, /readyz, /metrics; outlives server_
  std::unique_ptr<http::Router> router_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<DemoAgents> demo_;
  bool started_ = false;
};

// The sample workflows embedded from examples/*.json: {name → plan JSON text}.
const std::vector<std::pair<std::string, std::string>>& SampleWorkflows();

}  // namespace af
