// The Centralized Executor and the engine that hosts many of them.
//
// One RunExecutor drives one run: PENDING → RUNNING → COMPLETED | FAILED |
// CANCELLED, recording every attempt of every step in step_executions and
// committing each step's result before any step that depends on it starts.
// A run found RUNNING (its executor died) resumes from its recorded state:
// COMPLETED steps are not called again; their outputs are reused.
//
// The Engine runs all executors as coroutines on one event loop: no thread
// per run or per agent call. Per-agent max_concurrency is enforced across all
// runs of the process. The runs' write batches are group-committed
// (WriteGrouper): batches that arrive while a commit is in flight go to the
// store together in the next one.
//
// Thread-safety: Submit, Cancel and ActiveRuns are safe from any thread;
// everything else happens on the engine's executor.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "metrics/agentflow_metrics.h"
#include "model/limits.h"
#include "model/plan_cache.h"
#include "queue/messages.h"
#include "storage/store.h"

namespace af {

struct EngineOptions {
  // Delay before a run whose store writes failed is tried again.
  std::chrono::milliseconds store_retry_delay{1000};
  // Applied when neither the step nor the agent sets a timeout.
  int64_t default_timeout_ms = 30000;
  // How often the store is asked whether any run executing here was asked to
  // be cancelled (so a cancellation reaches a run whichever process received
  // it); 0 disables.
  std::chrono::milliseconds cancel_poll_interval{500};
  // Where the engine counts runs, steps, agent errors and retries (null: it
  // counts nothing). Updates are atomics only: no lock, allocation or store
  // call is added to a step. Must outlive the engine.
  metrics::ExecutorMetrics* metrics = nullptr;
  // Step input size and for_each fan-out (model/limits.h): over them the
  // step fails without calling its agent.
  StepLimits limits;
  // Leases (storage/store.h): an executor drives a run only while it holds
  // the run's lease, and every write it makes carries the lease's fencing
  // token, so a stale executor (paused, partitioned, its request redelivered
  // elsewhere) cannot write once another took over. `owner` names this
  // engine in workflow_runs.lease_owner (empty: host:pid:random); leases are
  // renewed every lease_ttl / 3 and lapse lease_ttl after the last renewal.
  std::string owner;
  std::chrono::milliseconds lease_ttl{15000};
  // Store calls run on this many threads so that one run's commit does not
  // stop the others (executor/store_runner.h); 0: on the loop itself; -1:
  // as many as the store has connections (Store::MaxConcurrentCalls; 1 →
  // on the loop).
  int store_threads = -1;
  // While the engine drives a single run, a store call made while no other
  // is in flight runs on the loop (no hand-off between threads for a lone
  // run).
  bool store_inline_when_idle = true;
  // Group commit (Store::ApplyRunWritesGroup): write batches of different
  // runs that wait while this many groups are committing go together in
  // the next one, at most max_write_group of them. A batch that finds a
  // free slot commits at once. `agentflow consumer` uses 2
  // (--write-groups; docs/benchmarks.md items 9 and 16 measured 1, 2, 4
  // and 8); a run never has more than one batch in flight.
  int write_groups_in_flight = 1;
  size_t max_write_group = 64;
  // A new run whose execution request carries its plan is started in its
  // first write batch (Store RunWrite::kStart: the lease and PENDING →
  // RUNNING commit with the first steps' rows), saving the separate lease
  // acquire's commit. false: every run takes the general start.
  bool fresh_start = true;
};

// The lease owner name for this process: "<host>:<pid>:<random>".
std::string DefaultLeaseOwner();

// What happened to a submitted run, reported once per Submit.
struct RunOutcome {
  enum class Kind {
    kFinished,   // the run is in a terminal state (now or already before)
    kDuplicate,  // the run is already being executed by this engine
    kDropped,    // the run does not exist; nothing to do
    kAbandoned,  // the engine shut down first; the run resumes elsewhere/later
    kTakenOver,  // another executor took the run's lease; this one stopped without writing more
  };
  Kind kind = Kind::kFinished;
  std::string run_id;
  std::optional<RunStatus> status;  // for kFinished
};

class Engine {
 public:
  using Done = std::function<void(const RunOutcome&)>;

  // `store`, `agents` and `caller` must outlive the engine; `caller` must be
  // bound to `executor`.
  Engine(boost::asio::any_io_executor executor, Store* store, AgentDirectory* agents, AgentCaller* caller,
         EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts (or resumes) the run. `done` is called exactly once, on the
  // engine's executor: when the run is terminal, when it does not exist, or
  // at Shutdown (kAbandoned). A request for a run already active here is
  // started when that execution ends (the run may have been retried just
  // as it ended); a further one meanwhile is a duplicate (kDuplicate).
  // While the store fails, the run is retried after store_retry_delay.
  void Submit(ExecutionRequest request, Done done);

  // Cancels a run executing here: in-flight agent calls are aborted, no new
  // step starts, the run ends CANCELLED with who and why. Returns without
  // waiting. No effect on runs not executing here. `requested_at` (ms since
  // the epoch, 0: unknown) is when the cancellation was asked for: one from
  // before the run's current attempt started (a replayed message, or one for
  // the attempt before a retry) is ignored.
  void Cancel(const std::string& run_id, const std::string& cancelled_by, const std::string& reason,
              TimeMs requested_at = 0);

  // Runs currently executing (approximate when read from another thread).
  size_t ActiveRuns() const { return active_count_.load(); }

  // The name this engine holds run leases under.
  const std::string& owner() const { return owner_; }

  // Abandons the given runs if they execute here (they stay as recorded and
  // resume wherever their request is delivered next), reporting kAbandoned
  // for each. Blocks until they have unwound; call from another thread than
  // the engine's. Used when the queue hands their requests to another
  // consumer.
  void Abandon(const std::vector<std::string>& run_ids);

  // Waits up to `timeout` for every executing run to end (new Submits still
  // start). True if none is left. Call from another thread than the engine's.
  bool WaitIdle(std::chrono::milliseconds timeout);

  // Abandons all runs (they stay RUNNING in the store and resume on the next
  // Submit of their request) and reports kAbandoned for each. Blocks until
  // every executor and the background loops (cancel poller, lease renewer)
  // have unwound: call it from another thread than the engine's, while the
  // event loop still runs, and before destroying an engine that ran anything.
  void Shutdown();

  class RunExecutor;  // one per active run (engine.cc)

 private:
  void Start(ExecutionRequest request, Done done);
  void Finish(const std::string& run_id, const RunOutcome& outcome);
  void CancelLocal(const std::string& run_id, const std::string& cancelled_by, const std::string& reason,
                   TimeMs requested_at);
  boost::asio::awaitable<void> PollCancelRequests();
  boost::asio::awaitable<void> RenewLeases();

  boost::asio::any_io_executor executor_;
  Store* store_;
  AgentDirectory* agents_;
  AgentCaller* caller_;
  EngineOptions options_;
  std::string owner_;  // options_.owner, or DefaultLeaseOwner()
  struct Active;
  std::map<std::string, std::shared_ptr<Active>> active_;  // engine thread only
  // Agent calls awaiting their reply (engine thread only). A commit made
  // inline on the loop (StoreRunner's inline_when_idle) would keep their
  // replies waiting: with any in flight, commits go to the runner's threads.
  int calls_in_flight_ = 0;
  std::atomic<size_t> active_count_{0};
  bool shut_down_ = false;
  std::shared_ptr<std::promise<void>> shutdown_done_;
  bool cancel_poller_running_ = false;
  bool lease_renewer_running_ = false;
  // The background loops' timers: Shutdown cancels them and waits for both
  // loops to exit, so that none wakes up in a destroyed engine.
  boost::asio::steady_timer cancel_poll_timer_;
  boost::asio::steady_timer lease_timer_;
  void MaybeEndShutdown();  // fulfils shutdown_done_ once nothing runs here
  // Abandon() waiters: run ids still to unwind, and the promise to fulfil.
  struct AbandonWait {
    std::set<std::string> left;
    std::shared_ptr<std::promise<void>> done;
  };
  std::vector<AbandonWait> abandon_waits_;
  std::mt19937_64 rng_{std::random_device{}()};  // engine thread only: retry and renewal jitter
  PlanCache plans_;                              // engine thread only
  std::unique_ptr<class AgentLimiter> limiter_;
  std::unique_ptr<class WriteGrouper> writes_;  // group commit of the runs' write batches
  // Last: joined (its calls in flight return) before anything above goes.
  std::unique_ptr<class StoreRunner> runner_;
};

}  // namespace af
