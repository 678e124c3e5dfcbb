#include "executor/engine.h"

#include <unistd.h>

#include <algorithm>
#include <future>
#include <thread>
#include <random>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <spdlog/fmt/fmt.h>

#include "common/log.h"
#include "common/trace.h"
#include "executor/async_util.h"
#include "executor/store_runner.h"
#include "executor/write_grouper.h"
#include "model/dag.h"
#include "model/plan.h"

namespace af {

namespace {

// Internal outcome: the store failed; try the whole run again later.
constexpr int kRetryLater = 100;

std::string JoinProblems(const Status& s) {
  std::string out = s.message();
  const json& d = s.details();
  if (d.is_object() && d.contains("problems") && d["problems"].is_array()) {
    for (const auto& p : d["problems"]) {
      if (p.is_object() && p.contains("message") && p["message"].is_string()) {
        out += "; " + p["message"].get<std::string>();
      }
    }
  }
  return out;
}

}  // namespace

std::string DefaultLeaseOwner() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "localhost");
  std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}:{}:{:08x}", host, static_cast<long>(getpid()), static_cast<uint32_t>(rng()));
}

struct Engine::Active {
  std::string run_id;
  std::string trace_id;  // once the run's row was read (for log lines)
  CancelSignal cancel;  // fires on user cancel or shutdown
  bool user_cancelled = false;
  bool abandoned = false;
  std::string cancelled_by;
  std::string cancel_reason;
  Done done;
  int64_t lease_token = 0;  // the lease held on the run (0: none yet), released when abandoned
  // The next execution takes the general start (a new run's start in its
  // first batch failed once).
  bool general_start = false;
  // Cancellations asked for before this time belong to an earlier attempt of
  // the run (see Engine::Cancel); 0: not known yet.
  TimeMs cancel_floor = 0;
  // A request for this run that arrived while it executed here, started
  // when this execution ends (see Engine::Start).
  std::optional<std::pair<ExecutionRequest, Done>> followup;
};

// Drives one run. Lives on the engine's executor; not thread-safe.
class Engine::RunExecutor {
 public:
  // `request` outlives the executor (the run's coroutine holds it).
  RunExecutor(Engine* engine, Active* active, const ExecutionRequest& request)
      : engine_(engine),
        db_(engine->runner_.get()),
        active_(active),
        request_(request),
        user_cancel_(&active->cancel, [this] { cancel_.Cancel(active_->cancel.reason()); }) {}

  asio::awaitable<RunOutcome> Execute();

 private:
  struct ItemOutcome {
    enum class Kind { kOk, kFailed, kCancelled, kStoreError } kind = Kind::kOk;
    json output;
    std::string error;
  };

  RunOutcome Outcome(RunOutcome::Kind kind, std::optional<RunStatus> status = std::nullopt) {
    return RunOutcome{kind, run_.id.empty() ? request_.run_id : run_.id, status};
  }
  // The new run's start in its first batch failed (RunExecutor::
  // StageFreshStart): nothing of it was written; execute the run again at
  // once, the general way, which reads the run and says what it is.
  RunOutcome AgainNow() {
    active_->general_start = true;
    again_now_ = true;
    return Outcome(RunOutcome::Kind::kAbandoned);
  }
  RunOutcome RetryLater(const Status& s) {
    if (s.code() == Code::kAborted) return LeaseLost(s);
    log::Warn("store error, the run will be tried again: " + s.ToString(), {request_.run_id, {}, {}, trace_id_});
    RunOutcome o = Outcome(RunOutcome::Kind::kAbandoned);
    retry_later_ = true;
    return o;
  }
  // Another executor holds the run's lease: try again when it lapses (it
  // is renewed while that executor lives; when the run ends there, the next
  // try finds it finished).
  RunOutcome WaitForLease(const Status& s) {
    const int64_t ttl = engine_->options_.lease_ttl.count();
    int64_t after = s.details().is_object() ? s.details().value("retry_after_ms", ttl) : ttl;
    after = std::clamp<int64_t>(after, 50, ttl) + std::uniform_int_distribution<int64_t>(0, 250)(rng_);
    log::Info(fmt::format("{}; trying again in {} ms", s.message(), after), RunFields());
    retry_later_ = true;
    retry_delay_ = std::chrono::milliseconds(after);
    return Outcome(RunOutcome::Kind::kAbandoned);
  }
  // A fenced write was refused: another executor acquired the run's lease
  // (this one was paused or cut off longer than the lease). Stop without
  // writing anything more; the run is theirs.
  RunOutcome LeaseLost(const Status& s) {
    log::Warn("lease lost, another executor took the run over; stopping here: " + s.message(), RunFields());
    return Outcome(RunOutcome::Kind::kTakenOver);
  }

  Scope MakeScope(const json* item, std::optional<int> index) {
    Scope s;
    s.input = &run_.input;
    s.run_id = run_.id;
    s.step_output = [this](const std::string& id) -> const json* {
      auto it = plan_->index_of.find(id);
      if (it == plan_->index_of.end()) return nullptr;
      const auto& o = outputs_[it->second];
      return o ? &*o : nullptr;
    };
    s.item = item;
    s.index = index;
    return s;
  }

  int NextAttempt(const std::string& step_id, std::optional<int> item) {
    return ++last_attempt_[{step_id, item.value_or(-1)}];
  }

  // Every log line of the run carries its id and trace id (and the step's).
  log::Fields RunFields() const { return {run_.id, {}, {}, trace_id_}; }
  log::Fields StepFields(const StepSpec& spec) const { return {run_.id, spec.id, spec.agent, trace_id_}; }
  // The run's trace: its stored traceparent, else a trace id derived from
  // its id (runs stored without one), so every executor agrees on it.
  void SetTrace() {
    if (auto tp = trace::ParseTraceParent(run_.traceparent)) {
      trace_ = std::move(*tp);
    } else {
      trace_.trace_id = trace::TraceIdForRunId(run_.id);
      trace_.parent_id = trace::NewSpanId();
      trace_.flags = 0x01;
    }
    trace_id_ = trace_.trace_id;
    active_->trace_id = trace_id_;
  }

  // A new run's start committed (StageFreshStart): what the general start
  // learns from the acquire.
  void Started(const Run& stored) {
    run_.traceparent = stored.traceparent;
    run_.workflow_id = stored.workflow_id;
    run_.workflow_version = stored.workflow_version;
    run_.created_at = stored.created_at;
    SetTrace();
    active_->lease_token = lease_token_;
    active_->cancel_floor = stored.created_at;  // its first attempt began when it was created
    log::Info("run started", RunFields());
  }

  // ---- metrics (no-ops without EngineOptions::metrics) ----
  metrics::ExecutorMetrics* M() const { return engine_->options_.metrics; }
  // A step_executions row reached a terminal status.
  void CountStep(const std::string& agent, StepStatus status) {
    if (auto* m = M()) m->step_executions.Labels({agent, ToString(status)}).Inc();
  }
  void CountCall(const std::string& agent, StepStatus status, std::chrono::steady_clock::time_point start) {
    auto* m = M();
    if (m == nullptr) return;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    m->step_duration.Labels({agent, ToString(status)}).Observe(seconds);
  }
  void CountError(const std::string& agent, std::string_view kind) {
    if (auto* m = M()) m->agent_call_errors.Labels({agent, kind}).Inc();
  }
  void CountRetry(const std::string& agent) {
    if (auto* m = M()) m->step_retries.Labels({agent}).Inc();
  }
  // A store call on the engine's StoreRunner (no thread blocked for long).
  template <typename F>
  asio::awaitable<std::invoke_result_t<F&, Store&>> Db(F f) {
    return db_->Call(std::move(f), engine_->active_.size() <= 1);
  }

  // ---- step writes, committed in batches (Store::ApplyRunWrites)
  //
  // Writes are staged and committed together: a step's result with the RUNNING
  // row of the step it lets start, a fan-out's rows, the last result with the
  // run's end. A batch is committed when nothing of the run is on its way to
  // stage a write (starting_ == 0), one batch at a time, in order; every
  // agent call waits for its RUNNING row's batch, so a step's result is
  // committed before any step that depends on it calls its agent. A failed
  // batch fails the run's execution (StoreFailed), and so every batch after.
  struct Batch {
    explicit Batch(asio::any_io_executor ex) : done(ex) { done.expires_at(asio::steady_timer::time_point::max()); }
    std::vector<RunWrite> ops;
    std::vector<const std::string*> agents;  // per op, for metrics (null: none)
    asio::steady_timer done;                 // cancelled when settled: wakes every waiter
    bool settled = false;
    Status status;
    RunWritesResult result;
  };
  struct Ticket {
    std::shared_ptr<Batch> batch;
    size_t op = 0;
  };
  // Held by a spawned step (or item) until it stages its first write or
  // parks: while any is held, the staged batch waits for it.
  class StartHold {
   public:
    explicit StartHold(RunExecutor* x) : x_(x) {}  // adopts the count its spawner took
    ~StartHold() { Release(); }
    StartHold(StartHold&& o) noexcept : x_(std::exchange(o.x_, nullptr)) {}
    StartHold(const StartHold&) = delete;
    StartHold& operator=(const StartHold&) = delete;
    void Release() {
      if (x_ == nullptr) return;
      RunExecutor* x = x_;
      x_ = nullptr;
      if (--x->starting_ == 0) x->wake_->Notify();
    }

   private:
    RunExecutor* x_;
  };
  Ticket Stage(RunWrite op, const std::string* agent = nullptr);
  // Waits until t's batch is settled; its status.
  asio::awaitable<Status> Settled(const Ticket& t);
  // Starts committing the staged batch if it may go now.
  void MaybeFlush(bool force = false);
  asio::awaitable<void> Flush(std::shared_ptr<Batch> b);
  // Commits everything staged and waits (run coroutine only).
  asio::awaitable<void> Drain();
  void StageFinish(StepFinish f, const std::string& agent) {
    Stage(RunWrite::Finish(std::move(f)), &agent);
  }

  asio::awaitable<std::optional<RunOutcome>> Begin();
  bool StageFreshStart();
  asio::awaitable<Status> LoadHistory();
  void Spawn(int idx);
  asio::awaitable<void> RunStep(int idx);
  asio::awaitable<void> RunForEach(int idx, StartHold* hold);
  asio::awaitable<void> RunItemInto(int idx, int item, const json* value, CancelSignal* cancel, ItemOutcome* out);
  asio::awaitable<ItemOutcome> RunItem(int idx, std::optional<int> item, const json* value, CancelSignal* cancel,
                                       StartHold* hold);
  // A new step_executions row for this step (or item) with the next attempt number.
  StepExecution NewRow(int idx, std::optional<int> item, StepStatus status, const json& input);
  // Stages a terminal row (FAILED, SKIPPED): no call waits for it.
  void InsertTerminal(int idx, std::optional<int> item, StepStatus status, const json& input,
                      const std::string& error);
  void StepFailed(int idx, const std::string& message);
  void StoreFailed(const Status& s);
  asio::awaitable<RunOutcome> Finalize();
  asio::awaitable<RunOutcome> Transition(RunStatus from, RunStatus to, std::optional<json> output,
                                         std::optional<std::string> error);

  Engine* engine_;
  StoreRunner* db_;
  Active* active_;
  const ExecutionRequest& request_;
  std::mt19937_64& rng_ = engine_->rng_;  // one per engine: seeding one per run showed in the profile

  Run run_;
  std::shared_ptr<const Plan> plan_;  // shared with the engine's PlanCache
  std::unique_ptr<DagScheduler> sched_;
  std::vector<std::optional<json>> outputs_;           // by step index; set when done or skipped
  std::map<std::pair<int, int>, json> reused_items_;   // (step, item) → output of an earlier session
  std::map<std::pair<std::string, int>, int> last_attempt_;
  std::optional<std::string> failure_;                 // first step failure
  std::optional<Status> store_error_;
  trace::TraceParent trace_;  // the run's trace context
  std::string trace_id_;      // trace_.trace_id, once the run is read
  asio::any_io_executor ex_;
  std::unique_ptr<Notifier> wake_;
  int running_ = 0;
  int starting_ = 0;                 // spawned steps/items that have not staged or parked yet
  std::shared_ptr<Batch> staged_;    // writes waiting for the next commit
  bool flushing_ = false;            // a batch is being committed
  bool retry_later_ = false;
  bool again_now_ = false;           // AgainNow
  bool fresh_start_failed_ = false;  // the batch with the RunWrite::kStart failed
  std::chrono::milliseconds retry_delay_{0};  // for retry_later_; 0: the engine's store_retry_delay
  int64_t lease_token_ = 0;  // fencing token of the lease held; written with every store write
  bool lease_lost_ = false;  // a fenced write was refused
  // Stops this execution's steps: fired by the run's own signal (a user
  // cancel, shutdown, hand-over) and by this execution's failures (a step
  // failed, the store failed). Those failures must not fire the run's
  // signal: the run is executed again after a store failure, and that
  // execution has to start with nothing cancelled.
  CancelSignal cancel_;
  CancelRegistration user_cancel_;  // active_->cancel → cancel_

 public:
  bool retry_later() const { return retry_later_; }
  bool again_now() const { return again_now_; }
  std::chrono::milliseconds retry_delay() const { return retry_delay_; }
};

asio::awaitable<RunOutcome> Engine::RunExecutor::Execute() {
  ex_ = co_await asio::this_coro::executor;
  wake_ = std::make_unique<Notifier>(ex_);
  run_.id = request_.run_id;
  if (!StageFreshStart()) {
    std::optional<RunOutcome> ended = co_await Begin();
    if (ended) co_return std::move(*ended);
  }

  while (true) {
    if (cancel_.cancelled() || failure_ || store_error_) break;
    for (int idx : sched_->Ready()) {
      sched_->Set(idx, StepState::kRunning);
      Spawn(idx);
    }
    if (sched_->AllFinished()) break;
    if (running_ == 0) {
      failure_ = "internal error: no step can start (the plan's dependencies cannot be satisfied)";
      break;
    }
    MaybeFlush();
    co_await wake_->Wait();
  }
  // Stop whatever still runs (another step failed, or cancel) and wait for it.
  if (running_ > 0 && !cancel_.cancelled()) cancel_.Cancel("cancelled because another step of the run failed");
  while (running_ > 0) {
    MaybeFlush();
    co_await wake_->Wait();
  }
  co_return co_await Finalize();
}

// The general start: takes the run's lease (which reads the run), loads
// the plan and, for a run executed before, its history; stages PENDING →
// RUNNING. An outcome if the execution ends here.
asio::awaitable<std::optional<RunOutcome>> Engine::RunExecutor::Begin() {
  auto Ended = [](RunOutcome o) { return std::optional<RunOutcome>(std::move(o)); };
  const std::string& run_id = request_.run_id;
  // Exactly one executor drives a run: the one holding its lease. The
  // acquire also reads the run (one round trip for both).
  const std::string& owner = engine_->owner_;
  const int64_t ttl = engine_->options_.lease_ttl.count();
  auto lease = co_await Db([&run_id, &owner, ttl](Store& s) { return s.AcquireRunLease(run_id, owner, ttl); });
  if (!lease.ok()) {
    switch (lease.status().code()) {
      case Code::kNotFound:
        log::Warn("execution request for an unknown run; dropped", {request_.run_id});
        co_return Ended(Outcome(RunOutcome::Kind::kDropped));
      case Code::kFailedPrecondition: {  // already finished (a redelivery, or a retry that came late)
        const json& d = lease.status().details();
        auto st = ParseRunStatus(d.is_object() ? d.value("current", std::string()) : std::string());
        if (!st) co_return Ended(RetryLater(lease.status()));  // the store names the status (Store::AcquireRunLease)
        co_return Ended(Outcome(RunOutcome::Kind::kFinished, *st));
      }
      case Code::kAborted: {  // another executor holds it: logged with the run's trace
        auto got = co_await Db([&run_id](Store& s) { return s.GetRun(run_id); });
        if (got.ok()) run_ = std::move(got).value();
        SetTrace();
        co_return Ended(WaitForLease(lease.status()));
      }
      default:
        co_return Ended(RetryLater(lease.status()));
    }
  }
  run_ = std::move(lease->run);
  SetTrace();
  lease_token_ = lease->token;
  active_->lease_token = lease->token;
  // A cancellation message older than this attempt of the run is a replay
  // (Engine::Cancel). The attempt began when the run became PENDING; a
  // resumed first attempt when it started.
  if (run_.status == RunStatus::kPending) {
    active_->cancel_floor = run_.updated_at;
  } else if (run_.attempt <= 1 && run_.started_at) {
    active_->cancel_floor = *run_.started_at;
  }

  // The plan: the one in the request, else the run's workflow version.
  const json* doc = &request_.workflow_plan;
  std::optional<Workflow> stored;
  if (!doc->is_object() || doc->empty()) {
    const std::string& wf_id = run_.workflow_id;
    const int wf_version = run_.workflow_version;
    auto wf = co_await Db([&wf_id, wf_version](Store& s) { return s.GetWorkflow(wf_id, wf_version); });
    if (!wf.ok()) {
      if (wf.status().code() != Code::kNotFound) co_return Ended(RetryLater(wf.status()));
      std::optional<std::string> why = "workflow " + run_.workflow_id + " version " +
                                       std::to_string(run_.workflow_version) + " not found";
      co_return Ended(co_await Transition(run_.status, RunStatus::kFailed, std::nullopt, std::move(why)));
    }
    stored = std::move(wf).value();
    doc = &stored->plan;
  }
  // Admitted by the API under its own limits: only the hard cap applies here.
  auto plan = engine_->plans_.Get(run_.workflow_id, run_.workflow_version, *doc, PlanLimits::ForExecution());
  if (!plan.ok()) {
    std::optional<std::string> why = JoinProblems(plan.status());
    co_return Ended(co_await Transition(run_.status, RunStatus::kFailed, std::nullopt, std::move(why)));
  }
  plan_ = std::move(plan).value();
  sched_ = std::make_unique<DagScheduler>(*plan_);
  outputs_.assign(plan_->steps.size(), std::nullopt);

  if (run_.cancel_requested && !active_->user_cancelled) {
    active_->user_cancelled = true;
    active_->cancelled_by = run_.cancelled_by;
    active_->cancel_reason = run_.cancel_reason;
  }
  if (active_->user_cancelled && run_.status == RunStatus::kPending) {
    co_return Ended(co_await Finalize());
  }

  // A run never started has no history of this attempt to resume; one
  // retried (attempt > 1) keeps the results of its earlier attempts.
  const bool fresh = run_.status == RunStatus::kPending && run_.attempt <= 1;
  if (run_.status == RunStatus::kPending) {
    // Committed with the first steps' RUNNING rows (Flush takes the run as
    // stored then); until then the run is RUNNING as far as this executor
    // is concerned.
    RunTransition t;
    t.run_id = run_.id;
    t.from = RunStatus::kPending;
    t.to = RunStatus::kRunning;
    Stage(RunWrite::Transition(std::move(t)));
    run_.status = RunStatus::kRunning;
    log::Info("run started", RunFields());
  } else {
    if (auto* m = M()) m->runs_resumed.Inc();
    log::Info("run resumed from its recorded state", RunFields());
  }

  if (!fresh) {
    Status loaded = co_await LoadHistory();
    if (!loaded.ok()) co_return Ended(RetryLater(loaded));
  }

  co_return std::nullopt;
}

// A new run's start, in its first write batch: if the request carries the
// plan, stages RunWrite::kStart (the lease, and PENDING → RUNNING) ahead of
// the first steps' rows, so the run's first commit also takes its lease.
// The store refuses it for a run that is not new (a redelivered request, a
// retried or cancelled run): then nothing of the batch is written and the
// execution starts again the general way (AgainNow).
bool Engine::RunExecutor::StageFreshStart() {
  if (!engine_->options_.fresh_start || active_->general_start || active_->user_cancelled) return false;
  const json& doc = request_.workflow_plan;
  if (!doc.is_object() || doc.empty()) return false;
  auto plan = engine_->plans_.Get(request_.workflow_id, request_.workflow_version, doc, PlanLimits::ForExecution());
  if (!plan.ok()) return false;  // the general path fails the run, saying why
  plan_ = std::move(plan).value();
  sched_ = std::make_unique<DagScheduler>(*plan_);
  outputs_.assign(plan_->steps.size(), std::nullopt);
  RunStart start;
  start.run_id = run_.id;
  start.owner = engine_->owner_;
  start.ttl_ms = engine_->options_.lease_ttl.count();
  start.input = request_.input_data;
  run_.input = request_.input_data;
  run_.workflow_id = request_.workflow_id;
  run_.workflow_version = request_.workflow_version;
  run_.attempt = 1;
  run_.status = RunStatus::kRunning;  // as far as this executor is concerned: Flush takes the run as committed
  lease_token_ = kFirstLeaseToken;
  // Until the run is read (Started): no cancellation from before its
  // request was published is for this attempt (Engine::CancelLocal).
  active_->cancel_floor = request_.timestamp;
  Stage(RunWrite::Start(std::move(start)));
  return true;
}

asio::awaitable<Status> Engine::RunExecutor::LoadHistory() {
  const std::string& run_id = run_.id;
  auto steps = co_await Db([&run_id](Store& s) { return s.ListSteps(run_id); });
  if (!steps.ok()) co_return steps.status();
  for (const StepExecution& s : *steps) {
    int& last = last_attempt_[{s.step_id, s.item_index.value_or(-1)}];
    if (s.attempt > last) last = s.attempt;
    if (s.status == StepStatus::kRunning) {
      StepFinish f;
      f.run_id = run_.id;
      f.id = s.id;
      f.to = StepStatus::kFailed;
      f.error_message = "interrupted: the executor stopped during this attempt; it is tried again";
      f.lease_token = lease_token_;
      Status st = co_await Db([&f](Store& store) { return store.FinishStep(f); });
      if (!st.ok() && st.code() != Code::kFailedPrecondition) co_return st;
      if (st.ok()) CountStep(s.agent_name, f.to);
      continue;
    }
    auto it = plan_->index_of.find(s.step_id);
    if (it == plan_->index_of.end()) continue;
    int idx = it->second;
    if (s.status == StepStatus::kCompleted) {
      if (s.item_index) {
        reused_items_[{idx, *s.item_index}] = s.output;
      } else {
        outputs_[idx] = s.output;
        sched_->Set(idx, StepState::kDone);
      }
    } else if (s.status == StepStatus::kSkipped && !s.item_index) {
      outputs_[idx] = json(nullptr);
      sched_->Set(idx, StepState::kSkipped);
    }
  }
  co_return Status::Ok();
}

void Engine::RunExecutor::Spawn(int idx) {
  ++running_;
  ++starting_;  // released by RunStep's StartHold
  asio::co_spawn(ex_, RunStep(idx), [this, idx](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        StepFailed(idx, std::string("internal error: ") + ex.what());
      } catch (...) {
        StepFailed(idx, "internal error");
      }
    }
    --running_;
    wake_->Notify();
  });
}

Engine::RunExecutor::Ticket Engine::RunExecutor::Stage(RunWrite op, const std::string* agent) {
  if (!staged_) staged_ = std::make_shared<Batch>(ex_);
  staged_->ops.push_back(std::move(op));
  staged_->agents.push_back(agent);
  Ticket t{staged_, staged_->ops.size() - 1};
  wake_->Notify();
  return t;
}

asio::awaitable<Status> Engine::RunExecutor::Settled(const Ticket& t) {
  while (!t.batch->settled) {
    boost::system::error_code ec;
    co_await t.batch->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return t.batch->status;
}

void Engine::RunExecutor::MaybeFlush(bool force) {
  if (flushing_ || !staged_ || (starting_ > 0 && !force)) return;
  flushing_ = true;
  std::shared_ptr<Batch> b = std::move(staged_);
  asio::co_spawn(ex_, Flush(std::move(b)), [](std::exception_ptr) {});
}

asio::awaitable<void> Engine::RunExecutor::Flush(std::shared_ptr<Batch> b) {
  if (store_error_) {
    b->status = *store_error_;  // a batch before this one failed: so does this one
  } else {
    RunWrites w;
    w.run_id = run_.id;
    w.lease_token = lease_token_;
    w.ops = std::move(b->ops);
    auto res = co_await engine_->writes_->Apply(w);
    const bool starts = !w.ops.empty() && w.ops.front().kind == RunWrite::Kind::kStart;
    if (res.ok()) {
      b->result = std::move(res).value();
      if (starts && b->result.run) Started(*b->result.run);
      if (b->result.run) {
        // Not the whole row: steps hold pointers into run_.input.
        run_.status = b->result.run->status;
        run_.started_at = b->result.run->started_at;
        run_.updated_at = b->result.run->updated_at;
      }
      for (size_t i = 0; i < w.ops.size(); ++i) {
        const RunWrite& op = w.ops[i];
        if ((op.kind == RunWrite::Kind::kTransition && op.transition.to == RunStatus::kRunning) ||
            op.kind == RunWrite::Kind::kStart) {
          if (auto* m = M()) m->runs_started.Inc();
        }
        if (b->agents[i] == nullptr) continue;
        if (op.kind == RunWrite::Kind::kFinishStep) CountStep(*b->agents[i], op.finish.to);
        if (op.kind == RunWrite::Kind::kInsertStep && IsTerminal(op.insert.status)) {
          CountStep(*b->agents[i], op.insert.status);
        }
      }
    } else {
      b->status = res.status();
      if (starts) fresh_start_failed_ = true;
      // The run's final transition (Transition) reads why itself; any
      // other failure stops the run's execution here.
      bool last_is_transition = !w.ops.empty() && w.ops.back().kind == RunWrite::Kind::kTransition &&
                                IsTerminal(w.ops.back().transition.to);
      if (!last_is_transition) StoreFailed(b->status);
    }
  }
  b->settled = true;
  b->done.cancel();
  flushing_ = false;
  wake_->Notify();
}

asio::awaitable<void> Engine::RunExecutor::Drain() {
  while (staged_ || flushing_) {
    MaybeFlush(/*force=*/true);
    co_await wake_->Wait();
  }
}

void Engine::RunExecutor::StepFailed(int idx, const std::string& message) {
  sched_->Set(idx, StepState::kFailed);
  if (!failure_) failure_ = message;
  log::Warn("step failed: " + message, StepFields(plan_->steps[idx]));
  wake_->Notify();
}

void Engine::RunExecutor::StoreFailed(const Status& s) {
  if (s.code() == Code::kAborted) lease_lost_ = true;
  if (!store_error_) store_error_ = s;
  if (!cancel_.cancelled()) cancel_.Cancel("cancelled because the store is unavailable");
  wake_->Notify();
}

StepExecution Engine::RunExecutor::NewRow(int idx, std::optional<int> item, StepStatus status,
                                          const json& input) {
  const StepSpec& spec = plan_->steps[idx];
  StepExecution row;
  row.run_id = run_.id;
  row.step_id = spec.id;
  row.item_index = item;
  row.agent_name = spec.agent;
  row.attempt = NextAttempt(spec.id, item);
  row.status = status;
  row.input = input;
  row.started_at = 0;  // stamped by the store when the row is committed: after the results it depends on
  return row;
}

void Engine::RunExecutor::InsertTerminal(int idx, std::optional<int> item, StepStatus status, const json& input,
                                         const std::string& error) {
  StepExecution row = NewRow(idx, item, status, input);
  row.error_message = error;
  Stage(RunWrite::Insert(std::move(row)), &plan_->steps[idx].agent);
}

asio::awaitable<void> Engine::RunExecutor::RunStep(int idx) {
  StartHold hold(this);  // the count Spawn took
  const StepSpec& spec = plan_->steps[idx];
  if (spec.when_cond) {
    Scope scope = MakeScope(nullptr, std::nullopt);
    auto cond = EvaluateCondition(*spec.when_cond, scope);
    if (!cond.ok()) {
      std::string msg = fmt::format("step '{}': when: {}", spec.id, cond.status().message());
      InsertTerminal(idx, std::nullopt, StepStatus::kFailed, nullptr, msg);
      co_return StepFailed(idx, msg);
    }
    if (!*cond) {
      InsertTerminal(idx, std::nullopt, StepStatus::kSkipped, nullptr, "");
      outputs_[idx] = json(nullptr);
      sched_->Set(idx, StepState::kSkipped);
      log::Debug("step skipped: condition is false", StepFields(spec));
      co_return;
    }
  }
  if (spec.for_each) {
    co_await RunForEach(idx, &hold);
    co_return;
  }
  ItemOutcome out = co_await RunItem(idx, std::nullopt, nullptr, &cancel_, &hold);
  switch (out.kind) {
    case ItemOutcome::Kind::kOk:
      outputs_[idx] = std::move(out.output);
      sched_->Set(idx, StepState::kDone);
      break;
    case ItemOutcome::Kind::kFailed:
      StepFailed(idx, out.error);
      break;
    case ItemOutcome::Kind::kCancelled:
      sched_->Set(idx, StepState::kCancelled);
      break;
    case ItemOutcome::Kind::kStoreError:
      break;  // StoreFailed already called
  }
}

asio::awaitable<void> Engine::RunExecutor::RunItemInto(int idx, int item, const json* value, CancelSignal* cancel,
                                                       ItemOutcome* out) {
  StartHold hold(this);  // the count RunForEach took
  *out = co_await RunItem(idx, item, value, cancel, &hold);
}

asio::awaitable<void> Engine::RunExecutor::RunForEach(int idx, StartHold* hold) {
  const StepSpec& spec = plan_->steps[idx];
  Scope scope = MakeScope(nullptr, std::nullopt);
  auto items = Resolve(*spec.for_each_ref, scope);
  std::string bad;
  if (!items.ok()) {
    bad = fmt::format("step '{}': for_each: {}", spec.id, items.status().message());
  } else if (!items->is_array()) {
    bad = fmt::format("step '{}': for_each: ${{{}}} is {}, not an array", spec.id, spec.for_each_ref->text,
                      items->type_name());
  }
  if (!bad.empty()) {
    InsertTerminal(idx, std::nullopt, StepStatus::kFailed, nullptr, bad);
    co_return StepFailed(idx, bad);
  }
  // ---- limits (model/limits.h): too many elements fail the step before any starts.
  if (Status many = CheckForEachItems(items->size(), engine_->options_.limits.max_for_each_items); !many.ok()) {
    std::string msg = fmt::format("step '{}': {}", spec.id, many.message());
    InsertTerminal(idx, std::nullopt, StepStatus::kFailed, nullptr, msg);
    co_return StepFailed(idx, msg);
  }
  // ---- end of limits
  const json& arr = *items;
  const int n = static_cast<int>(arr.size());

  // The fan-in row: RUNNING while items run, then the array of outputs. It
  // is committed with the first items' rows.
  StepExecution agg = NewRow(idx, std::nullopt, StepStatus::kRunning, json{{"items", arr}});
  Ticket agg_ticket = Stage(RunWrite::Insert(std::move(agg)));

  std::vector<json> outputs(n);
  std::vector<ItemOutcome> results(n);
  std::vector<bool> done(n, false);
  for (int i = 0; i < n; ++i) {
    auto it = reused_items_.find({idx, i});
    if (it != reused_items_.end()) {
      outputs[i] = it->second;
      done[i] = true;
    }
  }

  CancelSignal step_cancel;
  CancelRegistration link(&cancel_, [&step_cancel, this] { step_cancel.Cancel(cancel_.reason()); });
  Notifier local(ex_);
  int next = 0, in_flight = 0;
  // The last element result's hold on the next commit (RunItem), released
  // when this step has staged its end and returned: one commit for the last
  // result, the fan-in row's end and the RUNNING rows of the steps that
  // start on it, instead of two before the next step's call.
  std::optional<StartHold> last_result;
  std::optional<std::string> item_failure;
  bool store_failed = false;
  while (true) {
    while (!item_failure && !store_failed && !step_cancel.cancelled() && next < n &&
           (spec.max_parallel <= 0 || in_flight < spec.max_parallel)) {
      int i = next++;
      if (done[i]) continue;
      ++in_flight;
      ++starting_;  // released by RunItemInto's StartHold
      asio::co_spawn(ex_, RunItemInto(idx, i, &arr[i], &step_cancel, &results[i]),
                     [&, i](std::exception_ptr e) {
                       --in_flight;
                       if (e) {
                         results[i].kind = ItemOutcome::Kind::kFailed;
                         results[i].error = fmt::format("step '{}' item {}: internal error", spec.id, i);
                       }
                       ItemOutcome& r = results[i];
                       if (r.kind == ItemOutcome::Kind::kOk) {
                         outputs[i] = std::move(r.output);
                         done[i] = true;
                         StartHold held(this);  // RunItem's hold on the commit of this result
                         const bool last = in_flight == 0 && next >= n;
                         if (last && !last_result) last_result.emplace(std::move(held));
                       } else if (r.kind == ItemOutcome::Kind::kFailed && !item_failure) {
                         item_failure = r.error;
                         step_cancel.Cancel("cancelled because another item of the step failed");
                       } else if (r.kind == ItemOutcome::Kind::kStoreError) {
                         store_failed = true;
                         step_cancel.Cancel("cancelled because the store is unavailable");
                       }
                       local.Notify();
                     });
    }
    hold->Release();  // the items hold the batch now
    bool more = next < n && !item_failure && !store_failed && !step_cancel.cancelled();
    if (in_flight == 0 && !more) break;
    co_await local.Wait();
  }

  Status agg_status = co_await Settled(agg_ticket);
  if (!agg_status.ok() || store_failed) co_return;  // StoreFailed already called (by Flush or an item)
  StepFinish fin;
  fin.run_id = run_.id;
  fin.id = agg_ticket.batch->result.step_ids[agg_ticket.op];
  if (item_failure) {
    fin.to = StepStatus::kFailed;
    fin.error_message = *item_failure;
    StageFinish(std::move(fin), spec.agent);
    co_return StepFailed(idx, *item_failure);
  }
  if (step_cancel.cancelled()) {
    if (!active_->abandoned) {
      fin.to = StepStatus::kCancelled;
      fin.error_message = step_cancel.reason();
      StageFinish(std::move(fin), spec.agent);
    }
    sched_->Set(idx, StepState::kCancelled);
    co_return;
  }
  fin.to = StepStatus::kCompleted;
  fin.output = json(std::move(outputs));
  outputs_[idx] = fin.output;
  StageFinish(std::move(fin), spec.agent);
  sched_->Set(idx, StepState::kDone);
}

asio::awaitable<Engine::RunExecutor::ItemOutcome> Engine::RunExecutor::RunItem(int idx, std::optional<int> item,
                                                                               const json* value,
                                                                               CancelSignal* cancel,
                                                                               StartHold* hold) {
  const StepSpec& spec = plan_->steps[idx];
  const std::string label = item ? fmt::format("step '{}' item {}", spec.id, *item) : fmt::format("step '{}'", spec.id);
  ItemOutcome out;
  auto fail = [&](std::string msg) {
    ItemOutcome o;
    o.kind = ItemOutcome::Kind::kFailed;
    o.error = std::move(msg);
    return o;
  };
  auto store_fail = [&](const Status& s) {
    StoreFailed(s);
    ItemOutcome o;
    o.kind = ItemOutcome::Kind::kStoreError;
    return o;
  };
  auto cancelled = [] {
    ItemOutcome o;
    o.kind = ItemOutcome::Kind::kCancelled;
    return o;
  };

  Scope scope = MakeScope(value, item);
  auto input = ResolveTemplate(spec.input, scope);
  if (!input.ok()) {
    std::string msg = fmt::format("{}: input: {}", label, input.status().message());
    InsertTerminal(idx, item, StepStatus::kFailed, nullptr, msg);
    co_return fail(msg);
  }
  // ---- limits (model/limits.h): an input over the limit fails the step, the
  // agent is not called and the input is not stored.
  if (Status big = CheckStepInput(*input, engine_->options_.limits.max_input_bytes); !big.ok()) {
    std::string msg = fmt::format("{}: {}", label, big.message());
    InsertTerminal(idx, item, StepStatus::kFailed, nullptr, msg);
    co_return fail(msg);
  }
  // ---- end of limits
  int tries = 0;
  while (true) {
    if (cancel->cancelled()) co_return cancelled();
    // Resolved on every attempt: an agent may be re-registered or turn
    // healthy between attempts.
    Result<AgentEndpoint> endpoint = co_await engine_->agents_->Resolve(spec.agent);
    if (cancel->cancelled()) co_return cancelled();
    if (!endpoint.ok()) {
      if (endpoint.status().code() != Code::kNotFound) co_return store_fail(endpoint.status());
      std::string msg = fmt::format("{} (agent '{}'): {}", label, spec.agent, endpoint.status().message());
      InsertTerminal(idx, item, StepStatus::kFailed, *input, msg);
      co_return fail(msg);
    }
    const AgentEndpoint& ep = *endpoint;
    int64_t timeout =
        spec.timeout_ms.value_or(ep.timeout_ms > 0 ? ep.timeout_ms : engine_->options_.default_timeout_ms);
    if (ep.health == AgentHealth::kUnhealthy) {
      // Not called: the attempt fails retryably, within the step's retry policy.
      std::string why = "agent '" + spec.agent + "' is unhealthy" +
                        (ep.health_error.empty() ? std::string() : ": " + ep.health_error);
      InsertTerminal(idx, item, StepStatus::kFailed, *input, why);
      hold->Release();
      CountError(spec.agent, "unhealthy");
      ++tries;
      if (!ShouldRetry(spec.retry, tries)) {
        co_return fail(fmt::format("{} failed after {} attempt{}: {}", label, tries, tries == 1 ? "" : "s", why));
      }
      CountRetry(spec.agent);
      std::uniform_real_distribution<double> jitter(0.0, 1.0);
      int64_t delay = BackoffMs(spec.retry, tries + 1, jitter(rng_), std::nullopt);
      log::Info(fmt::format("{}; retrying in {} ms", why, delay), StepFields(spec));
      bool slept = co_await SleepFor(std::chrono::milliseconds(delay), cancel);
      if (!slept) co_return cancelled();
      continue;
    }
    hold->Release();  // a wait for a slot must not hold the run's next commit
    bool slot = co_await engine_->limiter_->Acquire(spec.agent, ep.max_concurrency, cancel);
    if (!slot) co_return cancelled();
    if (cancel->cancelled()) {
      engine_->limiter_->Release(spec.agent);
      co_return cancelled();
    }
    StepExecution row = NewRow(idx, item, StepStatus::kRunning, *input);
    const int attempt = row.attempt;
    Ticket row_ticket = Stage(RunWrite::Insert(std::move(row)));
    Status committed = co_await Settled(row_ticket);
    if (!committed.ok()) {
      engine_->limiter_->Release(spec.agent);
      co_return store_fail(committed);
    }
    const int64_t row_id = row_ticket.batch->result.step_ids[row_ticket.op];
    AgentCall call;
    call.run_id = run_.id;
    call.step_id = spec.id;
    call.item_index = item;
    call.attempt = attempt;
    call.input = *input;
    call.timeout_ms = timeout;
    call.traceparent = trace::ChildTraceParent(trace_);  // the run's trace, a new span per call
    log::Debug(fmt::format("calling agent (attempt {})", attempt), StepFields(spec));
    const auto call_start = std::chrono::steady_clock::now();
    struct InFlight {
      explicit InFlight(int* n) : n(n) { ++*n; }
      ~InFlight() { --*n; }
      InFlight(const InFlight&) = delete;
      InFlight& operator=(const InFlight&) = delete;
      int* n;
    };
    AgentReply reply;
    {
      InFlight in_flight(&engine_->calls_in_flight_);
      reply = co_await engine_->caller_->Call(ep, call, cancel);
    }
    engine_->limiter_->Release(spec.agent);
    ++tries;

    StepFinish fin;
    fin.run_id = run_.id;
    fin.id = row_id;
    if (reply.outcome == AgentReply::Outcome::kOk && !cancel->cancelled()) {
      fin.to = StepStatus::kCompleted;
      fin.output = std::move(reply.output);
      CountCall(spec.agent, fin.to, call_start);
      ItemOutcome ok;
      ok.output = fin.output;
      // A for_each element's result holds the run's next commit until
      // RunForEach has seen it (its completion handler): the last one's goes
      // with the fan-in row's end and the next steps' RUNNING rows.
      if (item) ++starting_;
      StageFinish(std::move(fin), spec.agent);
      co_return ok;
    }
    if (reply.outcome == AgentReply::Outcome::kCancelled || cancel->cancelled()) {
      if (active_->abandoned) co_return cancelled();  // leave RUNNING: resumed later
      fin.to = StepStatus::kCancelled;
      fin.error_message = cancel->reason();
      CountCall(spec.agent, fin.to, call_start);
      StageFinish(std::move(fin), spec.agent);
      co_return cancelled();
    }
    fin.to = StepStatus::kFailed;
    fin.error_message = reply.error;
    CountCall(spec.agent, fin.to, call_start);
    CountError(spec.agent, reply.outcome == AgentReply::Outcome::kPermanent ? "permanent" : "retryable");
    StageFinish(std::move(fin), spec.agent);
    if (reply.outcome == AgentReply::Outcome::kPermanent) {
      co_return fail(fmt::format("{} (agent '{}') failed: {}", label, spec.agent, reply.error));
    }
    if (!ShouldRetry(spec.retry, tries)) {
      co_return fail(fmt::format("{} (agent '{}') failed after {} attempt{}: {}", label, spec.agent, tries,
                                 tries == 1 ? "" : "s", reply.error));
    }
    CountRetry(spec.agent);
    std::uniform_real_distribution<double> jitter(0.0, 1.0);
    int64_t delay = BackoffMs(spec.retry, tries + 1, jitter(rng_), reply.retry_after_ms);
    log::Info(fmt::format("attempt {} failed ({}); retrying in {} ms", attempt, reply.error, delay), StepFields(spec));
    bool slept = co_await SleepFor(std::chrono::milliseconds(delay), cancel);
    if (!slept) co_return cancelled();
  }
}

asio::awaitable<RunOutcome> Engine::RunExecutor::Transition(RunStatus from, RunStatus to, std::optional<json> output,
                                                            std::optional<std::string> error) {
  RunTransition t;
  t.run_id = run_.id;
  t.from = from;
  t.to = to;
  t.output = std::move(output);
  t.error_message = std::move(error);
  // Committed together with whatever results are still staged.
  Ticket ticket = Stage(RunWrite::Transition(std::move(t)));
  co_await Drain();
  Status st = ticket.batch->status;
  if (st.ok() && ticket.batch->result.run) {
    const Run& stored = *ticket.batch->result.run;
    run_.status = stored.status;
    run_.started_at = stored.started_at;
    run_.completed_at = stored.completed_at;
    run_.error_message = stored.error_message;
    if (run_.status == RunStatus::kCompleted) {
      log::Info("run completed", RunFields());
    } else {
      log::Info(std::string("run ") + ToString(run_.status) + ": " + run_.error_message, RunFields());
    }
    if (auto* m = M()) {
      // The duration first: a scrape that sees the run counted sees its duration too.
      if (run_.started_at) {
        TimeMs end = run_.completed_at.value_or(NowMs());
        m->run_duration.Labels({ToString(run_.status)}).Observe(static_cast<double>(end - *run_.started_at) / 1000.0);
      }
      m->runs_finished.Labels({ToString(run_.status)}).Inc();
    }
    co_return Outcome(RunOutcome::Kind::kFinished, run_.status);
  }
  if (st.ok()) st = Status::Internal("the run's transition returned no run");
  if (fresh_start_failed_ && !active_->abandoned) co_return AgainNow();
  if (st.code() != Code::kFailedPrecondition) co_return RetryLater(st);  // incl. lease lost
  // Someone else moved the run (e.g. the API cancelled a PENDING run).
  const std::string& run_id = run_.id;
  auto now = co_await Db([&run_id](Store& s) { return s.GetRun(run_id); });
  if (!now.ok()) co_return RetryLater(now.status());
  if (IsTerminal(now->status)) co_return Outcome(RunOutcome::Kind::kFinished, now->status);
  co_return RetryLater(st);
}

asio::awaitable<RunOutcome> Engine::RunExecutor::Finalize() {
  // A batch being committed refers to this executor: let it settle first.
  while (flushing_) co_await wake_->Wait();
  if (fresh_start_failed_ && !active_->abandoned) co_return AgainNow();
  if (active_->abandoned) {
    // Results already in hand are kept: the next executor need not call those agents again.
    if (!store_error_) co_await Drain();
    co_return Outcome(RunOutcome::Kind::kAbandoned);
  }
  if (lease_lost_) co_return LeaseLost(*store_error_);
  if (store_error_) co_return RetryLater(*store_error_);
  if (active_->user_cancelled) {
    if (!run_.cancel_requested) {
      CancelRequest c{run_.id, active_->cancelled_by, active_->cancel_reason};
      // Records who and why; fails harmlessly if terminal.
      auto r = co_await Db([&c](Store& s) { return s.RequestCancel(c); });
      (void)r;
    }
    std::string who = active_->cancelled_by.empty() ? "unknown" : active_->cancelled_by;
    std::optional<std::string> msg =
        "cancelled by " + who + (active_->cancel_reason.empty() ? "" : ": " + active_->cancel_reason);
    co_return co_await Transition(run_.status, RunStatus::kCancelled, std::nullopt, std::move(msg));
  }
  if (failure_) {
    std::optional<std::string> why = *failure_;
    co_return co_await Transition(RunStatus::kRunning, RunStatus::kFailed, std::nullopt, std::move(why));
  }

  json output;
  if (plan_->output.is_null()) {
    output = json::object();
    for (size_t i = 0; i < plan_->steps.size(); ++i) output[plan_->steps[i].id] = outputs_[i].value_or(json(nullptr));
  } else {
    Scope scope = MakeScope(nullptr, std::nullopt);
    auto resolved = ResolveTemplate(plan_->output, scope);
    if (!resolved.ok()) {
      std::optional<std::string> why = "output: " + resolved.status().message();
      co_return co_await Transition(RunStatus::kRunning, RunStatus::kFailed, std::nullopt, std::move(why));
    }
    output = std::move(resolved).value();
  }
  std::optional<json> out = std::move(output);
  co_return co_await Transition(RunStatus::kRunning, RunStatus::kCompleted, std::move(out), std::nullopt);
}

// ---------------------------------------------------------------- Engine

Engine::Engine(boost::asio::any_io_executor executor, Store* store, AgentDirectory* agents, AgentCaller* caller,
               EngineOptions options)
    : executor_(std::move(executor)),
      store_(store),
      agents_(agents),
      caller_(caller),
      options_(options),
      owner_(options_.owner.empty() ? DefaultLeaseOwner() : options_.owner),
      cancel_poll_timer_(executor_),
      lease_timer_(executor_),
      limiter_(std::make_unique<AgentLimiter>()) {
  if (options_.lease_ttl.count() < 30) options_.lease_ttl = std::chrono::milliseconds(30);
  int threads = options_.store_threads;
  if (threads < 0) threads = store_->MaxConcurrentCalls() > 1 ? store_->MaxConcurrentCalls() : 0;
  runner_ = std::make_unique<StoreRunner>(store_, threads, options_.store_inline_when_idle);
  writes_ = std::make_unique<WriteGrouper>(
      executor_,
      [this](std::vector<const RunWrites*> group) -> asio::awaitable<WriteGrouper::Results> {
        const bool lone = group.size() == 1 && active_.size() <= 1 && calls_in_flight_ == 0;
        co_return co_await runner_->Call([&group](Store& s) { return s.ApplyRunWritesGroup(group); }, lone);
      },
      options_.write_groups_in_flight, options_.max_write_group, /*gather_a_turn=*/threads == 0);
}

Engine::~Engine() = default;

void Engine::Submit(ExecutionRequest request, Done done) {
  asio::post(executor_, [this, request = std::move(request), done = std::move(done)]() mutable {
    Start(std::move(request), std::move(done));
  });
}

void Engine::Cancel(const std::string& run_id, const std::string& cancelled_by, const std::string& reason,
                    TimeMs requested_at) {
  asio::post(executor_, [this, run_id, cancelled_by, reason, requested_at] {
    CancelLocal(run_id, cancelled_by, reason, requested_at);
  });
}

void Engine::CancelLocal(const std::string& run_id, const std::string& cancelled_by, const std::string& reason,
                         TimeMs requested_at) {
  auto it = active_.find(run_id);
  if (it == active_.end()) return;
  Active& a = *it->second;
  if (a.user_cancelled || a.abandoned) return;
  // A second of leeway for clocks of different machines.
  if (requested_at > 0 && a.cancel_floor > 0 && requested_at + 1000 < a.cancel_floor) {
    log::Info("ignored a cancellation from before the run's current attempt (a replayed message)",
              {run_id, {}, {}, a.trace_id});
    return;
  }
  a.user_cancelled = true;
  a.cancelled_by = cancelled_by;
  a.cancel_reason = reason;
  log::Info("cancelling run: " + reason, {run_id, {}, {}, a.trace_id});
  a.cancel.Cancel("cancelled by " + (cancelled_by.empty() ? std::string("unknown") : cancelled_by) +
                  (reason.empty() ? "" : ": " + reason));
}

asio::awaitable<void> Engine::PollCancelRequests() {
  asio::steady_timer& timer = cancel_poll_timer_;
  while (!shut_down_ && !active_.empty()) {
    timer.expires_after(options_.cancel_poll_interval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (shut_down_ || active_.empty()) break;
    std::vector<std::string> ids;
    ids.reserve(active_.size());
    for (const auto& [id, a] : active_) {
      if (!a->user_cancelled && !a->abandoned) ids.push_back(id);
    }
    if (ids.empty()) continue;
    // On the runner: with thousands of runs here the query takes a while.
    auto requests = co_await runner_->Call([&ids](Store& s) { return s.ListCancelRequests(ids); });
    if (!requests.ok()) continue;  // the next round tries again
    for (const CancelRequest& c : *requests) CancelLocal(c.run_id, c.cancelled_by, c.reason, 0);
  }
  cancel_poller_running_ = false;
  MaybeEndShutdown();
}

asio::awaitable<void> Engine::RenewLeases() {
  asio::steady_timer& timer = lease_timer_;
  bool failing = false;
  while (!shut_down_ && !active_.empty()) {
    timer.expires_after(options_.lease_ttl / 3);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (shut_down_ || active_.empty()) break;
    const int64_t ttl = options_.lease_ttl.count();
    auto renewed = co_await runner_->Call([this, ttl](Store& s) { return s.RenewRunLeases(owner_, ttl); });
    if (!renewed.ok() && !failing) {
      log::Warn("could not renew run leases (tried again in " + std::to_string((options_.lease_ttl / 3).count()) +
                " ms): " + renewed.status().ToString());
    } else if (renewed.ok() && failing) {
      log::Info("run leases renewed again");
    }
    failing = !renewed.ok();
  }
  lease_renewer_running_ = false;
  MaybeEndShutdown();
}

void Engine::Abandon(const std::vector<std::string>& run_ids) {
  auto promise = std::make_shared<std::promise<void>>();
  auto future = promise->get_future();
  asio::post(executor_, [this, run_ids, promise] {
    AbandonWait wait{{}, promise};
    for (const std::string& id : run_ids) {
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      wait.left.insert(id);
      it->second->abandoned = true;
      it->second->cancel.Cancel("cancelled because the run was handed to another executor");
    }
    if (wait.left.empty()) {
      promise->set_value();
      return;
    }
    log::Info("handing " + std::to_string(wait.left.size()) + " run(s) back to the queue");
    abandon_waits_.push_back(std::move(wait));
  });
  future.wait();
}

bool Engine::WaitIdle(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (active_count_.load() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void Engine::Start(ExecutionRequest request, Done done) {
  const std::string run_id = request.run_id;
  if (shut_down_) {
    done(RunOutcome{RunOutcome::Kind::kAbandoned, run_id, std::nullopt});
    return;
  }
  if (auto it = active_.find(run_id); it != active_.end()) {
    // Usually a redelivery of the request being executed. But the run may
    // have just ended (its end is committed before this execution lets it
    // go) and been retried: that request must not be dropped, or the new
    // attempt waits for the sweeper. So the first one is kept and started
    // once this execution ends (it finds a terminal run at once, or a new
    // attempt); any more are duplicates.
    Active& a = *it->second;
    if (a.followup) {
      done(RunOutcome{RunOutcome::Kind::kDuplicate, run_id, std::nullopt});
    } else {
      a.followup.emplace(std::move(request), std::move(done));
    }
    return;
  }
  auto active = std::make_shared<Active>();
  active->run_id = run_id;
  active->done = std::move(done);
  active_[run_id] = active;
  ++active_count_;
  if (options_.metrics) options_.metrics->runs_in_flight.Add(1);
  if (!cancel_poller_running_ && options_.cancel_poll_interval.count() > 0) {
    cancel_poller_running_ = true;
    asio::co_spawn(executor_, PollCancelRequests(), [](std::exception_ptr) {});
  }
  if (!lease_renewer_running_) {
    lease_renewer_running_ = true;
    asio::co_spawn(executor_, RenewLeases(), [](std::exception_ptr) {});
  }

  auto body = [this, active, request = std::move(request)]() -> asio::awaitable<RunOutcome> {
    while (true) {
      RunExecutor exec(this, active.get(), request);
      RunOutcome outcome = co_await exec.Execute();
      if (outcome.kind == RunOutcome::Kind::kAbandoned && active->abandoned && active->lease_token != 0) {
        // Handed back (shutdown, rebalance): free the lease so that whoever
        // gets the run next need not wait for it to lapse.
        const std::string& id = active->run_id;
        const int64_t token = active->lease_token;
        Status released = co_await runner_->Call([&id, token](Store& s) { return s.ReleaseRunLease(id, token); });
        if (!released.ok()) log::Warn("could not release the run's lease (it lapses): " + released.ToString(), {id});
        active->lease_token = 0;
      }
      if (exec.again_now() && !active->abandoned) continue;
      if (!exec.retry_later() || active->abandoned) co_return outcome;
      auto delay = exec.retry_delay().count() > 0 ? exec.retry_delay() : options_.store_retry_delay;
      bool slept = co_await SleepFor(delay, &active->cancel);
      if (!slept) {
        if (active->abandoned) co_return outcome;
        // A user cancel fired the signal: still wait before trying again
        // (the next try records the cancellation).
        co_await SleepFor(delay, nullptr);
      }
    }
  };
  asio::co_spawn(executor_, std::move(body), [this, run_id](std::exception_ptr e, RunOutcome outcome) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::Error(std::string("executor crashed: ") + ex.what(), {run_id});
      } catch (...) {
        log::Error("executor crashed", {run_id});
      }
      outcome = RunOutcome{RunOutcome::Kind::kAbandoned, run_id, std::nullopt};
    }
    Finish(run_id, outcome);
  });
}

void Engine::Finish(const std::string& run_id, const RunOutcome& outcome) {
  auto it = active_.find(run_id);
  if (it == active_.end()) return;
  auto active = it->second;
  active_.erase(it);
  --active_count_;
  if (options_.metrics) options_.metrics->runs_in_flight.Sub(1);
  if (active->done) active->done(outcome);
  if (active->followup) {
    auto [request, done] = std::move(*active->followup);
    active->followup.reset();
    if (active->abandoned) {
      done(RunOutcome{RunOutcome::Kind::kAbandoned, run_id, std::nullopt});  // handed back: not taken again here
    } else {
      Start(std::move(request), std::move(done));
    }
  }
  for (auto w = abandon_waits_.begin(); w != abandon_waits_.end();) {
    w->left.erase(run_id);
    if (w->left.empty()) {
      w->done->set_value();
      w = abandon_waits_.erase(w);
    } else {
      ++w;
    }
  }
  MaybeEndShutdown();
}

void Engine::MaybeEndShutdown() {
  if (!shut_down_ || !shutdown_done_) return;
  if (!active_.empty() || cancel_poller_running_ || lease_renewer_running_) return;
  auto p = std::move(shutdown_done_);
  p->set_value();
}

void Engine::Shutdown() {
  auto promise = std::make_shared<std::promise<void>>();
  auto future = promise->get_future();
  asio::post(executor_, [this, promise] {
    shut_down_ = true;
    shutdown_done_ = promise;
    cancel_poll_timer_.cancel();
    lease_timer_.cancel();
    for (auto& [id, a] : active_) {
      a->abandoned = true;
      a->cancel.Cancel("cancelled because the executor is shutting down");
    }
    MaybeEndShutdown();
  });
  future.wait();
}

}  // namespace af
