// The Workflow Management API (JSON under /api/v1): workflows, runs, step
// executions, agents (AgentsApi, also served alone by `agentflow registry`),
// health. Handlers are logic over the Store and Queue
// interfaces; the HTTP server is wiring (http::Server + http::Router).
// docs/api.md documents every route.
//
// Thread-safety: one Api may serve many connections on many threads.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "api/agents_api.h"
#include "api/apikeys_api.h"
#include "http/http.h"
#include "metrics/agentflow_metrics.h"
#include "model/plan.h"
#include "queue/queue.h"
#include "storage/change_feed.h"
#include "storage/store.h"

namespace af {

struct ApiOptions {
  std::string execution_topic = kExecutionTopic;        // where triggers go
  std::string cancellation_topic = kCancellationTopic;  // where cancels go
  int max_wait_seconds = 300;                            // cap on ?wait=
  // While long-polling, re-read the run this often even without a change
  // notification (changes made by other processes are not in the feed).
  std::chrono::milliseconds wait_poll_interval{500};
  // When runs are ended by other processes (the distributed api): every run
  // waited for is read in one statement this often at the least (more
  // rarely with many; api/run_watcher.h), so a ?wait answers within
  // about this long of the run's end, and an event stream
  // (GET /runs/{id}/events) sends its end event, and each step's, as soon.
  // 0: off (serve, whose feed hears every change).
  std::chrono::milliseconds run_end_poll{0};
  // Also LISTEN for the writers' run-end notifications and read at once on
  // one (Store::ListenForRunEnds; one more connection). Only worth it when
  // the consumers send them (--notify-run-ends): off, no connection.
  bool listen_for_run_ends = false;
  // A run's event stream (GET /runs/{id}/events) re-reads the run this often
  // without a change notification (with a run watcher, only a safety net:
  // the api sets 2 s then), and sends a comment after this long
  // without an event (so proxies and clients see the connection alive, and
  // a client that left is noticed).
  std::chrono::milliseconds events_poll_interval{250};
  std::chrono::milliseconds events_keepalive{15000};
  PlanLimits plan_limits;
  // Counts runs created, and runs the API itself ends (a PENDING run
  // cancelled). Null: nothing is counted.
  // Must outlive the Api.
  metrics::ApiRunMetrics* metrics = nullptr;
  // Hosts agents may be registered on (--agent-hosts); default: any.
  auth::AgentHostAllowList agent_hosts;
  // --auth: with kOff the /api/v1/apikeys routes refuse to work (see
  // api/apikeys_api.h). The check itself is the router's guard
  // (api/auth_guard.h), installed by the service.
  auth::AuthMode auth_mode = auth::AuthMode::kOff;
  // Called after a run and its execution request were committed to the
  // outbox (trigger, retry): the service kicks its Dispatcher so the request
  // is published at once. Empty: it waits for the relay's next poll.
  std::function<void()> on_dispatch;
  // Triggers are committed in batches by store_threads worker threads, up
  // to max_trigger_batch runs per transaction (api/store_worker.h). The
  // other store calls of the run and workflow routes (reads, cancel, retry,
  // /healthz's ping) run on read_threads threads of their own (at most
  // Store::MaxConcurrentCalls: one on SQLite). So these handlers never wait
  // for the database on an HTTP io thread: a slow query delays its own
  // request, not every connection of the io thread.
  int store_threads = 1;
  size_t max_trigger_batch = 256;
  int read_threads = 2;
  // How long an id or name resolves to the same latest workflow version
  // before it is read again (api/workflow_cache.h): a change made through
  // another api process reaches triggers here within twice this time (one
  // trigger refreshes an expired resolution while the others use it); this
  // process's own changes at once. 0: read at every trigger.
  std::chrono::milliseconds workflow_cache_ttl{1000};
};

// Maps a Status to its HTTP status and JSON error body — the one table.
int HttpStatusFor(Code code);
http::Response ErrorResponse(const Status& status);

class Api {
 public:
  // `feed` may be null (then long-polls only re-read at wait_poll_interval).
  Api(Store* store, Queue* queue, std::shared_ptr<ChangeFeed> feed, ApiOptions options = {});

  // Adds every route to `router`.
  void Register(http::Router& router);

  // The threads the handlers make their store calls on (ApiOptions::
  // read_threads), for the service's other routes and its auth guard to
  // share; holds what it needs alive.
  std::shared_ptr<StoreWorker> Readers() const;

  // Publishes an execution request for every run that is not finished, so a
  // run accepted just before a crash (row written, request not yet queued)
  // still executes. Duplicates are harmless: the executor ignores requests
  // for runs that are terminal or already executing.
  Status RequeueUnfinishedRuns();

  // Finishes the store calls in flight (their requests are answered) and
  // stops the worker threads; later triggers commit on the io thread. Call
  // before stopping the HTTP server (whose io threads resume the waiters).
  void Stop();
  // How many runs ?wait requests and event streams wait for the end of now,
  // counted by the run watcher (ApiOptions::run_end_poll); 0 without one.
  size_t RunsWaitedFor() const;

 private:
  class Handlers;
  std::shared_ptr<Handlers> handlers_;
  AgentsApi agents_;
  ApiKeysApi apikeys_;
};

}  // namespace af
