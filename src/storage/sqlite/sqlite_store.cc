// SqliteStore: the Store on one SQLite connection.
//
// Design:
// - One connection, guarded by one mutex: every public method locks it for
//   its whole duration, so a method's statements never interleave with
//   another thread's. SQLite itself is opened NOMUTEX (our mutex suffices).
//   Other processes may open the same file; WAL lets their readers run while
//   we write, and busy_timeout waits for their write locks (after which the
//   error is Unavailable, i.e. retryable).
// - Every statement is prepared once at open (a typo fails the open, not a
//   request) and reused; a Stmt scope resets it and clears its bindings.
// - Status changes are one compare-and-set UPDATE ... WHERE status = <from>
//   ... RETURNING, after the status machine allowed from → to; only when it
//   matches no row do we read the row to say why.
// - Writes that touch several rows run in a BEGIN IMMEDIATE transaction (the
//   write lock is taken up front, so two processes cannot deadlock upgrading).
// - No exception leaves the store: every public method catches and returns
//   Internal.
#include "storage/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "common/ids.h"
#include "common/json_text.h"
#include "common/time.h"
#include "model/status_machine.h"
#include "storage/sqlite/migrations.h"
#include "storage/sqlite/wal_checkpointer.h"

namespace af {
namespace {

using sqlite::SqliteError;

constexpr int kBusyTimeoutMs = 5000;
constexpr int kMaxPageSize = 1000;

// ---------------------------------------------------------------- SQL text

#define AF_RUN_COLS                                                                                    \
  "id, workflow_id, workflow_version, status, input, output, error_message, idempotency_key, "        \
  "cancel_requested, cancelled_by, cancel_reason, attempt, created_at, started_at, completed_at, "     \
  "updated_at, traceparent, lease_owner, lease_token, lease_expires_at, dispatched_at"
#define AF_WORKFLOW_COLS "w.id, v.name, v.description, v.version, w.latest_version, v.plan, w.created_at, v.created_at"
#define AF_WORKFLOW_LATEST \
  " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.latest_version "
#define AF_STEP_COLS                                                                                    \
  "id, run_id, step_id, item_index, agent_name, attempt, status, input, output, error_message, started_at, " \
  "completed_at"
#define AF_AGENT_CONFIG_COLS \
  "name, url, timeout_ms, max_concurrency, metadata, created_at, updated_at, transport, topic, health_url"
#define AF_AGENT_COLS AF_AGENT_CONFIG_COLS ", health, health_error, last_seen_at, health_checked_at"
#define AF_API_KEY_COLS "id, name, role, secret_hash, created_at, last_used_at, revoked_at"
// A run nobody drives whose request may be lost (ListStrandedRuns): ?1 now,
// ?2 older_than_ms. An executor took it after its last dispatch and its lease
// lapsed: older_than_ms; else (it may be waiting in a backlog) backed off.
#define AF_TAKEN_SINCE_DISPATCH "(lease_owner IS NOT NULL AND lease_expires_at > dispatched_at)"
#define AF_STRANDED                                                                                   \
  "status IN ('PENDING', 'RUNNING') AND (lease_owner IS NULL OR lease_expires_at < ?1) "              \
  "AND (dispatched_at IS NULL OR dispatched_at < ?1 - CASE WHEN " AF_TAKEN_SINCE_DISPATCH " THEN ?2 "  \
  "ELSE min(?2 * (1 << min(redispatch_count, 20)), max(?2, 3600000 /* kMaxStrandedBackoffMs */)) END)"
#define AF_OUTBOX_COLS "id, topic, key, payload, created_at, attempts, last_error"
// Keyset pagination of runs, newest first: ?1 ?2 = the cursor (created_at, id)
// of the previous page's last row, ?3 workflow, ?4 status, ?5 limit.
#define AF_LIST_RUNS(filter)                                                                          \
  "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE " filter " (created_at, id) < (?1, ?2) "         \
  "ORDER BY created_at DESC, id DESC LIMIT ?5"

enum Sql {
  kBegin,
  kCommit,
  kRollback,
  kSavepointBatch,
  kReleaseBatch,
  kRollbackBatch,
  kPing,
  kInsertWorkflow,
  kInsertWorkflowVersion,
  kBumpWorkflow,
  kGetWorkflowLatest,
  kGetWorkflowVersion,
  kGetWorkflowByName,
  kListWorkflows,
  kListWorkflowVersions,
  kDeleteWorkflow,
  kInsertRun,
  kGetRun,
  kGetRunByKey,
  kGetRunStatus,
  kListRuns,
  kListRunsByWorkflow,
  kListRunsByStatus,
  kListRunsByWorkflowAndStatus,
  kListUnfinishedRuns,
  kListCancelRequests,
  kGetRunStatuses,
  kGetStepProgress,
  kTransitionRun,
  kRequestCancel,
  kInsertStep,
  kFinishStep,
  kGetStepStatus,
  kListSteps,
  kInsertAgent,
  kUpsertAgent,
  kGetAgent,
  kListAgents,
  kDeleteAgent,
  kRecordAgentHealth,
  kInsertApiKey,
  kGetApiKey,
  kListApiKeys,
  kRevokeApiKey,
  kRecordApiKeyUse,
  kAcquireLease,
  kRenewLeases,
  kReleaseLease,
  kGetLeaseState,
  kListStranded,
  kRedispatch,
  kInsertOutbox,
  kClaimOutbox,
  kDeleteOutbox,
  kDeferOutbox,
  kOutboxStats,
  kStartRun,
  kSqlCount,
};

// Indexed by Sql.
constexpr std::array<const char*, kSqlCount> kSqlText = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT run_writes",
    "RELEASE run_writes",
    "ROLLBACK TO run_writes",
    "SELECT 1",
    // kInsertWorkflow
    "INSERT INTO workflows (id, name, description, latest_version, created_at, updated_at) "
    "VALUES (?1, ?2, ?3, 1, ?4, ?4)",
    // kInsertWorkflowVersion
    "INSERT INTO workflow_versions (workflow_id, version, name, description, plan, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    // kBumpWorkflow
    "UPDATE workflows SET name = ?2, description = ?3, latest_version = latest_version + 1, updated_at = ?4 "
    "WHERE id = ?1 AND deleted_at IS NULL RETURNING latest_version, created_at",
    // kGetWorkflowLatest
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST "WHERE w.id = ?1 AND w.deleted_at IS NULL",
    // kGetWorkflowVersion
    "SELECT " AF_WORKFLOW_COLS
    " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id "
    "WHERE w.id = ?1 AND v.version = ?2",
    // kGetWorkflowByName
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST "WHERE w.name = ?1 AND w.deleted_at IS NULL",
    // kListWorkflows
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST
    "WHERE w.deleted_at IS NULL AND (w.created_at, w.id) < (?1, ?2) "
    "ORDER BY w.created_at DESC, w.id DESC LIMIT ?3",
    // kListWorkflowVersions
    "SELECT " AF_WORKFLOW_COLS
    " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id "
    "WHERE w.id = ?1 AND w.deleted_at IS NULL ORDER BY v.version DESC",
    // kDeleteWorkflow
    "UPDATE workflows SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
    // kInsertRun: an idempotency key already used for the workflow inserts
    // nothing (and returns no row); any other conflict is an error.
    "INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, idempotency_key, "
    "cancel_requested, attempt, created_at, updated_at, traceparent, dispatched_at) "
    "VALUES (?1, ?2, ?3, 'PENDING', ?4, ?5, 0, 1, ?6, ?6, ?7, ?8) "
    "ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    // kGetRun
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE id = ?1",
    // kGetRunByKey
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE workflow_id = ?1 AND idempotency_key = ?2",
    // kGetRunStatus
    "SELECT status FROM workflow_runs WHERE id = ?1",
    AF_LIST_RUNS(""),
    AF_LIST_RUNS("workflow_id = ?3 AND"),
    AF_LIST_RUNS("status = ?4 AND"),
    AF_LIST_RUNS("workflow_id = ?3 AND status = ?4 AND"),
    // kListUnfinishedRuns
    "SELECT " AF_RUN_COLS
    " FROM workflow_runs WHERE status IN ('PENDING', 'RUNNING') "
    "ORDER BY created_at, id LIMIT ?1",
    // kListCancelRequests (?1: JSON array of run ids)
    "SELECT id, cancelled_by, cancel_reason FROM workflow_runs "
    "WHERE id IN (SELECT value FROM json_each(?1)) AND cancel_requested = 1 "
    "AND status IN ('PENDING', 'RUNNING')",
    // kGetRunStatuses (?1: JSON array of run ids)
    "SELECT id, status FROM workflow_runs WHERE id IN (SELECT value FROM json_each(?1))",
    // kGetStepProgress (?1: JSON array of run ids)
    "SELECT run_id, count(*), sum(status <> 'RUNNING') FROM step_executions "
    "WHERE run_id IN (SELECT value FROM json_each(?1)) GROUP BY run_id",
    // kTransitionRun: ?1 id, ?2 from, ?3 to, ?4 now, ?5 to is RUNNING,
    // ?6 to is terminal, ?7 to is PENDING (retry), ?8/?9 set output,
    // ?10/?11 set error_message, ?12/?13 set input, ?14 lease token (0:
    // unfenced), ?15 set dispatched_at. → PENDING or terminal frees the lease.
    "UPDATE workflow_runs SET status = ?3, updated_at = ?4, "
    "started_at = CASE WHEN ?5 THEN coalesce(started_at, ?4) ELSE started_at END, "
    "completed_at = CASE WHEN ?6 THEN ?4 ELSE NULL END, "
    "output = CASE WHEN ?7 THEN NULL WHEN ?8 THEN ?9 ELSE output END, "
    "error_message = CASE WHEN ?7 THEN NULL WHEN ?10 THEN ?11 ELSE error_message END, "
    "input = CASE WHEN ?12 THEN ?13 ELSE input END, "
    "cancel_requested = CASE WHEN ?7 THEN 0 ELSE cancel_requested END, "
    "cancelled_by = CASE WHEN ?7 THEN NULL ELSE cancelled_by END, "
    "cancel_reason = CASE WHEN ?7 THEN NULL ELSE cancel_reason END, "
    "attempt = attempt + CASE WHEN ?7 THEN 1 ELSE 0 END, "
    "lease_owner = CASE WHEN ?6 OR ?7 THEN NULL ELSE lease_owner END, "
    "lease_expires_at = CASE WHEN ?6 OR ?7 THEN NULL ELSE lease_expires_at END, "
    "dispatched_at = CASE WHEN ?15 THEN ?4 ELSE dispatched_at END, "
    "redispatch_count = CASE WHEN ?15 THEN 0 ELSE redispatch_count END "
    "WHERE id = ?1 AND status = ?2 AND (?14 = 0 OR lease_token = ?14) RETURNING " AF_RUN_COLS,
    // kRequestCancel
    "UPDATE workflow_runs SET cancel_requested = 1, cancelled_by = ?2, cancel_reason = ?3, updated_at = ?4 "
    "WHERE id = ?1 AND status IN ('PENDING', 'RUNNING') RETURNING " AF_RUN_COLS,
    // kInsertStep: ?12 lease token (0: unfenced). One statement: the fence
    // and the insert see the same state (SQLite has one writer at a time).
    "INSERT INTO step_executions (run_id, step_id, item_index, agent_name, attempt, status, input, output, "
    "error_message, started_at, completed_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 "
    "WHERE ?12 = 0 OR EXISTS (SELECT 1 FROM workflow_runs WHERE id = ?1 AND lease_token = ?12)",
    // kFinishStep: ?7 lease token (0: unfenced)
    "UPDATE step_executions SET status = ?3, output = ?4, error_message = ?5, completed_at = ?6 "
    "WHERE id = ?1 AND run_id = ?2 AND status = 'RUNNING' "
    "AND (?7 = 0 OR EXISTS (SELECT 1 FROM workflow_runs WHERE id = ?2 AND lease_token = ?7))",
    // kGetStepStatus
    "SELECT status FROM step_executions WHERE id = ?1 AND run_id = ?2",
    // kListSteps
    "SELECT " AF_STEP_COLS " FROM step_executions WHERE run_id = ?1 ORDER BY started_at, id",
    // kInsertAgent
    "INSERT INTO agents (" AF_AGENT_CONFIG_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
    // kUpsertAgent
    "INSERT INTO agents (" AF_AGENT_CONFIG_COLS
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9) "
    "ON CONFLICT (name) DO UPDATE SET url = excluded.url, timeout_ms = excluded.timeout_ms, "
    "max_concurrency = excluded.max_concurrency, metadata = excluded.metadata, updated_at = excluded.updated_at, "
    "transport = excluded.transport, topic = excluded.topic, health_url = excluded.health_url "
    "RETURNING " AF_AGENT_COLS,
    // kGetAgent
    "SELECT " AF_AGENT_COLS " FROM agents WHERE name = ?1",
    // kListAgents
    "SELECT " AF_AGENT_COLS " FROM agents ORDER BY name",
    // kDeleteAgent
    "DELETE FROM agents WHERE name = ?1",
    // kRecordAgentHealth: ?5 = 1 sets last_seen_at
    "UPDATE agents SET health = ?2, health_error = ?3, health_checked_at = ?4, "
    "last_seen_at = CASE WHEN ?5 = 1 THEN ?4 ELSE last_seen_at END WHERE name = ?1",
    // kInsertApiKey
    "INSERT INTO api_keys (id, name, role, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    // kGetApiKey
    "SELECT " AF_API_KEY_COLS " FROM api_keys WHERE id = ?1",
    // kListApiKeys
    "SELECT " AF_API_KEY_COLS " FROM api_keys ORDER BY created_at, id",
    // kRevokeApiKey: a key already revoked keeps its first revoked_at
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1 RETURNING " AF_API_KEY_COLS,
    // kRecordApiKeyUse
    "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
    // kAcquireLease: ?1 run, ?2 owner, ?3 now, ?4 ttl
    "UPDATE workflow_runs SET lease_owner = ?2, lease_token = lease_token + 1, lease_expires_at = ?3 + ?4 "
    "WHERE id = ?1 AND status IN ('PENDING', 'RUNNING') "
    "AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_expires_at < ?3) "
    "RETURNING " AF_RUN_COLS,
    // kRenewLeases: ?1 owner, ?2 new expiry
    "UPDATE workflow_runs SET lease_expires_at = ?2 WHERE lease_owner = ?1",
    // kReleaseLease
    "UPDATE workflow_runs SET lease_owner = NULL, lease_expires_at = NULL "
    "WHERE id = ?1 AND lease_token = ?2 AND lease_owner IS NOT NULL",
    // kGetLeaseState
    "SELECT status, lease_owner, lease_expires_at FROM workflow_runs WHERE id = ?1",
    // kListStranded: ?1 now, ?2 older_than_ms, ?3 limit
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE " AF_STRANDED " ORDER BY created_at, id LIMIT ?3",
    // kRedispatch: ?1 now, ?2 older_than_ms, ?3 run
    "UPDATE workflow_runs SET dispatched_at = ?1, "
    "redispatch_count = CASE WHEN " AF_TAKEN_SINCE_DISPATCH
    " THEN 1 ELSE redispatch_count + 1 END "
    "WHERE id = ?3 AND " AF_STRANDED,
    // kInsertOutbox: ?5 claimed for (the writer's fast path; 0: due at once)
    "INSERT INTO outbox (topic, key, payload, created_at, available_at) VALUES (?1, ?2, ?3, ?4, ?4 + ?5)",
    // kClaimOutbox: ?1 now, ?2 claimed until, ?3 limit
    "UPDATE outbox SET available_at = ?2 WHERE id IN "
    "(SELECT id FROM outbox WHERE available_at <= ?1 ORDER BY id LIMIT ?3) RETURNING " AF_OUTBOX_COLS,
    // kDeleteOutbox (?1: JSON array of ids)
    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))",
    // kDeferOutbox: ?1 ids, ?2 error, ?3 due again at
    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, available_at = ?3 "
    "WHERE id IN (SELECT value FROM json_each(?1))",
    // kOutboxStats
    "SELECT count(*), min(created_at) FROM outbox",
    // kStartRun (RunStart): ?1 run, ?2 owner, ?3 now, ?4 ttl, ?5 input
    "UPDATE workflow_runs SET status = 'RUNNING', updated_at = ?3, started_at = coalesce(started_at, ?3), "
    "lease_owner = ?2, lease_token = 1 /* kFirstLeaseToken */, lease_expires_at = ?3 + ?4 "
    "WHERE id = ?1 AND status = 'PENDING' AND attempt = 1 AND lease_token = 0 AND cancel_requested = 0 "
    "AND input = ?5 RETURNING " AF_RUN_COLS,
};

#undef AF_STRANDED
#undef AF_TAKEN_SINCE_DISPATCH

#undef AF_LIST_RUNS

// ---------------------------------------------------------------- helpers

// Extended result codes are on, so constraint failures arrive specific.
bool IsUniqueViolation(int rc) { return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY; }

// A cached statement in use: reset and unbound when the scope ends.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  ~Stmt() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  void Bind(int i, int64_t v) { Check(sqlite3_bind_int64(s_, i, v)); }
  void Bind(int i, int v) { Check(sqlite3_bind_int(s_, i, v)); }
  void Bind(int i, bool v) { Check(sqlite3_bind_int(s_, i, v ? 1 : 0)); }
  void Bind(int i, const std::string& v) {
    Check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void Bind(int i, const char* v) { Check(sqlite3_bind_text(s_, i, v, -1, SQLITE_STATIC)); }
  void BindNull(int i) { Check(sqlite3_bind_null(s_, i)); }
  // Empty text is stored as NULL.
  void BindOptText(int i, const std::string& v) {
    if (v.empty()) {
      BindNull(i);
    } else {
      Bind(i, v);
    }
  }
  // JSON null is stored as SQL NULL; anything else as its text.
  void BindJson(int i, const json& j) {
    if (j.is_null()) {
      BindNull(i);
    } else {
      Bind(i, JsonText(j));
    }
  }
  void BindOptInt(int i, const std::optional<int64_t>& v) {
    if (v) {
      Bind(i, *v);
    } else {
      BindNull(i);
    }
  }

  // SQLITE_ROW, SQLITE_DONE or an error code (a failed bind included).
  int Step() { return bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(s_); }
  // Steps a statement that returns no rows.
  int Exec() {
    int rc = Step();
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }

  bool IsNull(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t Int64(int c) const { return sqlite3_column_int64(s_, c); }
  int Int(int c) const { return sqlite3_column_int(s_, c); }
  std::optional<int64_t> OptInt64(int c) const {
    return IsNull(c) ? std::nullopt : std::optional<int64_t>(Int64(c));
  }
  std::string Text(int c) const {
    const unsigned char* p = sqlite3_column_text(s_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, c)))
             : std::string();
  }
  Status Json(int c, json* out) const {
    const unsigned char* p = sqlite3_column_text(s_, c);
    if (!p) {
      *out = nullptr;
      return Status::Ok();
    }
    const char* b = reinterpret_cast<const char*>(p);
    *out = json::parse(b, b + sqlite3_column_bytes(s_, c), nullptr, /*allow_exceptions=*/false);
    if (out->is_discarded()) {
      return Status::Internal(std::string("sqlite: column ") + sqlite3_column_name(s_, c) +
                              " holds invalid JSON");
    }
    return Status::Ok();
  }

  sqlite3* db() const { return db_; }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

Status CorruptStatus(const std::string& table, const std::string& value) {
  return Status::Internal("sqlite: " + table + ".status holds an unknown value '" + value + "'");
}

Status ReadWorkflow(const Stmt& st, Workflow* w) {
  w->id = st.Text(0);
  w->name = st.Text(1);
  w->description = st.Text(2);
  w->version = st.Int(3);
  w->latest_version = st.Int(4);
  AF_RETURN_IF_ERROR(st.Json(5, &w->plan));
  w->created_at = st.Int64(6);
  w->updated_at = st.Int64(7);
  return Status::Ok();
}

Status ReadRun(const Stmt& st, Run* r) {
  r->id = st.Text(0);
  r->workflow_id = st.Text(1);
  r->workflow_version = st.Int(2);
  std::string status = st.Text(3);
  auto parsed = ParseRunStatus(status);
  if (!parsed) return CorruptStatus("workflow_runs", status);
  r->status = *parsed;
  AF_RETURN_IF_ERROR(st.Json(4, &r->input));
  AF_RETURN_IF_ERROR(st.Json(5, &r->output));
  r->error_message = st.Text(6);
  r->idempotency_key = st.Text(7);
  r->cancel_requested = st.Int(8) != 0;
  r->cancelled_by = st.Text(9);
  r->cancel_reason = st.Text(10);
  r->attempt = st.Int(11);
  r->created_at = st.Int64(12);
  r->started_at = st.OptInt64(13);
  r->completed_at = st.OptInt64(14);
  r->updated_at = st.Int64(15);
  r->traceparent = st.Text(16);
  r->lease_owner = st.Text(17);
  r->lease_token = st.Int64(18);
  r->lease_expires_at = st.OptInt64(19);
  r->dispatched_at = st.OptInt64(20);
  return Status::Ok();
}

Status ReadStep(const Stmt& st, StepExecution* s) {
  s->id = st.Int64(0);
  s->run_id = st.Text(1);
  s->step_id = st.Text(2);
  s->item_index = st.IsNull(3) ? std::nullopt : std::optional<int>(st.Int(3));
  s->agent_name = st.Text(4);
  s->attempt = st.Int(5);
  std::string status = st.Text(6);
  auto parsed = ParseStepStatus(status);
  if (!parsed) return CorruptStatus("step_executions", status);
  s->status = *parsed;
  AF_RETURN_IF_ERROR(st.Json(7, &s->input));
  AF_RETURN_IF_ERROR(st.Json(8, &s->output));
  s->error_message = st.Text(9);
  s->started_at = st.Int64(10);
  s->completed_at = st.OptInt64(11);
  return Status::Ok();
}

Status ReadAgent(const Stmt& st, Agent* a) {
  a->name = st.Text(0);
  a->url = st.Text(1);
  a->timeout_ms = st.Int64(2);
  a->max_concurrency = st.Int(3);
  AF_RETURN_IF_ERROR(st.Json(4, &a->metadata));
  a->created_at = st.Int64(5);
  a->updated_at = st.Int64(6);
  auto transport = ParseAgentTransport(st.Text(7));
  if (!transport) return Status::Internal("agent '" + a->name + "' has an unknown transport '" + st.Text(7) + "'");
  a->transport = *transport;
  a->topic = st.Text(8);
  a->health_url = st.Text(9);
  a->health = ParseAgentHealth(st.Text(10)).value_or(AgentHealth::kUnknown);
  a->health_error = st.Text(11);
  a->last_seen_at = st.OptInt64(12);
  a->health_checked_at = st.OptInt64(13);
  return Status::Ok();
}

Status ReadApiKey(const Stmt& st, ApiKey* k) {
  k->id = st.Text(0);
  k->name = st.Text(1);
  auto role = ParseRole(st.Text(2));
  if (!role) return Status::Internal("sqlite: api_keys.role holds an unknown value '" + st.Text(2) + "'");
  k->role = *role;
  k->secret_hash = st.Text(3);
  k->created_at = st.Int64(4);
  k->last_used_at = st.OptInt64(5);
  k->revoked_at = st.OptInt64(6);
  return Status::Ok();
}

// ---- page tokens: base64url("<created_at>:<id>"), opaque to callers.

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Base64UrlEncode(const std::string& in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  uint32_t buf = 0;
  int bits = 0;
  for (unsigned char c : in) {
    buf = (buf << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kB64[(buf >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kB64[(buf << (6 - bits)) & 0x3f]);
  return out;
}

std::optional<std::string> Base64UrlDecode(const std::string& in) {
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = c ? std::strchr(kB64, c) : nullptr;
    if (!p) return std::nullopt;
    buf = (buf << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero padding of the last byte.
  if (bits >= 6 || (buf & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

struct Cursor {
  TimeMs created_at = std::numeric_limits<TimeMs>::max();
  std::string id;  // with created_at = max: before every real row
};

std::string EncodeCursor(TimeMs created_at, const std::string& id) {
  return Base64UrlEncode(std::to_string(created_at) + ":" + id);
}

Result<Cursor> DecodeCursor(const std::string& token) {
  Cursor c;
  if (token.empty()) return c;
  auto bad = [] {
    return Status::InvalidArgument("page_token is malformed",
                                   {{"hint", "pass the next_page_token of the previous page unchanged, or "
                                             "omit it for the first page"}});
  };
  auto raw = Base64UrlDecode(token);
  if (!raw) return bad();
  size_t colon = raw->find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == raw->size()) return bad();
  const char* b = raw->data();
  auto [end, ec] = std::from_chars(b, b + colon, c.created_at);
  if (ec != std::errc() || end != b + colon) return bad();
  c.id = raw->substr(colon + 1);
  return c;
}

int ClampLimit(int limit) { return std::clamp(limit, 1, kMaxPageSize); }

template <typename F>
auto Guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("storage: unexpected exception: ") + e.what());
  } catch (...) {
    return Status::Internal("storage: unexpected exception");
  }
}

// ---------------------------------------------------------------- the store

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path, bool full_sync);
  ~SqliteStore() override;

  Result<Workflow> CreateWorkflow(const NewWorkflow& w) override {
    return Locked([&] { return DoCreateWorkflow(w); });
  }
  Result<Workflow> UpdateWorkflow(const std::string& id, const NewWorkflow& w) override {
    return Locked([&] { return DoUpdateWorkflow(id, w); });
  }
  Result<Workflow> GetWorkflow(const std::string& id, std::optional<int> version) override {
    return Locked([&] { return DoGetWorkflow(id, version); });
  }
  Result<Workflow> GetWorkflowByName(const std::string& name) override {
    return Locked([&] { return DoGetWorkflowByName(name); });
  }
  Result<Page<Workflow>> ListWorkflows(int limit, const std::string& page_token) override {
    return Locked([&] { return DoListWorkflows(limit, page_token); });
  }
  Result<std::vector<Workflow>> ListWorkflowVersions(const std::string& id) override {
    return Locked([&] { return DoListWorkflowVersions(id); });
  }
  Status DeleteWorkflow(const std::string& id) override {
    return Locked([&] { return DoDeleteWorkflow(id); });
  }

  Result<CreatedRun> CreateRun(const NewRun& r) override {
    return Locked([&] { return DoCreateRun(r); });
  }
  std::vector<Result<CreatedRun>> CreateRuns(const std::vector<NewRun>& runs) override {
    auto res = Locked([&]() -> Result<std::vector<Result<CreatedRun>>> { return DoCreateRuns(runs); });
    if (!res.ok()) return std::vector<Result<CreatedRun>>(runs.size(), Result<CreatedRun>(res.status()));
    return std::move(res).value();
  }
  Result<Run> GetRun(const std::string& run_id) override {
    return Locked([&] { return DoGetRun(run_id); });
  }
  Result<Page<Run>> ListRuns(const RunFilter& f) override {
    return Locked([&] { return DoListRuns(f); });
  }
  Result<std::vector<Run>> ListUnfinishedRuns(int limit) override {
    return Locked([&] { return DoListUnfinishedRuns(limit); });
  }
  Result<std::vector<std::pair<std::string, RunStatus>>> GetRunStatuses(
      const std::vector<std::string>& run_ids) override {
    return Locked([&] { return DoGetRunStatuses(run_ids); });
  }
  Result<std::vector<StepProgress>> GetStepProgress(const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return std::vector<StepProgress>{};
    return Locked([&] { return DoGetStepProgress(run_ids); });
  }
  Result<std::vector<CancelRequest>> ListCancelRequests(const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return std::vector<CancelRequest>{};
    return Locked([&] { return DoListCancelRequests(run_ids); });
  }
  Result<Run> TransitionRun(const RunTransition& t) override {
    return Locked([&] { return DoTransitionRun(t); });
  }
  Result<Run> RequestCancel(const CancelRequest& c) override {
    return Locked([&] { return DoRequestCancel(c); });
  }

  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) override {
    return Locked([&] { return DoInsertStep(s, lease_token); });
  }
  Status FinishStep(const StepFinish& f) override {
    return Locked([&] { return DoFinishStep(f); });
  }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) override {
    return Locked([&] { return DoApplyRunWrites(w); });
  }
  // The group in one transaction (one WAL append and lock round), each batch
  // in a savepoint: a batch that fails leaves nothing and does not fail the
  // others, so each gets what ApplyRunWrites alone would answer.
  std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) override {
    if (group.size() <= 1) return Store::ApplyRunWritesGroup(group);
    using Results = std::vector<Result<RunWritesResult>>;
    auto res = Locked([&]() -> Result<Results> { return DoApplyRunWritesGroup(group); });
    if (res.ok()) return std::move(res).value();
    return Results(group.size(), res.status());
  }

  Result<std::vector<StepExecution>> ListSteps(const std::string& run_id) override {
    return Locked([&] { return DoListSteps(run_id); });
  }

  Result<Agent> CreateAgent(const Agent& a) override {
    return Locked([&] { return DoPutAgent(a, /*replace=*/false); });
  }
  Result<Agent> UpsertAgent(const Agent& a) override {
    return Locked([&] { return DoPutAgent(a, /*replace=*/true); });
  }
  Result<Agent> GetAgent(const std::string& name) override {
    return Locked([&] { return DoGetAgent(name); });
  }
  Result<std::vector<Agent>> ListAgents() override {
    return Locked([&] { return DoListAgents(); });
  }
  Status DeleteAgent(const std::string& name) override {
    return Locked([&] { return DoDeleteAgent(name); });
  }
  Status RecordAgentHealth(const AgentHealthUpdate& u) override {
    return Locked([&] { return DoRecordAgentHealth(u); });
  }
  Result<RunLease> AcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) override {
    return Locked([&] { return DoAcquireRunLease(run_id, owner, ttl_ms); });
  }
  Result<int64_t> RenewRunLeases(const std::string& owner, int64_t ttl_ms) override {
    return Locked([&]() -> Result<int64_t> {
      Stmt st = Use(kRenewLeases);
      st.Bind(1, owner);
      st.Bind(2, NowMs() + ttl_ms);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return Error(rc, "renew leases");
      return static_cast<int64_t>(sqlite3_changes(db_));
    });
  }
  Status ReleaseRunLease(const std::string& run_id, int64_t token) override {
    return Locked([&]() -> Status {
      Stmt st = Use(kReleaseLease);
      st.Bind(1, run_id);
      st.Bind(2, token);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return Error(rc, "release lease");
      return Status::Ok();
    });
  }
  Result<std::vector<Run>> ListStrandedRuns(int64_t older_than_ms, int limit) override {
    return Locked([&]() -> Result<std::vector<Run>> {
      Stmt st = Use(kListStranded);
      st.Bind(1, NowMs());
      st.Bind(2, older_than_ms);
      st.Bind(3, std::max(limit, 1));
      std::vector<Run> out;
      int rc;
      while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadRun(st, &out.emplace_back()));
      if (rc != SQLITE_DONE) return Error(rc, "list stranded runs");
      return out;
    });
  }
  Result<bool> RedispatchRun(const std::string& run_id, int64_t older_than_ms, const OutboxMessage& m) override {
    return Locked([&]() -> Result<bool> {
      TimeMs now = NowMs();
      Txn txn(this);
      AF_RETURN_IF_ERROR(txn.Begin());
      {
        Stmt st = Use(kRedispatch);
        st.Bind(1, now);
        st.Bind(2, older_than_ms);
        st.Bind(3, run_id);
        int rc = st.Exec();
        if (rc != SQLITE_OK) return Error(rc, "redispatch run");
        if (sqlite3_changes(db_) == 0) return false;
      }
      AF_RETURN_IF_ERROR(InsertOutbox(m, now));
      AF_RETURN_IF_ERROR(txn.Commit());
      return true;
    });
  }
  Result<std::vector<OutboxMessage>> ClaimOutbox(int limit, int64_t claim_ms) override {
    return Locked([&]() -> Result<std::vector<OutboxMessage>> {
      TimeMs now = NowMs();
      Stmt st = Use(kClaimOutbox);
      st.Bind(1, now);
      st.Bind(2, now + claim_ms);
      st.Bind(3, std::max(limit, 1));
      std::vector<OutboxMessage> out;
      int rc;
      while ((rc = st.Step()) == SQLITE_ROW) {
        OutboxMessage& m = out.emplace_back();
        m.id = st.Int64(0);
        m.topic = st.Text(1);
        m.key = st.Text(2);
        m.payload = st.Text(3);
        m.created_at = st.Int64(4);
        m.attempts = st.Int(5);
        m.last_error = st.Text(6);
      }
      if (rc != SQLITE_DONE) return Error(rc, "claim outbox");
      std::sort(out.begin(), out.end(), [](const OutboxMessage& a, const OutboxMessage& b) { return a.id < b.id; });
      return out;
    });
  }
  Status DeleteOutbox(const std::vector<int64_t>& ids) override {
    if (ids.empty()) return Status::Ok();
    return Locked([&]() -> Status {
      Stmt st = Use(kDeleteOutbox);
      st.Bind(1, json(ids).dump());
      int rc = st.Exec();
      if (rc != SQLITE_OK) return Error(rc, "delete outbox");
      return Status::Ok();
    });
  }
  Status DeferOutbox(const std::vector<int64_t>& ids, const std::string& error, int64_t retry_ms) override {
    if (ids.empty()) return Status::Ok();
    return Locked([&]() -> Status {
      Stmt st = Use(kDeferOutbox);
      st.Bind(1, json(ids).dump());
      st.BindOptText(2, error);
      st.Bind(3, NowMs() + retry_ms);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return Error(rc, "defer outbox");
      return Status::Ok();
    });
  }
  bool SetOutboxListener(OutboxListener listener, int64_t claim_ms) override {
    std::lock_guard<std::mutex> lock(mu_);  // listeners run under mu_: none is running now
    outbox_listener_ = std::move(listener);
    outbox_claim_ms_ = std::max<int64_t>(claim_ms, 0);
    return true;
  }
  Result<OutboxStats> GetOutboxStats() override {
    return Locked([&]() -> Result<OutboxStats> {
      Stmt st = Use(kOutboxStats);
      int rc = st.Step();
      if (rc != SQLITE_ROW) return Error(rc, "outbox stats");
      OutboxStats out;
      out.messages = st.Int64(0);
      out.oldest_created_at = st.OptInt64(1);
      return out;
    });
  }
  Result<ApiKey> CreateApiKey(const ApiKey& k) override {
    return Locked([&] { return DoCreateApiKey(k); });
  }
  Result<ApiKey> GetApiKey(const std::string& id) override {
    return Locked([&] { return DoGetApiKey(id); });
  }
  Result<std::vector<ApiKey>> ListApiKeys() override {
    return Locked([&] { return DoListApiKeys(); });
  }
  Result<ApiKey> RevokeApiKey(const std::string& id) override {
    return Locked([&] { return DoRevokeApiKey(id); });
  }
  Status RecordApiKeyUse(const std::string& id, TimeMs at) override {
    return Locked([&] { return DoRecordApiKeyUse(id, at); });
  }
  Status Ping() override {
    return Locked([&]() -> Status {
      Stmt st = Use(kPing);
      int rc = st.Step();
      if (rc != SQLITE_ROW) return Error(rc, "ping");
      return Status::Ok();
    });
  }

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}

  template <typename F>
  auto Locked(F&& f) -> decltype(f()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto out = Guarded(std::forward<F>(f));
    NotifyCommittedOutbox();
    return out;
  }

  Stmt Use(Sql s) { return Stmt(db_, stmts_[s]); }
  Status Error(int rc, const std::string& what) { return SqliteError(db_, rc, what); }

  // A BEGIN IMMEDIATE transaction, rolled back unless committed.
  class Txn {
   public:
    explicit Txn(SqliteStore* store) : store_(store) {}
    ~Txn() {
      if (began_ && !committed_ && !sqlite3_get_autocommit(store_->db_)) {
        Stmt st = store_->Use(kRollback);
        (void)st.Exec();
      }
      if (began_ && !committed_) store_->outbox_written_.clear();  // rolled back: never written
    }
    Status Begin() {
      Stmt st = store_->Use(kBegin);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return store_->Error(rc, "begin transaction");
      began_ = true;
      return Status::Ok();
    }
    Status Commit() {
      Stmt st = store_->Use(kCommit);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return store_->Error(rc, "commit");
      committed_ = true;
      return Status::Ok();
    }

   private:
    SqliteStore* store_;
    bool began_ = false;
    bool committed_ = false;
  };

  // ---- workflows

  Status NameTaken(const std::string& name) {
    return Status::AlreadyExists("a workflow named '" + name +
                                 "' already exists. Hint: choose another name, or update that workflow");
  }

  Status InsertVersion(const std::string& id, int version, const NewWorkflow& w, TimeMs now) {
    Stmt st = Use(kInsertWorkflowVersion);
    st.Bind(1, id);
    st.Bind(2, version);
    st.Bind(3, w.name);
    st.Bind(4, w.description);
    st.Bind(5, JsonText(w.plan));  // NOT NULL: a null plan is stored as "null"
    st.Bind(6, now);
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "insert workflow version");
    return Status::Ok();
  }

  Result<Workflow> DoCreateWorkflow(const NewWorkflow& w) {
    Workflow out;
    out.id = NewWorkflowId();
    out.name = w.name;
    out.description = w.description;
    out.version = out.latest_version = 1;
    out.plan = w.plan;
    out.created_at = out.updated_at = NowMs();
    Txn txn(this);
    AF_RETURN_IF_ERROR(txn.Begin());
    {
      Stmt st = Use(kInsertWorkflow);
      st.Bind(1, out.id);
      st.Bind(2, w.name);
      st.Bind(3, w.description);
      st.Bind(4, out.created_at);
      int rc = st.Exec();
      if (IsUniqueViolation(rc)) return NameTaken(w.name);
      if (rc != SQLITE_OK) return Error(rc, "insert workflow");
    }
    AF_RETURN_IF_ERROR(InsertVersion(out.id, 1, w, out.created_at));
    AF_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  Result<Workflow> DoUpdateWorkflow(const std::string& id, const NewWorkflow& w) {
    Workflow out;
    out.id = id;
    out.name = w.name;
    out.description = w.description;
    out.plan = w.plan;
    out.updated_at = NowMs();
    Txn txn(this);
    AF_RETURN_IF_ERROR(txn.Begin());
    {
      Stmt st = Use(kBumpWorkflow);
      st.Bind(1, id);
      st.Bind(2, w.name);
      st.Bind(3, w.description);
      st.Bind(4, out.updated_at);
      int rc = st.Step();
      if (IsUniqueViolation(rc)) return NameTaken(w.name);
      if (rc == SQLITE_DONE) return WorkflowNotFound(id);
      if (rc != SQLITE_ROW) return Error(rc, "update workflow");
      out.version = out.latest_version = st.Int(0);
      out.created_at = st.Int64(1);
      rc = st.Step();
      if (rc != SQLITE_DONE) return Error(rc, "update workflow");
    }
    AF_RETURN_IF_ERROR(InsertVersion(id, out.version, w, out.updated_at));
    AF_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  static Status WorkflowNotFound(const std::string& id) {
    return Status::NotFound("workflow " + id + " does not exist. Hint: list workflows to find its id");
  }

  // Reads at most one workflow row from a bound statement.
  Result<Workflow> OneWorkflow(Stmt& st, const std::string& not_found_what) {
    int rc = st.Step();
    if (rc == SQLITE_DONE) {
      return Status::NotFound(not_found_what + " does not exist. Hint: list workflows to find it");
    }
    if (rc != SQLITE_ROW) return Error(rc, "read workflow");
    Workflow w;
    AF_RETURN_IF_ERROR(ReadWorkflow(st, &w));
    return w;
  }

  Result<Workflow> DoGetWorkflow(const std::string& id, std::optional<int> version) {
    if (version) {
      Stmt st = Use(kGetWorkflowVersion);
      st.Bind(1, id);
      st.Bind(2, *version);
      return OneWorkflow(st, "workflow " + id + " version " + std::to_string(*version));
    }
    Stmt st = Use(kGetWorkflowLatest);
    st.Bind(1, id);
    return OneWorkflow(st, "workflow " + id);
  }

  Result<Workflow> DoGetWorkflowByName(const std::string& name) {
    Stmt st = Use(kGetWorkflowByName);
    st.Bind(1, name);
    return OneWorkflow(st, "a workflow named '" + name + "'");
  }

  Result<Page<Workflow>> DoListWorkflows(int limit, const std::string& page_token) {
    auto cursor = DecodeCursor(page_token);
    if (!cursor.ok()) return cursor.status();
    limit = ClampLimit(limit);
    Stmt st = Use(kListWorkflows);
    st.Bind(1, cursor->created_at);
    st.Bind(2, cursor->id);
    st.Bind(3, limit + 1);  // one more tells whether another page follows
    Page<Workflow> page;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      if (static_cast<int>(page.items.size()) == limit) {
        const Workflow& last = page.items.back();
        page.next_page_token = EncodeCursor(last.created_at, last.id);
        break;
      }
      AF_RETURN_IF_ERROR(ReadWorkflow(st, &page.items.emplace_back()));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(rc, "list workflows");
    return page;
  }

  Result<std::vector<Workflow>> DoListWorkflowVersions(const std::string& id) {
    Stmt st = Use(kListWorkflowVersions);
    st.Bind(1, id);
    std::vector<Workflow> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadWorkflow(st, &out.emplace_back()));
    if (rc != SQLITE_DONE) return Error(rc, "list workflow versions");
    if (out.empty()) return WorkflowNotFound(id);
    return out;
  }

  Status DoDeleteWorkflow(const std::string& id) {
    Stmt st = Use(kDeleteWorkflow);
    st.Bind(1, id);
    st.Bind(2, NowMs());
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "delete workflow");
    if (sqlite3_changes(db_) == 0) return WorkflowNotFound(id);
    return Status::Ok();
  }

  // ---- runs

  static Status RunNotFound(const std::string& id) {
    return Status::NotFound("run " + id + " does not exist. Hint: list runs to find its id");
  }

  // Reads at most one run row from a bound statement (SELECT or RETURNING)
  // and steps it to completion. *found = false when there was no row.
  Status OneRun(Stmt& st, const char* what, Run* out, bool* found) {
    int rc = st.Step();
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW) {
      AF_RETURN_IF_ERROR(ReadRun(st, out));
      rc = st.Step();
    }
    if (rc != SQLITE_DONE) return Error(rc, what);
    return Status::Ok();
  }

  // The current status of a run, for explaining a failed compare-and-set.
  Result<RunStatus> CurrentRunStatus(const std::string& id) {
    Stmt st = Use(kGetRunStatus);
    st.Bind(1, id);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return RunNotFound(id);
    if (rc != SQLITE_ROW) return Error(rc, "read run status");
    std::string text = st.Text(0);
    auto s = ParseRunStatus(text);
    if (!s) return CorruptStatus("workflow_runs", text);
    return *s;
  }

  Result<CreatedRun> DoCreateRun(const NewRun& r) {
    // Without a dispatch no explicit transaction: the INSERT is atomic and,
    // with a key already used, inserts nothing; rows are never deleted, so
    // the existing run is still there for the SELECT. Racing creators
    // (threads or processes) are serialized by the unique index: exactly one
    // inserts. With a dispatch, the run and its outbox message commit together.
    Txn txn(this);
    if (r.dispatch) AF_RETURN_IF_ERROR(txn.Begin());
    auto res = InsertRun(r, r.id.empty() ? NewRunId() : r.id, NowMs());
    if (res.ok() && res->created && r.dispatch) AF_RETURN_IF_ERROR(txn.Commit());
    return res;
  }

  // Every run in one transaction, each in a savepoint so that one that fails
  // leaves no row and does not fail the others.
  std::vector<Result<CreatedRun>> DoCreateRuns(const std::vector<NewRun>& runs) {
    std::vector<Result<CreatedRun>> out;
    out.reserve(runs.size());
    auto all = [&](const Status& s) {
      out.assign(runs.size(), Result<CreatedRun>(s));
      return out;
    };
    Txn txn(this);
    Status begun = txn.Begin();
    if (!begun.ok()) return all(begun);
    for (const NewRun& r : runs) {
      int rc = sqlite3_exec(db_, "SAVEPOINT create_run", nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) return all(Error(rc, "savepoint"));
      const TimeMs now = NowMs();
      auto res = InsertRun(r, r.id.empty() ? NewRunId() : r.id, now);
      rc = sqlite3_exec(db_, res.ok() ? "RELEASE create_run" : "ROLLBACK TO create_run; RELEASE create_run",
                        nullptr, nullptr, nullptr);
      if (rc != SQLITE_OK) return all(Error(rc, "savepoint"));
      out.push_back(std::move(res));
    }
    Status committed = txn.Commit();
    if (!committed.ok()) return all(committed);
    return out;
  }

  // The rows of CreateRun (run, outbox message) without a transaction of
  // their own; `id` and `now` are the run's id and created_at.
  Result<CreatedRun> InsertRun(const NewRun& r, const std::string& id, TimeMs now) {
    CreatedRun out;
    Run& run = out.run;
    run.id = id;
    run.workflow_id = r.workflow_id;
    run.workflow_version = r.workflow_version;
    run.status = RunStatus::kPending;
    run.input = r.input;
    run.idempotency_key = r.idempotency_key;
    run.traceparent = r.traceparent;
    run.attempt = 1;
    run.created_at = run.updated_at = now;
    {
      Stmt st = Use(kInsertRun);
      st.Bind(1, run.id);
      st.Bind(2, run.workflow_id);
      st.Bind(3, run.workflow_version);
      st.BindJson(4, run.input);
      st.BindOptText(5, run.idempotency_key);
      st.Bind(6, run.created_at);
      st.BindOptText(7, run.traceparent);
      if (r.dispatch) {
        st.Bind(8, run.created_at);
        run.dispatched_at = run.created_at;
      } else {
        st.BindNull(8);
      }
      int rc = st.Exec();
      if (IsUniqueViolation(rc)) {
        return Status::AlreadyExists("a run with id " + run.id + " already exists. Hint: omit the id to get a new one");
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return Status::NotFound("workflow " + run.workflow_id + " has no version " +
                                std::to_string(run.workflow_version) + ". Hint: create the workflow first");
      }
      if (rc != SQLITE_OK) return Error(rc, "insert run");
      if (sqlite3_changes(db_) == 1) {
        if (r.dispatch) AF_RETURN_IF_ERROR(InsertOutbox(*r.dispatch, run.created_at));
        return out;
      }
    }
    run.dispatched_at.reset();
    Stmt st = Use(kGetRunByKey);
    st.Bind(1, run.workflow_id);
    st.Bind(2, run.idempotency_key);
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(st, "read run by idempotency key", &out.run, &found));
    if (!found) return Status::Internal("sqlite: run insert ignored but no run has its idempotency key");
    out.created = false;
    return out;
  }

  Result<Run> DoGetRun(const std::string& id) {
    Stmt st = Use(kGetRun);
    st.Bind(1, id);
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(st, "read run", &run, &found));
    if (!found) return RunNotFound(id);
    return run;
  }

  Result<Page<Run>> DoListRuns(const RunFilter& f) {
    auto cursor = DecodeCursor(f.page_token);
    if (!cursor.ok()) return cursor.status();
    int limit = ClampLimit(f.limit);
    Sql which = f.workflow_id.empty() ? (f.status ? kListRunsByStatus : kListRuns)
                                      : (f.status ? kListRunsByWorkflowAndStatus : kListRunsByWorkflow);
    Stmt st = Use(which);
    st.Bind(1, cursor->created_at);
    st.Bind(2, cursor->id);
    if (!f.workflow_id.empty()) st.Bind(3, f.workflow_id);
    if (f.status) st.Bind(4, ToString(*f.status));
    st.Bind(5, limit + 1);  // one more tells whether another page follows
    Page<Run> page;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      if (static_cast<int>(page.items.size()) == limit) {
        const Run& last = page.items.back();
        page.next_page_token = EncodeCursor(last.created_at, last.id);
        break;
      }
      AF_RETURN_IF_ERROR(ReadRun(st, &page.items.emplace_back()));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(rc, "list runs");
    return page;
  }

  Result<std::vector<Run>> DoListUnfinishedRuns(int limit) {
    Stmt st = Use(kListUnfinishedRuns);
    st.Bind(1, std::max(limit, 1));
    std::vector<Run> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadRun(st, &out.emplace_back()));
    if (rc != SQLITE_DONE) return Error(rc, "list unfinished runs");
    return out;
  }

  Result<std::vector<CancelRequest>> DoListCancelRequests(const std::vector<std::string>& run_ids) {
    Stmt st = Use(kListCancelRequests);
    st.Bind(1, json(run_ids).dump());
    std::vector<CancelRequest> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      out.push_back(CancelRequest{st.Text(0), st.IsNull(1) ? "" : st.Text(1), st.IsNull(2) ? "" : st.Text(2)});
    }
    if (rc != SQLITE_DONE) return Error(rc, "list cancel requests");
    return out;
  }

  Result<std::vector<std::pair<std::string, RunStatus>>> DoGetRunStatuses(const std::vector<std::string>& run_ids) {
    Stmt st = Use(kGetRunStatuses);
    st.Bind(1, json(run_ids).dump());
    std::vector<std::pair<std::string, RunStatus>> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      std::string status = st.Text(1);
      auto parsed = ParseRunStatus(status);
      if (!parsed) return CorruptStatus("workflow_runs", status);
      out.emplace_back(st.Text(0), *parsed);
    }
    if (rc != SQLITE_DONE) return Error(rc, "read run statuses");
    return out;
  }

  Result<std::vector<StepProgress>> DoGetStepProgress(const std::vector<std::string>& run_ids) {
    Stmt st = Use(kGetStepProgress);
    st.Bind(1, json(run_ids).dump());
    std::vector<StepProgress> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out.push_back({st.Text(0), st.Int64(1), st.Int64(2)});
    if (rc != SQLITE_DONE) return Error(rc, "read step progress");
    return out;
  }

  Status InsertOutbox(const OutboxMessage& m, TimeMs now) {
    Stmt st = Use(kInsertOutbox);
    st.Bind(1, m.topic);
    st.Bind(2, m.key);
    st.Bind(3, m.payload);
    st.Bind(4, now);
    st.Bind(5, outbox_listener_ ? outbox_claim_ms_ : int64_t{0});
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "insert outbox message");
    if (outbox_listener_) {
      OutboxMessage& w = outbox_written_.emplace_back(m);
      w.id = sqlite3_last_insert_rowid(db_);
      w.created_at = now;
    }
    return Status::Ok();
  }

  // The writer's fast path (SetOutboxListener): hands over the messages
  // InsertOutbox wrote once no transaction is open any more (committed; a
  // rollback cleared them in ~Txn). With mu_ held.
  void NotifyCommittedOutbox() {
    if (outbox_written_.empty() || !sqlite3_get_autocommit(db_)) return;
    std::vector<OutboxMessage> written;
    written.swap(outbox_written_);
    if (!outbox_listener_) return;
    for (const OutboxMessage& m : written) outbox_listener_(m);
  }

  static Status LeaseLost(const std::string& run_id, int64_t token) {
    return Status::Aborted("run " + run_id + ": lease token " + std::to_string(token) +
                               " is no longer current; another executor took the run over",
                           {{"lease_token", token}});
  }

  Result<Run> DoTransitionRun(const RunTransition& t) {
    AF_RETURN_IF_ERROR(CheckTransition(t.from, t.to));
    TimeMs now = NowMs();
    Txn txn(this);
    if (t.dispatch) AF_RETURN_IF_ERROR(txn.Begin());
    Run run;
    bool found = false;
    {
      Stmt st = Use(kTransitionRun);
      st.Bind(1, t.run_id);
      st.Bind(2, ToString(t.from));
      st.Bind(3, ToString(t.to));
      st.Bind(4, now);
      st.Bind(5, t.to == RunStatus::kRunning);
      st.Bind(6, IsTerminal(t.to));
      st.Bind(7, t.to == RunStatus::kPending);
      st.Bind(8, t.output.has_value());
      if (t.output) st.BindJson(9, *t.output);
      st.Bind(10, t.error_message.has_value());
      if (t.error_message) st.BindOptText(11, *t.error_message);
      st.Bind(12, t.input.has_value());
      if (t.input) st.BindJson(13, *t.input);
      st.Bind(14, t.lease_token);
      st.Bind(15, t.dispatch.has_value());
      AF_RETURN_IF_ERROR(OneRun(st, "transition run", &run, &found));
    }
    if (found) {
      if (t.dispatch) {
        AF_RETURN_IF_ERROR(InsertOutbox(*t.dispatch, now));
        AF_RETURN_IF_ERROR(txn.Commit());
      }
      return run;
    }
    // The compare-and-set matched nothing: say why.
    auto current = CurrentRunStatus(t.run_id);
    if (!current.ok()) return current.status();
    if (*current == t.from && t.lease_token != 0) return LeaseLost(t.run_id, t.lease_token);
    return Status::FailedPrecondition(
        "run " + t.run_id + " is " + ToString(*current) + ", not " + ToString(t.from) +
            ". Hint: another writer changed it; read the run again",
        {{"current", ToString(*current)}, {"expected", ToString(t.from)}, {"to", ToString(t.to)}});
  }

  Result<Run> DoRequestCancel(const CancelRequest& c) {
    Stmt st = Use(kRequestCancel);
    st.Bind(1, c.run_id);
    st.BindOptText(2, c.cancelled_by);
    st.BindOptText(3, c.reason);
    st.Bind(4, NowMs());
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(st, "request cancel", &run, &found));
    if (found) return run;
    auto current = CurrentRunStatus(c.run_id);
    if (!current.ok()) return current.status();
    return Status::FailedPrecondition(
        "run " + c.run_id + " already finished as " + ToString(*current) + "; there is nothing to cancel",
        {{"current", ToString(*current)}});
  }

  // ---- step executions

  Result<int64_t> DoInsertStep(const StepExecution& s, int64_t lease_token) {
    AF_RETURN_IF_ERROR(CheckTransition(std::nullopt, s.status));
    TimeMs now = NowMs();
    Stmt st = Use(kInsertStep);
    st.Bind(1, s.run_id);
    st.Bind(2, s.step_id);
    if (s.item_index) {
      st.Bind(3, *s.item_index);
    } else {
      st.BindNull(3);
    }
    st.Bind(4, s.agent_name);
    st.Bind(5, s.attempt);
    st.Bind(6, ToString(s.status));
    st.BindJson(7, s.input);
    st.BindJson(8, s.output);
    st.BindOptText(9, s.error_message);
    st.Bind(10, s.started_at != 0 ? s.started_at : now);
    if (IsTerminal(s.status)) {
      st.Bind(11, s.completed_at.value_or(now));
    } else {
      st.BindNull(11);
    }
    st.Bind(12, lease_token);
    int rc = st.Exec();
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return RunNotFound(s.run_id);
    if (rc != SQLITE_OK) return Error(rc, "insert step execution");
    if (sqlite3_changes(db_) == 0) {
      // Fenced off (or no such run).
      auto current = CurrentRunStatus(s.run_id);
      if (!current.ok()) return current.status();
      return LeaseLost(s.run_id, lease_token);
    }
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  Result<std::vector<Result<RunWritesResult>>> DoApplyRunWritesGroup(const std::vector<const RunWrites*>& group) {
    std::vector<Result<RunWritesResult>> out;
    out.reserve(group.size());
    Txn txn(this);
    AF_RETURN_IF_ERROR(txn.Begin());
    for (const RunWrites* w : group) {
      int rc = Use(kSavepointBatch).Exec();
      if (rc != SQLITE_OK) return Error(rc, "savepoint");
      Result<RunWritesResult> r = DoApplyRunWrites(*w, /*in_transaction=*/true);
      if (!r.ok()) {
        rc = Use(kRollbackBatch).Exec();
        if (rc != SQLITE_OK) return Error(rc, "rollback to savepoint");
      }
      rc = Use(kReleaseBatch).Exec();
      if (rc != SQLITE_OK) return Error(rc, "release savepoint");
      out.push_back(std::move(r));
    }
    AF_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  // Inside a transaction already (a group's savepoint), the batch opens none.
  Result<RunWritesResult> DoApplyRunWrites(const RunWrites& w, bool in_transaction = false) {
    RunWritesResult out;
    out.step_ids.assign(w.ops.size(), 0);
    AF_RETURN_IF_ERROR(CheckRunWrites(w));
    Txn txn(this);
    const bool own = !in_transaction && w.ops.size() > 1;
    if (own) AF_RETURN_IF_ERROR(txn.Begin());
    for (size_t i = 0; i < w.ops.size(); ++i) {
      const RunWrite& op = w.ops[i];
      switch (op.kind) {
        case RunWrite::Kind::kInsertStep: {
          auto id = DoInsertStep(op.insert, w.lease_token);
          if (!id.ok()) return WithOpIndex(id.status(), i);
          out.step_ids[i] = *id;
          break;
        }
        case RunWrite::Kind::kFinishStep: {
          StepFinish f = op.finish;
          f.lease_token = w.lease_token;
          Status st = DoFinishStep(f);
          if (!st.ok()) return WithOpIndex(st, i);
          break;
        }
        case RunWrite::Kind::kTransition: {
          RunTransition t = op.transition;
          t.lease_token = w.lease_token;
          auto run = DoTransitionRun(t);
          if (!run.ok()) return WithOpIndex(run.status(), i);
          out.run = std::move(run).value();
          break;
        }
        case RunWrite::Kind::kStart: {
          auto run = DoStartRun(op.start);
          if (!run.ok()) return WithOpIndex(run.status(), i);
          out.run = std::move(run).value();
          break;
        }
      }
    }
    if (own) AF_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  Status DoFinishStep(const StepFinish& f) {
    AF_RETURN_IF_ERROR(CheckTransition(StepStatus::kRunning, f.to));
    {
      Stmt st = Use(kFinishStep);
      st.Bind(1, f.id);
      st.Bind(2, f.run_id);
      st.Bind(3, ToString(f.to));
      st.BindJson(4, f.output);
      st.BindOptText(5, f.error_message);
      st.Bind(6, NowMs());
      st.Bind(7, f.lease_token);
      int rc = st.Exec();
      if (rc != SQLITE_OK) return Error(rc, "finish step execution");
      if (sqlite3_changes(db_) == 1) return Status::Ok();
    }
    Stmt st = Use(kGetStepStatus);
    st.Bind(1, f.id);
    st.Bind(2, f.run_id);
    int rc = st.Step();
    if (rc == SQLITE_DONE) {
      return Status::NotFound("run " + f.run_id + " has no step execution " + std::to_string(f.id));
    }
    if (rc != SQLITE_ROW) return Error(rc, "read step execution status");
    std::string current = st.Text(0);
    if (current == "RUNNING" && f.lease_token != 0) return LeaseLost(f.run_id, f.lease_token);
    return Status::FailedPrecondition("step execution " + std::to_string(f.id) + " is already " + current +
                                          ", not RUNNING",
                                      {{"current", current}, {"expected", "RUNNING"}, {"to", ToString(f.to)}});
  }

  Result<Run> DoStartRun(const RunStart& s) {
    Stmt st = Use(kStartRun);
    st.Bind(1, s.run_id);
    st.Bind(2, s.owner);
    st.Bind(3, NowMs());
    st.Bind(4, s.ttl_ms);
    st.BindJson(5, s.input);
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(st, "start run", &run, &found));
    if (!found) return StartRefused(s.run_id);
    return run;
  }

  Result<RunLease> DoAcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) {
    TimeMs now = NowMs();
    {
      Stmt st = Use(kAcquireLease);
      st.Bind(1, run_id);
      st.Bind(2, owner);
      st.Bind(3, now);
      st.Bind(4, ttl_ms);
      int rc = st.Step();
      if (rc == SQLITE_ROW) {
        RunLease lease{run_id, owner, 0, 0, {}};
        AF_RETURN_IF_ERROR(ReadRun(st, &lease.run));
        lease.token = lease.run.lease_token;
        lease.expires_at = lease.run.lease_expires_at.value_or(0);
        rc = st.Step();
        if (rc != SQLITE_DONE) return Error(rc, "acquire lease");
        return lease;
      }
      if (rc != SQLITE_DONE) return Error(rc, "acquire lease");
    }
    Stmt st = Use(kGetLeaseState);
    st.Bind(1, run_id);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return RunNotFound(run_id);
    if (rc != SQLITE_ROW) return Error(rc, "read lease");
    std::string status = st.Text(0);
    auto parsed = ParseRunStatus(status);
    if (!parsed) return CorruptStatus("workflow_runs", status);
    if (IsTerminal(*parsed)) {
      return Status::FailedPrecondition("run " + run_id + " already finished as " + status, {{"current", status}});
    }
    return LeaseHeld(run_id, st.Text(1), st.OptInt64(2).value_or(now) - now);
  }

  static Status LeaseHeld(const std::string& run_id, const std::string& holder, int64_t left_ms) {
    left_ms = std::max<int64_t>(left_ms, 0);
    return Status::Aborted("run " + run_id + " is being executed by " + holder + " (lease for another " +
                               std::to_string(left_ms) + " ms)",
                           {{"lease_owner", holder}, {"retry_after_ms", left_ms}});
  }

  Result<std::vector<StepExecution>> DoListSteps(const std::string& run_id) {
    Stmt st = Use(kListSteps);
    st.Bind(1, run_id);
    std::vector<StepExecution> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadStep(st, &out.emplace_back()));
    if (rc != SQLITE_DONE) return Error(rc, "list step executions");
    return out;
  }

  // ---- agents

  static Status AgentNotFound(const std::string& name) {
    return Status::NotFound("agent '" + name + "' is not registered. Hint: list agents to see the names");
  }

  Result<Agent> DoPutAgent(const Agent& a, bool replace) {
    Agent out = a;
    out.created_at = out.updated_at = NowMs();
    out.health = AgentHealth::kUnknown;
    out.health_error.clear();
    out.last_seen_at.reset();
    out.health_checked_at.reset();
    Stmt st = Use(replace ? kUpsertAgent : kInsertAgent);
    st.Bind(1, a.name);
    st.Bind(2, a.url);
    st.Bind(3, a.timeout_ms);
    st.Bind(4, a.max_concurrency);
    st.BindJson(5, a.metadata);
    st.Bind(6, out.created_at);
    st.Bind(7, ToString(a.transport));
    st.BindOptText(8, a.topic);
    st.BindOptText(9, a.health_url);
    int rc = st.Step();
    if (!replace && IsUniqueViolation(rc)) {
      return Status::AlreadyExists("agent '" + a.name +
                                   "' is already registered. Hint: update it instead, or choose another name");
    }
    if (rc == SQLITE_ROW) {  // upsert: RETURNING the row (created_at and health kept on replace)
      AF_RETURN_IF_ERROR(ReadAgent(st, &out));
      rc = st.Step();
    }
    if (rc != SQLITE_DONE) return Error(rc, replace ? "upsert agent" : "insert agent");
    return out;
  }

  Result<Agent> DoGetAgent(const std::string& name) {
    Stmt st = Use(kGetAgent);
    st.Bind(1, name);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return AgentNotFound(name);
    if (rc != SQLITE_ROW) return Error(rc, "read agent");
    Agent a;
    AF_RETURN_IF_ERROR(ReadAgent(st, &a));
    return a;
  }

  Result<std::vector<Agent>> DoListAgents() {
    Stmt st = Use(kListAgents);
    std::vector<Agent> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadAgent(st, &out.emplace_back()));
    if (rc != SQLITE_DONE) return Error(rc, "list agents");
    return out;
  }

  Status DoDeleteAgent(const std::string& name) {
    Stmt st = Use(kDeleteAgent);
    st.Bind(1, name);
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "delete agent");
    if (sqlite3_changes(db_) == 0) return AgentNotFound(name);
    return Status::Ok();
  }

  Status DoRecordAgentHealth(const AgentHealthUpdate& u) {
    Stmt st = Use(kRecordAgentHealth);
    st.Bind(1, u.name);
    st.Bind(2, ToString(u.health));
    st.BindOptText(3, u.health == AgentHealth::kUnhealthy ? u.error : std::string());
    st.Bind(4, static_cast<int64_t>(u.at));
    st.Bind(5, u.health == AgentHealth::kHealthy);
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "record agent health");
    if (sqlite3_changes(db_) == 0) return AgentNotFound(u.name);
    return Status::Ok();
  }

  // ---- API keys

  static Status ApiKeyNotFound(const std::string& id) {
    return Status::NotFound("API key " + id + " does not exist. Hint: 'agentflow apikey list' shows the keys");
  }

  Result<ApiKey> DoCreateApiKey(const ApiKey& k) {
    ApiKey out = k;
    out.created_at = NowMs();
    out.last_used_at.reset();
    out.revoked_at.reset();
    Stmt st = Use(kInsertApiKey);
    st.Bind(1, k.id);
    st.Bind(2, k.name);
    st.Bind(3, ToString(k.role));
    st.Bind(4, k.secret_hash);
    st.Bind(5, static_cast<int64_t>(out.created_at));
    int rc = st.Exec();
    if (IsUniqueViolation(rc)) return Status::AlreadyExists("API key " + k.id + " already exists");
    if (rc != SQLITE_OK) return Error(rc, "insert API key");
    return out;
  }

  Result<ApiKey> DoGetApiKey(const std::string& id) {
    Stmt st = Use(kGetApiKey);
    st.Bind(1, id);
    int rc = st.Step();
    if (rc == SQLITE_DONE) return ApiKeyNotFound(id);
    if (rc != SQLITE_ROW) return Error(rc, "read API key");
    ApiKey k;
    AF_RETURN_IF_ERROR(ReadApiKey(st, &k));
    return k;
  }

  Result<std::vector<ApiKey>> DoListApiKeys() {
    Stmt st = Use(kListApiKeys);
    std::vector<ApiKey> out;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) AF_RETURN_IF_ERROR(ReadApiKey(st, &out.emplace_back()));
    if (rc != SQLITE_DONE) return Error(rc, "list API keys");
    return out;
  }

  Result<ApiKey> DoRevokeApiKey(const std::string& id) {
    Stmt st = Use(kRevokeApiKey);
    st.Bind(1, id);
    st.Bind(2, static_cast<int64_t>(NowMs()));
    int rc = st.Step();
    if (rc == SQLITE_DONE) return ApiKeyNotFound(id);
    if (rc != SQLITE_ROW) return Error(rc, "revoke API key");
    ApiKey k;
    AF_RETURN_IF_ERROR(ReadApiKey(st, &k));
    // Finish the statement so the UPDATE ... RETURNING commits now.
    rc = st.Step();
    if (rc != SQLITE_DONE) return Error(rc, "revoke API key");
    return k;
  }

  Status DoRecordApiKeyUse(const std::string& id, TimeMs at) {
    Stmt st = Use(kRecordApiKeyUse);
    st.Bind(1, id);
    st.Bind(2, static_cast<int64_t>(at));
    int rc = st.Exec();
    if (rc != SQLITE_OK) return Error(rc, "record API key use");
    if (sqlite3_changes(db_) == 0) return ApiKeyNotFound(id);
    return Status::Ok();
  }

  std::mutex mu_;  // guards db_ and stmts_ (the connection is NOMUTEX), and the three below
  OutboxListener outbox_listener_;              // the writer's fast path; empty: off
  int64_t outbox_claim_ms_ = 0;
  std::vector<OutboxMessage> outbox_written_;   // by InsertOutbox, not yet handed over
  sqlite3* db_;
  std::array<sqlite3_stmt*, kSqlCount> stmts_{};
  std::unique_ptr<sqlite::WalCheckpointer> checkpointer_;  // a file's: its checkpoints, off the commits
};

SqliteStore::~SqliteStore() {
  checkpointer_.reset();  // before db_ closes
  for (sqlite3_stmt* s : stmts_) sqlite3_finalize(s);
  sqlite3_close_v2(db_);
}

// Runs a PRAGMA and returns its first column (if any).
Result<std::string> Pragma(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, sql);
  std::string value;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (value.empty() && sqlite3_column_text(st, 0)) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return SqliteError(db, rc, sql);
  return value;
}

// Switching a new database to WAL needs it to itself, and SQLite answers
// SQLITE_BUSY at once, without the busy handler, to a connection that holds
// a shared lock while another one switches it (deadlock avoidance): several
// processes opening a fresh database together (serve starting while
// `agentflow apikey create` runs) saw "database is locked". Retried here
// within the busy timeout.
Result<std::string> PragmaRetryingBusy(sqlite3* db, const std::string& sql) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBusyTimeoutMs);
  while (true) {
    auto r = Pragma(db, sql);
    if (r.ok() || r.status().code() != Code::kUnavailable || std::chrono::steady_clock::now() >= deadline) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Result<std::unique_ptr<Store>> SqliteStore::Open(const std::string& path, bool full_sync) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  // From here on the store owns db (and closes it on every error path).
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open SQLite database '" + path + "': " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    if ((rc & 0xff) == SQLITE_CANTOPEN) {
      return Status::InvalidArgument(msg, {{"hint", "check that the directory exists and is writable"}});
    }
    return SqliteError(db, rc, "open '" + path + "'");
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  // WAL: readers in other processes do not block our writes and vice versa.
  // (An in-memory database reports "memory"; that is fine.)
  auto mode = PragmaRetryingBusy(db, "PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status();
  auto sync = Pragma(db, full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
  if (!sync.ok()) return sync.status();
  auto fk = Pragma(db, "PRAGMA foreign_keys = ON");
  if (!fk.ok()) return fk.status();
  // Debian builds SQLite with secure_delete on, which also writes freed
  // pages full of zeros; FAST zeroes freed content only in pages written
  // anyway, so an old version of a row (an agent's metadata, say) is still
  // overwritten where it lay (docs/benchmarks.md item 41).
  auto sd = Pragma(db, "PRAGMA secure_delete = FAST");
  if (!sd.ok()) return sd.status();
  AF_RETURN_IF_ERROR(sqlite::ApplyMigrations(db, sqlite::EmbeddedMigrations()));
  for (int i = 0; i < kSqlCount; ++i) {
    rc = sqlite3_prepare_v3(db, kSqlText[i], -1, SQLITE_PREPARE_PERSISTENT, &store->stmts_[i], nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, std::string("prepare: ") + kSqlText[i]);
  }
  if (*mode == "wal") {
    sqlite::WalCheckpointerOptions co;
    co.full_sync = full_sync;
    co.busy_timeout_ms = kBusyTimeoutMs;
    auto checkpointer = sqlite::WalCheckpointer::Start(db, std::move(co));
    if (!checkpointer.ok()) return checkpointer.status();
    store->checkpointer_ = std::move(checkpointer).value();
  }
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace

bool ConfigureSqliteProcess() { return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK; }

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, bool full_sync) {
  return Guarded([&] { return SqliteStore::Open(path, full_sync); });
}

}  // namespace af
