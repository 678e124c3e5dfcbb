// The storage interface: workflows (with versions), runs, step executions and
// agents. Backends: SqliteStore (embedded default); PostgreSQL slots in
// behind the same interface. Every backend passes the conformance suite in
// store_conformance.h.
//
// Every status change goes through the status machine (model/status_machine.h)
// and is a compare-and-set on the current status, so two writers cannot both
// win and no impossible state is ever recorded.
//
// Thread-safety: implementations are safe to call from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "model/types.h"

namespace af {

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_page_token;  // empty when there are no more
};

struct NewWorkflow {
  std::string name;
  std::string description;
  json plan;
};

// A message to publish once the write that carries it has committed: the
// transactional outbox. Runs are created (and retried) together with their
// execution request in one transaction; a relay (dispatch/dispatcher.h)
// publishes the outbox to the queue and deletes what the queue accepted. So a
// run is never accepted without its request, whatever fails when.
struct OutboxMessage {
  int64_t id = 0;        // assigned by the store
  std::string topic;
  std::string key;
  std::string payload;
  TimeMs created_at = 0;  // set by the store
  int attempts = 0;       // failed publishes so far
  std::string last_error; // of the last failed publish
};

// Receives outbox messages committed by this process (Store::SetOutboxListener).
using OutboxListener = std::function<void(const OutboxMessage&)>;

struct OutboxStats {
  int64_t messages = 0;                 // waiting to be published
  std::optional<TimeMs> oldest_created_at;
};

// A run's lease: who drives it, with which fencing token, until when.
struct RunLease {
  std::string run_id;
  std::string owner;
  int64_t token = 0;
  TimeMs expires_at = 0;
  Run run;  // the run as the acquire left it (the executor's first read of it)
};

struct NewRun {
  std::string id;               // empty: the store assigns "run-<uuid>"
  std::string workflow_id;
  int workflow_version = 0;
  json input = json::object();
  std::string idempotency_key;  // empty: none
  std::string traceparent;      // W3C traceparent kept with the run; empty: none (stored as NULL)
  // Written to the outbox in the same transaction as the run, and only if
  // the run is created (not for a repeated idempotency key); sets the run's
  // dispatched_at. Its payload must name the run's id, so callers that
  // dispatch choose the id (NewRunId()).
  std::optional<OutboxMessage> dispatch;
};

struct RunFilter {
  std::string workflow_id;               // empty: any
  std::optional<RunStatus> status;       // empty: any
  int limit = 50;                        // clamped to 1..1000
  std::string page_token;                // from a previous page
};

// A status change of a run, applied only if the run is currently `from`.
struct RunTransition {
  std::string run_id;
  RunStatus from = RunStatus::kPending;
  RunStatus to = RunStatus::kRunning;
  std::optional<json> output;            // set with COMPLETED
  std::optional<std::string> error_message;  // set with FAILED/CANCELLED; cleared by PENDING
  std::optional<json> input;             // replace the input (retry with new input)
  // Fencing: non-zero applies the change only while the run's lease token is
  // this one (the writer still owns the run); otherwise Aborted. 0: unfenced
  // (the API's own transitions).
  int64_t lease_token = 0;
  // Written to the outbox with the change (a retry's execution request);
  // sets dispatched_at.
  std::optional<OutboxMessage> dispatch;
  // Timestamps are set by the store: started_at on → RUNNING (first time
  // only), completed_at on a terminal status, cleared on → PENDING.
  // → PENDING (retry) also clears output, error_message, cancel_requested,
  // cancelled_by and cancel_reason, and increments attempt.
  // → PENDING or a terminal status releases the lease (owner cleared; the
  // token stays, so stale holders stay fenced).
};

// Ends a RUNNING step execution.
struct StepFinish {
  std::string run_id;      // the execution's run (checked)
  int64_t id = 0;          // from InsertStep
  StepStatus to = StepStatus::kCompleted;
  json output;             // null unless COMPLETED
  std::string error_message;
  int64_t lease_token = 0; // fencing, as in RunTransition
};

// The lease token of a run's first lease (a new run's token is 0; every
// acquire increments it).
inline constexpr int64_t kFirstLeaseToken = 1;

// Starts a run that no executor has taken yet, in the transaction of the
// executor's first write batch (RunWrite::kStart), instead of a separate
// AcquireRunLease: takes the run's first lease (token kFirstLeaseToken) for
// `owner` until now + ttl_ms and moves it PENDING → RUNNING (started_at
// set). Only if the run is PENDING in its first attempt, was never leased
// (token 0), has no cancellation asked and its input is `input` (what the
// run's execution request carries, compared as serialized); otherwise
// FailedPrecondition with details {"start": "refused"}, and nothing of the
// batch is written: the executor then takes the general path
// (AcquireRunLease, which says why). Saves the acquire's own commit.
struct RunStart {
  std::string run_id;
  std::string owner;
  int64_t ttl_ms = 0;
  json input = json::object();
};

// One write of a run's executor, for Store::ApplyRunWrites.
struct RunWrite {
  enum class Kind { kInsertStep, kFinishStep, kTransition, kStart };
  Kind kind = Kind::kInsertStep;
  StepExecution insert;      // kInsertStep
  StepFinish finish;         // kFinishStep
  RunTransition transition;  // kTransition (without dispatch)
  RunStart start;            // kStart: only as a batch's first op, with lease_token kFirstLeaseToken

  static RunWrite Insert(StepExecution s) {
    RunWrite w;
    w.kind = Kind::kInsertStep;
    w.insert = std::move(s);
    return w;
  }
  static RunWrite Finish(StepFinish f) {
    RunWrite w;
    w.kind = Kind::kFinishStep;
    w.finish = std::move(f);
    return w;
  }
  static RunWrite Transition(RunTransition t) {
    RunWrite w;
    w.kind = Kind::kTransition;
    w.transition = std::move(t);
    return w;
  }
  static RunWrite Start(RunStart s) {
    RunWrite w;
    w.kind = Kind::kStart;
    w.start = std::move(s);
    return w;
  }
};

// Writes of one run committed together: a step's result with the next step's
// RUNNING row, a fan-out's rows, the last result with the run's end.
struct RunWrites {
  std::string run_id;
  // Fences every write as in RunTransition (0: unfenced); the ops' own
  // lease_token fields are ignored.
  int64_t lease_token = 0;
  std::vector<RunWrite> ops;
};

struct RunWritesResult {
  std::vector<int64_t> step_ids;  // per op: the new execution's id for kInsertStep, else 0
  std::optional<Run> run;         // the run after the last kTransition or kStart, if there was one
};

struct CancelRequest {
  std::string run_id;
  std::string cancelled_by;
  std::string reason;
};

// `s` with {"op": op} added to its details (for ApplyRunWrites).
inline Status WithOpIndex(const Status& s, size_t op) {
  json d = s.details().is_object() ? s.details() : json::object();
  d["op"] = op;
  return Status(s.code(), s.message(), std::move(d));
}

// ApplyRunWrites' argument checks, shared by every backend: each op is for
// w.run_id, no transition carries a dispatch, and a kStart is the first op
// of a batch fenced with kFirstLeaseToken (InvalidArgument with {"op"}).
Status CheckRunWrites(const RunWrites& w);

// A RunWrite::kStart's refusal (see RunStart), the same from every backend.
Status StartRefused(const std::string& run_id);
inline bool IsStartRefused(const Status& s) {
  return s.code() == Code::kFailedPrecondition && s.details().is_object() && s.details().value("start", "") == "refused";
}

class Store {
 public:
  virtual ~Store() = default;

  // How many calls can usefully run at once: the connection count
  // (PostgreSQL's pool). 1 means calls serialize (one SQLite connection), so
  // a caller gains nothing by issuing them from several threads.
  virtual int MaxConcurrentCalls() const { return 1; }

  // ---- workflows ----
  // Creates version 1. AlreadyExists if a live workflow has the name.
  virtual Result<Workflow> CreateWorkflow(const NewWorkflow& w) = 0;
  // Writes a new version (latest_version + 1). NotFound; AlreadyExists if the
  // new name belongs to another live workflow.
  virtual Result<Workflow> UpdateWorkflow(const std::string& id, const NewWorkflow& w) = 0;
  // The latest version, or `version` if given. NotFound if the workflow was
  // deleted, except that an explicit version of a deleted workflow is still
  // returned (runs keep theirs).
  virtual Result<Workflow> GetWorkflow(const std::string& id, std::optional<int> version = std::nullopt) = 0;
  virtual Result<Workflow> GetWorkflowByName(const std::string& name) = 0;
  // Latest versions of live workflows, newest first (by created_at, then id).
  // `limit` is clamped to 1..1000; InvalidArgument if page_token is not one
  // this store returned. Pages neither repeat nor skip workflows, even when
  // workflows are created while paging.
  virtual Result<Page<Workflow>> ListWorkflows(int limit, const std::string& page_token) = 0;
  // All versions of one workflow, newest first. NotFound if the workflow does
  // not exist or was deleted.
  virtual Result<std::vector<Workflow>> ListWorkflowVersions(const std::string& id) = 0;
  // Marks the workflow deleted; its versions stay for the runs that use them.
  // NotFound if it does not exist or is already deleted. The name becomes free.
  virtual Status DeleteWorkflow(const std::string& id) = 0;

  // ---- runs ----
  struct CreatedRun {
    Run run;
    bool created = true;  // false: an existing run with the same idempotency key
  };
  // Inserts a PENDING run. With an idempotency_key already used for the same
  // workflow, returns that run instead (created = false), also when callers
  // race. NotFound if the workflow has no such version; AlreadyExists if an
  // explicit id is taken.
  virtual Result<CreatedRun> CreateRun(const NewRun& r) = 0;
  // CreateRun for each of `runs` as one batch (the API's group commit of
  // concurrent triggers): one result per run, in order, each what CreateRun
  // would return for it — a run that fails (no such workflow version, id
  // taken, a value the backend cannot store) fails alone, the others are
  // created; repeated idempotency keys, also within the batch, return the
  // first run (created = false). SqliteStore and PostgresStore write the
  // batch in one transaction, so a failure of the batch as a whole
  // (database unreachable) is every run's result and none was created. The
  // default calls CreateRun for each, so test doubles need nothing;
  // decorators that act on created runs override it.
  virtual std::vector<Result<CreatedRun>> CreateRuns(const std::vector<NewRun>& runs);
  virtual Result<Run> GetRun(const std::string& run_id) = 0;
  // Newest first (by created_at, then id); paging as for ListWorkflows.
  virtual Result<Page<Run>> ListRuns(const RunFilter& f) = 0;
  // Runs not in a terminal status (PENDING or RUNNING), oldest first, for
  // recovery after a restart. At most max(limit, 1).
  virtual Result<std::vector<Run>> ListUnfinishedRuns(int limit) = 0;
  // Compare-and-set through the status machine. FailedPrecondition if the run
  // is not in `from` (details: {"current": "<status>"}) or the transition is
  // not allowed; NotFound if there is no such run.
  virtual Result<Run> TransitionRun(const RunTransition& t) = 0;
  // Of `run_ids`, the runs not yet terminal whose cancellation was requested,
  // with who and why. Executors call it periodically for the runs they drive,
  // so a cancellation reaches a run wherever it executes.
  virtual Result<std::vector<CancelRequest>> ListCancelRequests(const std::vector<std::string>& run_ids) = 0;
  // The status of each of `run_ids` that exists (unknown ids are left out),
  // in no particular order: one read for many runs, for a process that
  // waits for runs other processes drive (the api's ?wait). The default
  // calls GetRun for each; the database backends read them together.
  virtual Result<std::vector<std::pair<std::string, RunStatus>>> GetRunStatuses(
      const std::vector<std::string>& run_ids);
  // Calls `wake` (on a thread of the backend's) soon after a transaction
  // that ends a run (a transition to a terminal status) commits, in any
  // process using this database, until the returned object is destroyed:
  // what lets such a waiter read at once instead of on its next poll. A
  // hint only: a wake may be spurious, late or lost (a broken connection,
  // retried in the background), so the waiter still polls, less often.
  // `wake` must be quick and must not call back into the listener. Heard
  // only from writers that notify (PostgreSQL: PostgresOptions::
  // notify_run_ends). nullptr: the backend cannot tell (SQLite: the
  // default).
  class RunEndListener {
   public:
    virtual ~RunEndListener() = default;
  };
  virtual std::unique_ptr<RunEndListener> ListenForRunEnds(std::function<void()> wake);
  // How far each of `run_ids` has got in its step executions: how many
  // there are and how many have finished (any status but RUNNING). Runs
  // without any are left out; no particular order. The pair changes with
  // every execution added (a step started, a retry's new attempt) or
  // finished, so a process that shows runs other processes drive (the api's
  // event streams) reads it for many runs at once and re-reads a run's
  // steps only when it moved. One read for all of them.
  struct StepProgress {
    std::string run_id;
    int64_t executions = 0;
    int64_t finished = 0;
  };
  virtual Result<std::vector<StepProgress>> GetStepProgress(const std::vector<std::string>& run_ids) = 0;
  // Records who asked to cancel and why (cancel_requested = true). Does not
  // change the status. FailedPrecondition if the run is already terminal
  // (details: {"current": "<status>"}); NotFound. A repeated request
  // replaces cancelled_by and reason.
  virtual Result<Run> RequestCancel(const CancelRequest& c) = 0;

  // ---- step executions ----
  // Inserts a new execution row (status RUNNING, SKIPPED, CANCELLED or FAILED)
  // and returns its id (ids increase). The status machine is checked with
  // from = (new). started_at is s.started_at, or now if 0; a terminal insert
  // gets completed_at (s.completed_at, or now). NotFound if the run does not
  // exist. A non-zero lease_token fences the write as in RunTransition
  // (Aborted if the run's token is another).
  virtual Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) = 0;
  Result<int64_t> InsertStep(const StepExecution& s) { return InsertStep(s, 0); }
  // Moves a RUNNING execution to a terminal status, setting output,
  // error_message and completed_at. FailedPrecondition if it is not RUNNING;
  // NotFound if no execution has that id in that run; Aborted if fenced off.
  virtual Status FinishStep(const StepFinish& f) = 0;
  // Applies `w.ops` in order in one transaction: all of them or none. Each
  // op behaves as its single call (InsertStep, FinishStep, TransitionRun),
  // fenced by w.lease_token, and every op must be for w.run_id. The first
  // op that fails rolls everything back; its Status is returned with
  // details {"op": index} added (Aborted when fenced off). A transition may
  // not carry a dispatch (InvalidArgument).
  virtual Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) = 0;
  // Group commit: the write batches of several runs (an executor's batches
  // that queued up while its earlier ones committed). One result per batch,
  // in order, each exactly what ApplyRunWrites(*group[i]) would return; a
  // backend may commit the whole group in one transaction (PostgreSQL does,
  // falling back to one batch at a time when any of them fails). The
  // default applies them one at a time.
  virtual std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) {
    std::vector<Result<RunWritesResult>> out;
    out.reserve(group.size());
    for (const RunWrites* w : group) out.push_back(ApplyRunWrites(*w));
    return out;
  }
  // All executions of a run in start order (started_at, then id); empty if
  // the run has none (or does not exist).
  virtual Result<std::vector<StepExecution>> ListSteps(const std::string& run_id) = 0;

  // ---- leases: one executor drives a run at a time ----
  // Lease times are the database's clock where there is one server
  // (PostgreSQL), so executors on hosts with skewed clocks still agree.
  //
  // Takes the run for `owner` until now + ttl_ms, if the run is not terminal
  // and no other owner holds a lease that has not expired. Every acquire
  // increments the run's lease token; writes fenced with an older token fail
  // with Aborted from then on. Aborted (details: {"lease_owner",
  // "retry_after_ms"}) while another owner holds it; FailedPrecondition
  // (details: {"current": status}) if terminal; NotFound. The lease carries
  // the run's row as acquired, so an executor needs no separate read.
  virtual Result<RunLease> AcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) = 0;
  // Extends every lease `owner` holds to now + ttl_ms (one statement, however
  // many runs); returns how many.
  virtual Result<int64_t> RenewRunLeases(const std::string& owner, int64_t ttl_ms) = 0;
  // Gives the lease up now if it still has `token` (no-op otherwise), so
  // another executor can take the run at once.
  virtual Status ReleaseRunLease(const std::string& run_id, int64_t token) = 0;
  // Runs that are not terminal, whose lease is free (none, or expired) and
  // whose execution request was last dispatched long enough ago (or never):
  // the runs nobody is driving, whose request may be lost. "Long enough":
  // - older_than_ms, if an executor took the run after its last dispatch
  //   and its lease lapsed (the executor died: recover it at once);
  // - otherwise (no executor took it since: it may merely be waiting in a
  //   queue backlog) older_than_ms x 2^redispatch_count, at most
  //   max(older_than_ms, kMaxStrandedBackoffMs), where redispatch_count is
  //   how many times in a row RedispatchRun dispatched it again without an
  //   executor taking it in between (0 for a new or retried run). So a lost
  //   request is replaced after older_than_ms, and a run waiting in a
  //   backlog gets a duplicate after 1, 3, 7, 15 ... x older_than_ms.
  // Oldest first, at most max(limit, 1).
  static constexpr int64_t kMaxStrandedBackoffMs = 3600000;
  virtual Result<std::vector<Run>> ListStrandedRuns(int64_t older_than_ms, int limit) = 0;
  // Dispatches a stranded run again: writes `message` to the outbox and sets
  // dispatched_at, in one transaction, if the run still matches
  // ListStrandedRuns(older_than_ms) (so concurrent sweepers dispatch it
  // once); redispatch_count becomes 1 if an executor had taken the run since
  // its last dispatch, else it is incremented. Returns whether it did.
  virtual Result<bool> RedispatchRun(const std::string& run_id, int64_t older_than_ms,
                                     const OutboxMessage& message) = 0;

  // ---- outbox ----
  // Up to `limit` messages due for publishing, oldest first, each hidden from
  // other claimers for claim_ms (a relay that dies mid-publish leaves them to
  // another after that).
  virtual Result<std::vector<OutboxMessage>> ClaimOutbox(int limit, int64_t claim_ms) = 0;
  // Deletes messages the queue has accepted.
  virtual Status DeleteOutbox(const std::vector<int64_t>& ids) = 0;
  // Records a failed publish: attempts + 1, last_error, due again after retry_ms.
  virtual Status DeferOutbox(const std::vector<int64_t>& ids, const std::string& error, int64_t retry_ms) = 0;
  virtual Result<OutboxStats> GetOutboxStats() = 0;
  // The writer's fast path. With a listener set, every outbox message this
  // store writes (NewRun::dispatch, RunTransition::dispatch, RedispatchRun)
  // is inserted already claimed for claim_ms, as if ClaimOutbox had claimed
  // it for this process, and handed to `listener` (with its id and
  // created_at) once its transaction has committed, on the writing thread,
  // before the write returns. The listener (the process's Dispatcher)
  // publishes and deletes it without a claim commit; if the process dies
  // first, the claim lapses after claim_ms and any relay publishes it. The
  // listener must be quick and must not call the store. Setting another
  // listener, or an empty one (off: messages are due at once), waits for
  // calls in progress. Returns false if this store has no fast path (the
  // default, e.g. decorators and test doubles): call it on the backend.
  virtual bool SetOutboxListener(OutboxListener listener, int64_t claim_ms) {
    (void)listener;
    (void)claim_ms;
    return false;
  }

  // ---- agents ----
  // AlreadyExists if the name is taken.
  virtual Result<Agent> CreateAgent(const Agent& a) = 0;
  // Creates or replaces the configuration (keeps created_at and the observed
  // health fields: health, health_error, last_seen_at, health_checked_at).
  // CreateAgent/UpsertAgent ignore the observed fields of `a`; a new agent
  // starts kUnknown with no times.
  virtual Result<Agent> UpsertAgent(const Agent& a) = 0;
  // Records a health observation: sets health, health_error (cleared unless
  // kUnhealthy) and health_checked_at = u.at, and last_seen_at = u.at when
  // kHealthy. Does not touch updated_at. NotFound if no such agent.
  virtual Status RecordAgentHealth(const AgentHealthUpdate& u) = 0;
  // NotFound.
  virtual Result<Agent> GetAgent(const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<Agent>> ListAgents() = 0;
  // NotFound.
  virtual Status DeleteAgent(const std::string& name) = 0;

  // ---- API keys (access control, src/auth) ----
  // Both backends implement these and pass the conformance suite; the
  // defaults only spare test doubles that never see a key (they answer
  // Internal).
  //
  // Stores a new key as given (id, name, role, secret_hash; created_at is
  // set by the store, last_used_at and revoked_at start unset).
  // AlreadyExists if the id is taken.
  virtual Result<ApiKey> CreateApiKey(const ApiKey& k);
  // The key, revoked or not. NotFound.
  virtual Result<ApiKey> GetApiKey(const std::string& id);
  // Every key, revoked ones included, oldest first (created_at, then id).
  virtual Result<std::vector<ApiKey>> ListApiKeys();
  // Sets revoked_at = now; a key already revoked keeps its first revoked_at.
  // Returns the key. NotFound.
  virtual Result<ApiKey> RevokeApiKey(const std::string& id);
  // Sets last_used_at = at. NotFound.
  virtual Status RecordApiKeyUse(const std::string& id, TimeMs at);

  // Cheap liveness check of the backend.
  virtual Status Ping() = 0;
};

struct StoreOptions {
  // "" or a file path: SQLite (":memory:" for a private in-memory database);
  // postgresql://… : PostgreSQL (a later backend).
  std::string url;
  // SQLite: synchronous=FULL (durable across power loss) instead of NORMAL
  // (durable across process crashes; much faster).
  bool sqlite_full_sync = false;
  // PostgreSQL: NOTIFY after every commit that ends a run, so an api's
  // ?wait hears of it at once (PostgresOptions::notify_run_ends).
  bool notify_run_ends = false;
};

// Opens the backend `options.url` selects and applies pending migrations.
Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options);

}  // namespace af
