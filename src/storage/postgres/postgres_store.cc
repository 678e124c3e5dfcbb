// PostgresStore: the Store on a pool of libpq connections.
//
// Design:
// - Every public method takes a connection from the pool for its duration
//   (Call), so a method's statements never interleave with another thread's
//   on one connection. Each statement is prepared on each connection when
//   the connection opens (a typo fails the open, not a request) and run with
//   PQexecPrepared; values only ever travel as parameters.
// - One round trip per call where the contract allows: compare-and-set
//   UPDATE ... WHERE status = <from> ... RETURNING; INSERT ... RETURNING;
//   workflow create/update (two tables) as one statement with a
//   data-modifying CTE, so they are atomic without BEGIN/COMMIT round trips.
//   Only when a compare-and-set matches nothing do we read the row to say
//   why; only when CreateRun's idempotency key was already used do we read
//   the existing run.
// - All statements run in autocommit under READ COMMITTED. Concurrent
//   compare-and-sets on one row serialize on its row lock and the losers
//   re-check the WHERE clause against the winner's row, so exactly one wins;
//   racing CreateRuns with one key serialize on the unique index.
// - Connections: see postgres_store.h. A dead connection fails its call
//   with Unavailable and is closed; its slot reconnects on next use. Idle
//   connections are polled (no round trip) before use, so a restart of the
//   server is noticed before a statement is lost on them.
// - No exception leaves the store: every public method catches and returns
//   Internal.
#include "storage/postgres/postgres_store.h"

#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_set>

#include "common/ids.h"
#include "common/json_text.h"
#include "common/time.h"
#include "model/status_machine.h"
#include "storage/postgres/migrations.h"
#include "storage/postgres/pg_util.h"
#include "storage/postgres/run_ends.h"

namespace af {
namespace {

using postgres::ConnectionLost;
using postgres::Params;
using postgres::PgError;
using postgres::PgResult;
using postgres::SqlStateOf;

constexpr int kMaxPageSize = 1000;

// ---------------------------------------------------------------- SQL text

// SQL reads best broken at its clauses, not at column 120:
// clang-format off
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
// Lease and dispatch times are the server's clock (ms), one value per
// statement, so executors on hosts with skewed clocks agree on expiry.
#define AF_NOW "(extract(epoch FROM statement_timestamp()) * 1000)::bigint"
// A run nobody drives whose request may be lost; `older` is the parameter
// with older_than_ms. An executor took it after its last dispatch and its
// lease lapsed: older_than_ms; else (it may be waiting in a backlog) backed
// off (Store::ListStrandedRuns).
#define AF_TAKEN_SINCE_DISPATCH "(lease_owner IS NOT NULL AND lease_expires_at > dispatched_at)"
#define AF_STRANDED(older)                                                                            \
  "status IN ('PENDING', 'RUNNING') AND (lease_owner IS NULL OR lease_expires_at < " AF_NOW ") "     \
  "AND (dispatched_at IS NULL OR dispatched_at < " AF_NOW " - CASE WHEN " AF_TAKEN_SINCE_DISPATCH     \
  " THEN " older " ELSE least(" older " * (1::bigint << least(redispatch_count, 20)), "              \
  "greatest(" older ", 3600000 /* kMaxStrandedBackoffMs */)) END)"
#define AF_OUTBOX_COLS "id, topic, key, payload, created_at, attempts, last_error"
// The fence of an executor's step write ($lease = its lease token; 0:
// unfenced): FOR SHARE makes a concurrent AcquireRunLease (which updates the
// run row) wait for this write's commit, or this write wait for the acquire
// and then see the new token, so no write of a stale owner lands after a new
// owner took the run.
#define AF_FENCE(run, lease)                                                                           \
  "WITH fence AS (SELECT 1 FROM workflow_runs WHERE " lease " <> 0 AND id = " run " AND lease_token = " lease \
  " FOR SHARE) "
#define AF_FENCE_OK(lease) "(" lease " = 0 OR EXISTS (SELECT 1 FROM fence))"
// kTransitionRun: $1 id, $2 from, $3 to, $4 now, $5 to is RUNNING, $6 to is
// terminal, $7 to is PENDING (retry), $8/$9 set output, $10/$11 set
// error_message, $12/$13 set input, $14 lease token (0: unfenced), $15 set
// dispatched_at. → PENDING or terminal frees the lease.
#define AF_TRANSITION                                                                                 \
  "UPDATE workflow_runs SET status = $3::text, updated_at = $4::bigint, "                             \
  "started_at = CASE WHEN $5::boolean THEN coalesce(started_at, $4::bigint) ELSE started_at END, "    \
  "completed_at = CASE WHEN $6::boolean THEN $4::bigint ELSE NULL END, "                               \
  "output = CASE WHEN $7::boolean THEN NULL WHEN $8::boolean THEN $9::text ELSE output END, "         \
  "error_message = CASE WHEN $7::boolean THEN NULL WHEN $10::boolean THEN $11::text ELSE error_message END, " \
  "input = CASE WHEN $12::boolean THEN $13::text ELSE input END, "                                    \
  "cancel_requested = CASE WHEN $7::boolean THEN false ELSE cancel_requested END, "                   \
  "cancelled_by = CASE WHEN $7::boolean THEN NULL ELSE cancelled_by END, "                            \
  "cancel_reason = CASE WHEN $7::boolean THEN NULL ELSE cancel_reason END, "                          \
  "attempt = attempt + CASE WHEN $7::boolean THEN 1 ELSE 0 END, "                                     \
  "lease_owner = CASE WHEN $6::boolean OR $7::boolean THEN NULL ELSE lease_owner END, "               \
  "lease_expires_at = CASE WHEN $6::boolean OR $7::boolean THEN NULL ELSE lease_expires_at END, "     \
  "dispatched_at = CASE WHEN $15::boolean THEN " AF_NOW " ELSE dispatched_at END, "                  \
  "redispatch_count = CASE WHEN $15::boolean THEN 0 ELSE redispatch_count END "                      \
  "WHERE id = $1::text AND status = $2::text AND ($14::bigint = 0 OR lease_token = $14::bigint) "     \
  "RETURNING " AF_RUN_COLS
#define AF_INSERT_STEP                                                                                \
  "INSERT INTO step_executions (run_id, step_id, item_index, agent_name, attempt, status, input, output, " \
  "error_message, started_at, completed_at) SELECT $1::text, $2::text, $3::integer, $4::text, $5::integer, " \
  "$6::text, $7::text, $8::text, $9::text, $10::bigint, $11::bigint WHERE " AF_FENCE_OK("$12::bigint")    \
  " RETURNING id"
#define AF_FINISH_STEP                                                                                \
  "UPDATE step_executions SET status = $3::text, output = $4::text, error_message = $5::text, "        \
  "completed_at = $6::bigint WHERE id = $1::bigint AND run_id = $2::text AND status = 'RUNNING' AND "   \
  AF_FENCE_OK("$7::bigint")
// The "strict" forms of kInsertStep, kFinishStep and kTransitionRun, for
// ApplyRunWrites' pipeline (one implicit transaction, committed at the
// pipeline's sync): same parameters and results, but a write that matches
// no row (a fence, a status compare-and-set) raises division_by_zero, which
// rolls back the whole batch, instead of affecting nothing. `1 / count(*)`
// over the write's RETURNING rows is the raise: an output column of a
// statement that always yields exactly one row, so it is always evaluated,
// and it cannot be folded at planning.
#define AF_STRICT_CHECK(cte) "(SELECT 1 / count(*) FROM " cte ")"
// RunStart: $1 run, $2 owner, $3 ttl ms, $4 input, $5 now
#define AF_START_RUN                                                                                   \
  "UPDATE workflow_runs SET status = 'RUNNING', updated_at = $5::bigint, "                             \
  "started_at = coalesce(started_at, $5::bigint), lease_owner = $2::text, "                           \
  "lease_token = 1 /* kFirstLeaseToken */, lease_expires_at = " AF_NOW " + $3::bigint "               \
  "WHERE id = $1::text AND status = 'PENDING' AND attempt = 1 AND lease_token = 0 "                   \
  "AND NOT cancel_requested AND input = $4::text RETURNING " AF_RUN_COLS
// Keyset pagination of runs, newest first: $1 $2 = the cursor (created_at,
// id) of the previous page's last row; `filter` uses $3 (and $4), `limit`
// is the next parameter.
#define AF_LIST_RUNS(filter, limit)                                                                    \
  "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE " filter " (created_at, id) < ($1::bigint, $2::text) " \
  "ORDER BY created_at DESC, id DESC LIMIT " limit

enum Sql {
  kPing,
  kCreateWorkflow,
  kUpdateWorkflow,
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
  kInsertRunDispatch,
  kInsertRuns,
  kTransitionRunDispatch,
  kAcquireLease,
  kRenewLeases,
  kReleaseLease,
  kGetLeaseState,
  kListStranded,
  kRedispatch,
  kClaimOutbox,
  kDeleteOutbox,
  kDeferOutbox,
  kOutboxStats,
  kInsertStepStrict,
  kFinishStepStrict,
  kTransitionRunStrict,
  kStartRun,
  kStartRunStrict,
  kInsertStepsStrict,
  kFinishStepsStrict,
  kSqlCount,
};

// Indexed by Sql.
constexpr std::array<const char*, kSqlCount> kSqlText = {
    "SELECT 1",
    // kCreateWorkflow: $1 id, $2 name, $3 description, $4 now, $5 plan. One
    // statement writes both rows (atomic; the version's foreign key is
    // checked at the end of the statement, when the workflow row exists).
    "WITH w AS (INSERT INTO workflows (id, name, description, latest_version, created_at, updated_at) "
    "VALUES ($1::text, $2::text, $3::text, 1, $4::bigint, $4::bigint) RETURNING id) "
    "INSERT INTO workflow_versions (workflow_id, version, name, description, plan, created_at) "
    "SELECT id, 1, $2::text, $3::text, $5::text, $4::bigint FROM w",
    // kUpdateWorkflow: same parameters. The UPDATE locks the workflow row, so
    // concurrent updates take versions one after another.
    "WITH b AS (UPDATE workflows SET name = $2::text, description = $3::text, latest_version = latest_version + 1, "
    "updated_at = $4::bigint WHERE id = $1::text AND deleted_at IS NULL RETURNING latest_version, created_at), "
    "v AS (INSERT INTO workflow_versions (workflow_id, version, name, description, plan, created_at) "
    "SELECT $1::text, latest_version, $2::text, $3::text, $5::text, $4::bigint FROM b) "
    "SELECT latest_version, created_at FROM b",
    // kGetWorkflowLatest
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST "WHERE w.id = $1::text AND w.deleted_at IS NULL",
    // kGetWorkflowVersion
    "SELECT " AF_WORKFLOW_COLS " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id "
    "WHERE w.id = $1::text AND v.version = $2::integer",
    // kGetWorkflowByName
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST "WHERE w.name = $1::text AND w.deleted_at IS NULL",
    // kListWorkflows
    "SELECT " AF_WORKFLOW_COLS AF_WORKFLOW_LATEST
    "WHERE w.deleted_at IS NULL AND (w.created_at, w.id) < ($1::bigint, $2::text) "
    "ORDER BY w.created_at DESC, w.id DESC LIMIT $3::bigint",
    // kListWorkflowVersions
    "SELECT " AF_WORKFLOW_COLS " FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id "
    "WHERE w.id = $1::text AND w.deleted_at IS NULL ORDER BY v.version DESC",
    // kDeleteWorkflow
    "UPDATE workflows SET deleted_at = $2::bigint, updated_at = $2::bigint WHERE id = $1::text AND deleted_at IS NULL",
    // kInsertRun: an idempotency key already used for the workflow inserts
    // nothing (and returns no row); any other conflict is an error.
    "INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, idempotency_key, "
    "cancel_requested, attempt, created_at, updated_at, traceparent) "
    "VALUES ($1::text, $2::text, $3::integer, 'PENDING', $4::text, $5::text, false, 1, $6::bigint, $6::bigint, "
    "$7::text) "
    "ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    // kGetRun
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE id = $1::text",
    // kGetRunByKey
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE workflow_id = $1::text AND idempotency_key = $2::text",
    // kGetRunStatus
    "SELECT status FROM workflow_runs WHERE id = $1::text",
    AF_LIST_RUNS("", "$3::bigint"),
    AF_LIST_RUNS("workflow_id = $3::text AND", "$4::bigint"),
    AF_LIST_RUNS("status = $3::text AND", "$4::bigint"),
    AF_LIST_RUNS("workflow_id = $3::text AND status = $4::text AND", "$5::bigint"),
    // kListUnfinishedRuns
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE status IN ('PENDING', 'RUNNING') "
    "ORDER BY created_at, id LIMIT $1::bigint",
    // kListCancelRequests ($1: text[] of run ids)
    "SELECT id, cancelled_by, cancel_reason FROM workflow_runs "
    "WHERE id = ANY($1::text[]) AND cancel_requested AND status IN ('PENDING', 'RUNNING')",
    // kGetRunStatuses ($1: text[] of run ids)
    "SELECT id, status FROM workflow_runs WHERE id = ANY($1::text[])",
    // kGetStepProgress ($1: text[] of run ids)
    "SELECT run_id, count(*), count(*) FILTER (WHERE status <> 'RUNNING') FROM step_executions "
    "WHERE run_id = ANY($1::text[]) GROUP BY run_id",
    // kTransitionRun
    AF_TRANSITION,
    // kRequestCancel
    "UPDATE workflow_runs SET cancel_requested = true, cancelled_by = $2::text, cancel_reason = $3::text, "
    "updated_at = $4::bigint WHERE id = $1::text AND status IN ('PENDING', 'RUNNING') RETURNING " AF_RUN_COLS,
    // kInsertStep: $12 lease token (0: unfenced)
    AF_FENCE("$1::text", "$12::bigint") AF_INSERT_STEP,
    // kFinishStep: $7 lease token (0: unfenced)
    AF_FENCE("$2::text", "$7::bigint") AF_FINISH_STEP,
    // kGetStepStatus
    "SELECT status FROM step_executions WHERE id = $1::bigint AND run_id = $2::text",
    // kListSteps
    "SELECT " AF_STEP_COLS " FROM step_executions WHERE run_id = $1::text ORDER BY started_at, id",
    // kInsertAgent
    "INSERT INTO agents (" AF_AGENT_CONFIG_COLS ") "
    "VALUES ($1::text, $2::text, $3::bigint, $4::integer, $5::text, $6::bigint, $6::bigint, $7::text, $8::text, "
    "$9::text)",
    // kUpsertAgent
    "INSERT INTO agents (" AF_AGENT_CONFIG_COLS ") "
    "VALUES ($1::text, $2::text, $3::bigint, $4::integer, $5::text, $6::bigint, $6::bigint, $7::text, $8::text, "
    "$9::text) "
    "ON CONFLICT (name) DO UPDATE SET url = excluded.url, timeout_ms = excluded.timeout_ms, "
    "max_concurrency = excluded.max_concurrency, metadata = excluded.metadata, updated_at = excluded.updated_at, "
    "transport = excluded.transport, topic = excluded.topic, health_url = excluded.health_url "
    "RETURNING " AF_AGENT_COLS,
    // kGetAgent
    "SELECT " AF_AGENT_COLS " FROM agents WHERE name = $1::text",
    // kListAgents
    "SELECT " AF_AGENT_COLS " FROM agents ORDER BY name",
    // kDeleteAgent
    "DELETE FROM agents WHERE name = $1::text",
    // kRecordAgentHealth: $5 sets last_seen_at
    "UPDATE agents SET health = $2::text, health_error = $3::text, health_checked_at = $4::bigint, "
    "last_seen_at = CASE WHEN $5::boolean THEN $4::bigint ELSE last_seen_at END WHERE name = $1::text",
    // kInsertApiKey
    "INSERT INTO api_keys (id, name, role, secret_hash, created_at) "
    "VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint)",
    // kGetApiKey
    "SELECT " AF_API_KEY_COLS " FROM api_keys WHERE id = $1::text",
    // kListApiKeys
    "SELECT " AF_API_KEY_COLS " FROM api_keys ORDER BY created_at, id",
    // kRevokeApiKey: a key already revoked keeps its first revoked_at
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2::bigint) WHERE id = $1::text "
    "RETURNING " AF_API_KEY_COLS,
    // kRecordApiKeyUse
    "UPDATE api_keys SET last_used_at = $2::bigint WHERE id = $1::text",
    // kInsertRunDispatch: kInsertRun's $1..$7, then the outbox message $8
    // topic, $9 key, $10 payload, $11 claimed for (the writer's fast path; 0:
    // due at once), in one statement (atomic). Inserts the message only if
    // the run was inserted; affected() = 1 then, with its id and created_at.
    "WITH r AS (INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, idempotency_key, "
    "cancel_requested, attempt, created_at, updated_at, traceparent, dispatched_at) "
    "VALUES ($1::text, $2::text, $3::integer, 'PENDING', $4::text, $5::text, false, 1, $6::bigint, $6::bigint, "
    "$7::text, " AF_NOW ") "
    "ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id) "
    "INSERT INTO outbox (topic, key, payload, created_at, available_at) "
    "SELECT $8::text, $9::text, $10::text, " AF_NOW ", " AF_NOW " + $11::bigint FROM r RETURNING id, created_at",
    // kInsertRuns (CreateRuns): one row per element of the arrays $1 ids, $2
    // workflow ids, $3 versions, $4 inputs, $5 idempotency keys ('' none),
    // $6 created_at, $7 traceparents ('' none), $8 outbox topics ('' no
    // message), $9 message keys, $10 payloads, $11 claimed for (as in
    // kInsertRunDispatch); one statement, so atomic. A
    // row whose workflow version does not exist, or that conflicts with any
    // unique index (idempotency key, id), is skipped; the ids inserted are
    // returned and only their messages are written. Rows go in by workflow
    // and key, so two batches with common keys lock them in the same order.
    "WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::bigint[], "
    "$7::text[], $8::text[], $9::text[], $10::text[]) WITH ORDINALITY "
    "AS i(id, workflow_id, version, input, ikey, created_at, traceparent, topic, mkey, payload, n)), "
    "r AS (INSERT INTO workflow_runs (id, workflow_id, workflow_version, status, input, idempotency_key, "
    "cancel_requested, attempt, created_at, updated_at, traceparent, dispatched_at) "
    "SELECT i.id, i.workflow_id, i.version, 'PENDING', i.input, NULLIF(i.ikey, ''), false, 1, i.created_at, "
    "i.created_at, NULLIF(i.traceparent, ''), CASE WHEN i.topic <> '' THEN " AF_NOW " END FROM i "
    "WHERE EXISTS (SELECT 1 FROM workflow_versions v WHERE v.workflow_id = i.workflow_id AND v.version = i.version) "
    "ORDER BY i.workflow_id, i.ikey, i.n ON CONFLICT DO NOTHING RETURNING id), "
    "o AS (INSERT INTO outbox (topic, key, payload, created_at, available_at) "
    "SELECT i.topic, i.mkey, i.payload, " AF_NOW ", " AF_NOW " + $11::bigint FROM i JOIN r ON r.id = i.id "
    "WHERE i.topic <> '' ORDER BY i.n RETURNING id, created_at, topic, key) "
    "SELECT r.id, o.id, o.created_at FROM r JOIN i ON i.id = r.id "
    "LEFT JOIN o ON o.topic = i.topic AND o.key = i.mkey",
    // kTransitionRunDispatch: kTransitionRun's $1..$15, then the outbox
    // message $16 topic, $17 key, $18 payload, $19 claimed for, written if
    // the run changed; the run's columns, then the message's id and created_at.
    "WITH t AS (" AF_TRANSITION "), o AS (INSERT INTO outbox (topic, key, payload, created_at, available_at) "
    "SELECT $16::text, $17::text, $18::text, " AF_NOW ", " AF_NOW " + $19::bigint FROM t RETURNING id, created_at) "
    "SELECT t.*, o.id, o.created_at FROM t CROSS JOIN o",
    // kAcquireLease: $1 run, $2 owner, $3 ttl ms
    "UPDATE workflow_runs SET lease_owner = $2::text, lease_token = lease_token + 1, "
    "lease_expires_at = " AF_NOW " + $3::bigint "
    "WHERE id = $1::text AND status IN ('PENDING', 'RUNNING') "
    "AND (lease_owner IS NULL OR lease_owner = $2::text OR lease_expires_at < " AF_NOW ") "
    "RETURNING " AF_RUN_COLS,
    // kRenewLeases: $1 owner, $2 ttl ms. The rows are locked in id order
    // (bytewise, as std::string compares), the order a group of run writes
    // locks them in (DoApplyRunWritesGroup):
    // in any other order a renewal of thousands of rows and a group commit
    // each waited for a row the other held (deadlock, detected after
    // deadlock_timeout, 1 s, with one of them failed).
    "WITH held AS MATERIALIZED (SELECT id FROM workflow_runs WHERE lease_owner = $1::text ORDER BY id COLLATE \"C\" FOR UPDATE) "
    "UPDATE workflow_runs w SET lease_expires_at = " AF_NOW " + $2::bigint FROM held WHERE w.id = held.id",
    // kReleaseLease
    "UPDATE workflow_runs SET lease_owner = NULL, lease_expires_at = NULL "
    "WHERE id = $1::text AND lease_token = $2::bigint AND lease_owner IS NOT NULL",
    // kGetLeaseState
    "SELECT status, lease_owner, lease_expires_at, " AF_NOW " FROM workflow_runs WHERE id = $1::text",
    // kListStranded: $1 older_than_ms, $2 limit
    "SELECT " AF_RUN_COLS " FROM workflow_runs WHERE " AF_STRANDED("$1::bigint")
    " ORDER BY created_at, id LIMIT $2::bigint",
    // kRedispatch: $1 older_than_ms, $2 run, $3 topic, $4 key, $5 payload, $6
    // claimed for
    "WITH r AS (UPDATE workflow_runs SET dispatched_at = " AF_NOW ", "
    "redispatch_count = CASE WHEN " AF_TAKEN_SINCE_DISPATCH " THEN 1 ELSE redispatch_count + 1 END "
    "WHERE id = $2::text AND " AF_STRANDED("$1::bigint") " RETURNING id) "
    "INSERT INTO outbox (topic, key, payload, created_at, available_at) "
    "SELECT $3::text, $4::text, $5::text, " AF_NOW ", " AF_NOW " + $6::bigint FROM r RETURNING id, created_at",
    // kClaimOutbox: $1 claim ms, $2 limit. SKIP LOCKED: concurrent relays
    // take different rows.
    "UPDATE outbox SET available_at = " AF_NOW " + $1::bigint WHERE id IN "
    "(SELECT id FROM outbox WHERE available_at <= " AF_NOW " ORDER BY id LIMIT $2::bigint FOR UPDATE SKIP LOCKED) "
    "RETURNING " AF_OUTBOX_COLS,
    // kDeleteOutbox: $1 bigint[]
    "DELETE FROM outbox WHERE id = ANY($1::bigint[])",
    // kDeferOutbox: $1 ids, $2 error, $3 retry ms
    "UPDATE outbox SET attempts = attempts + 1, last_error = $2::text, available_at = " AF_NOW " + $3::bigint "
    "WHERE id = ANY($1::bigint[])",
    // kOutboxStats
    "SELECT count(*), min(created_at) FROM outbox",
    // kInsertStepStrict: kInsertStep's parameters; the new row's id (then
    // the check's column)
    AF_FENCE("$1::text", "$12::bigint") ", i AS (" AF_INSERT_STEP ") "
    "SELECT max(id), " AF_STRICT_CHECK("i") " FROM i",
    // kFinishStepStrict: kFinishStep's parameters; one row
    AF_FENCE("$2::text", "$7::bigint") ", u AS (" AF_FINISH_STEP " RETURNING 1) "
    "SELECT " AF_STRICT_CHECK("u"),
    // kTransitionRunStrict: kTransitionRun's parameters; the run's columns
    // (then the check's), exactly one row
    "WITH t AS (" AF_TRANSITION ") SELECT t.*, " AF_STRICT_CHECK("t") " FROM (VALUES (1)) one LEFT JOIN t ON true",
    // kStartRun (RunStart): the run's columns, or no row if refused
    AF_START_RUN,
    // kStartRunStrict: kStartRun's parameters; the run's columns (then the
    // check's), exactly one row
    "WITH t AS (" AF_START_RUN ") SELECT t.*, " AF_STRICT_CHECK("t") " FROM (VALUES (1)) one LEFT JOIN t ON true",
    // kInsertStepsStrict: kInsertStepStrict for many rows in one statement.
    // One array per kInsertStep parameter ($1..$12, in its order; NULL
    // elements where it takes NULL). The new ids in the arrays' order (then
    // the check's column). Ids are drawn from the identity's sequence in
    // that order, so they are what row-by-row inserts would get. Every run
    // the rows name is locked FOR SHARE in id order (the fence); a row whose
    // fence fails, or that is not inserted, raises division_by_zero.
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::integer[], $6::text[], "
    "$7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[]) WITH ORDINALITY "
    "AS v(run_id, step_id, item_index, agent_name, attempt, status, input, output, error_message, started_at, "
    "completed_at, token, n)), "
    "fence AS (SELECT r.id, r.lease_token FROM workflow_runs r WHERE r.id = ANY($1::text[]) ORDER BY r.id FOR SHARE), "
    "ids AS MATERIALIZED (SELECT v.*, nextval('step_executions_id_seq'::regclass) AS id FROM v ORDER BY v.n), "
    "i AS (INSERT INTO step_executions (id, run_id, step_id, item_index, agent_name, attempt, status, input, "
    "output, error_message, started_at, completed_at) OVERRIDING SYSTEM VALUE "
    "SELECT id, run_id, step_id, item_index, agent_name, attempt, status, input, output, error_message, "
    "started_at, completed_at FROM ids WHERE ids.token = 0 OR EXISTS "
    "(SELECT 1 FROM fence f WHERE f.id = ids.run_id AND f.lease_token = ids.token) ORDER BY ids.n RETURNING id) "
    "SELECT ids.id, (SELECT 1 / (CASE WHEN count(*) = (SELECT count(*) FROM v) THEN 1 ELSE 0 END) FROM i) "
    "FROM ids ORDER BY ids.n",
    // kFinishStepsStrict: kFinishStepStrict for many rows in one statement.
    // One array per kFinishStep parameter ($1..$7, in its order). One row;
    // raises division_by_zero unless every row was RUNNING, is the run's
    // and passed its run's fence (locked FOR SHARE in id order).
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], "
    "$7::bigint[]) AS v(id, run_id, status, output, error_message, completed_at, token)), "
    "fence AS (SELECT r.id, r.lease_token FROM workflow_runs r WHERE r.id = ANY($2::text[]) ORDER BY r.id FOR SHARE), "
    "u AS (UPDATE step_executions s SET status = v.status, output = v.output, error_message = v.error_message, "
    "completed_at = v.completed_at FROM v WHERE s.id = v.id AND s.run_id = v.run_id AND s.status = 'RUNNING' "
    "AND (v.token = 0 OR EXISTS (SELECT 1 FROM fence f WHERE f.id = v.run_id AND f.lease_token = v.token)) "
    "RETURNING 1) "
    "SELECT 1 / (CASE WHEN (SELECT count(*) FROM u) = (SELECT count(*) FROM v) THEN 1 ELSE 0 END)",
};

#undef AF_STRANDED
#undef AF_TAKEN_SINCE_DISPATCH
#undef AF_FENCE
#undef AF_FENCE_OK
#undef AF_TRANSITION
#undef AF_INSERT_STEP
#undef AF_FINISH_STEP
#undef AF_STRICT_CHECK
#undef AF_START_RUN
#undef AF_LIST_RUNS
// clang-format on

// Prepared-statement names: "af0", "af1", ...
const std::array<std::string, kSqlCount>& StatementNames() {
  static const std::array<std::string, kSqlCount> names = [] {
    std::array<std::string, kSqlCount> n;
    for (int i = 0; i < kSqlCount; ++i) n[i] = "af" + std::to_string(i);
    return n;
  }();
  return names;
}

// ---------------------------------------------------------------- rows

Status CorruptStatus(const std::string& table, std::string_view value) {
  return Status::Internal("postgres: " + table + ".status holds an unknown value '" + std::string(value) + "'");
}

Status ReadWorkflow(const PgResult& r, int i, Workflow* w) {
  w->id = r.Text(i, 0);
  w->name = r.Text(i, 1);
  w->description = r.Text(i, 2);
  w->version = r.Int(i, 3);
  w->latest_version = r.Int(i, 4);
  AF_RETURN_IF_ERROR(r.Json(i, 5, &w->plan));
  w->created_at = r.Int64(i, 6);
  w->updated_at = r.Int64(i, 7);
  return Status::Ok();
}

constexpr int kRunColumns = 21;  // AF_RUN_COLS

Status ReadRun(const PgResult& r, int i, Run* run) {
  run->id = r.Text(i, 0);
  run->workflow_id = r.Text(i, 1);
  run->workflow_version = r.Int(i, 2);
  auto parsed = ParseRunStatus(r.Text(i, 3));
  if (!parsed) return CorruptStatus("workflow_runs", r.View(i, 3));
  run->status = *parsed;
  AF_RETURN_IF_ERROR(r.Json(i, 4, &run->input));
  AF_RETURN_IF_ERROR(r.Json(i, 5, &run->output));
  run->error_message = r.Text(i, 6);
  run->idempotency_key = r.Text(i, 7);
  run->cancel_requested = r.Bool(i, 8);
  run->cancelled_by = r.Text(i, 9);
  run->cancel_reason = r.Text(i, 10);
  run->attempt = r.Int(i, 11);
  run->created_at = r.Int64(i, 12);
  run->started_at = r.OptInt64(i, 13);
  run->completed_at = r.OptInt64(i, 14);
  run->updated_at = r.Int64(i, 15);
  run->traceparent = r.Text(i, 16);
  run->lease_owner = r.Text(i, 17);
  run->lease_token = r.Int64(i, 18);
  run->lease_expires_at = r.OptInt64(i, 19);
  run->dispatched_at = r.OptInt64(i, 20);
  return Status::Ok();
}

Status ReadStep(const PgResult& r, int i, StepExecution* s) {
  s->id = r.Int64(i, 0);
  s->run_id = r.Text(i, 1);
  s->step_id = r.Text(i, 2);
  s->item_index = r.IsNull(i, 3) ? std::nullopt : std::optional<int>(r.Int(i, 3));
  s->agent_name = r.Text(i, 4);
  s->attempt = r.Int(i, 5);
  auto parsed = ParseStepStatus(r.Text(i, 6));
  if (!parsed) return CorruptStatus("step_executions", r.View(i, 6));
  s->status = *parsed;
  AF_RETURN_IF_ERROR(r.Json(i, 7, &s->input));
  AF_RETURN_IF_ERROR(r.Json(i, 8, &s->output));
  s->error_message = r.Text(i, 9);
  s->started_at = r.Int64(i, 10);
  s->completed_at = r.OptInt64(i, 11);
  return Status::Ok();
}

Status ReadApiKey(const PgResult& r, int i, ApiKey* k) {
  k->id = r.Text(i, 0);
  k->name = r.Text(i, 1);
  auto role = ParseRole(r.Text(i, 2));
  if (!role) return Status::Internal("postgres: api_keys.role holds an unknown value '" + r.Text(i, 2) + "'");
  k->role = *role;
  k->secret_hash = r.Text(i, 3);
  k->created_at = r.Int64(i, 4);
  k->last_used_at = r.OptInt64(i, 5);
  k->revoked_at = r.OptInt64(i, 6);
  return Status::Ok();
}

Status ReadAgent(const PgResult& r, int i, Agent* a) {
  a->name = r.Text(i, 0);
  a->url = r.Text(i, 1);
  a->timeout_ms = r.Int64(i, 2);
  a->max_concurrency = r.Int(i, 3);
  AF_RETURN_IF_ERROR(r.Json(i, 4, &a->metadata));
  a->created_at = r.Int64(i, 5);
  a->updated_at = r.Int64(i, 6);
  auto transport = ParseAgentTransport(r.Text(i, 7));
  if (!transport) return Status::Internal("agent '" + a->name + "' has an unknown transport '" + r.Text(i, 7) + "'");
  a->transport = *transport;
  a->topic = r.Text(i, 8);
  a->health_url = r.Text(i, 9);
  a->health = ParseAgentHealth(r.Text(i, 10)).value_or(AgentHealth::kUnknown);
  a->health_error = r.Text(i, 11);
  a->last_seen_at = r.OptInt64(i, 12);
  a->health_checked_at = r.OptInt64(i, 13);
  return Status::Ok();
}

// ---- page tokens: base64url("<created_at>:<id>"), opaque to callers; the
// same encoding as the SQLite store's, so a token means the same position.

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
                                   {{"hint",
                                     "pass the next_page_token of the previous page unchanged, or "
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
  // Ids we hand out are always storable; anything else is not our token.
  if (!postgres::IsStorableText(c.id)) return bad();
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

// ---------------------------------------------------------------- the pool

// One pooled connection slot. pg is null until first use and after the
// connection was found dead.
struct Conn {
  PGconn* pg = nullptr;
  bool broken = false;  // set by a statement that lost the connection

  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    if (pg) PQfinish(pg);
  }
  void Close() {
    if (pg) PQfinish(pg);
    pg = nullptr;
    broken = false;
  }
};

Status PrepareAll(PGconn* pg) {
  const auto& names = StatementNames();
  for (int i = 0; i < kSqlCount; ++i) {
    PgResult r(PQprepare(pg, names[i].c_str(), kSqlText[i], 0, nullptr));
    if (!r.ok()) return PgError(pg, r, std::string("prepare: ") + kSqlText[i]);
  }
  return Status::Ok();
}

// True if an idle connection still looks usable. Costs one poll(2), no round
// trip: a server that shut down or restarted has closed the socket, which
// then reads as EOF (possibly after a goodbye message).
bool LooksAlive(PGconn* pg) {
  if (PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) != PQTRANS_IDLE) return false;
  for (int i = 0; i < 4; ++i) {
    pollfd p{PQsocket(pg), POLLIN, 0};
    int n = ::poll(&p, 1, 0);
    if (n == 0) return true;
    if (n < 0) return errno == EINTR;
    if (!PQconsumeInput(pg)) return false;
    while (PGnotify* note = PQnotifies(pg)) PQfreemem(note);
    if (PQstatus(pg) != CONNECTION_OK) return false;
  }
  return true;
}

class Pool;

// A connection taken from the pool; given back when the lease ends.
class Lease {
 public:
  Lease() = default;
  Lease(Pool* pool, std::unique_ptr<Conn> conn) : pool_(pool), conn_(std::move(conn)) {}
  Lease(Lease&& o) noexcept = default;
  Lease& operator=(Lease&& o) noexcept = default;
  ~Lease();
  Conn& operator*() { return *conn_; }

 private:
  Pool* pool_ = nullptr;
  std::unique_ptr<Conn> conn_;
};

// Up to `size` connection slots behind a mutex and a condition variable.
// Slots are handed out most-recently-used first, so a lightly loaded store
// keeps using the same few connections and never opens the rest.
class Pool {
 public:
  Pool(const PostgresOptions& o, std::string target, std::unique_ptr<Conn> first)
      : url_(o.url),
        target_(std::move(target)),
        connect_timeout_(o.connect_timeout),
        acquire_timeout_(o.acquire_timeout),
        size_(o.pool_size) {
    for (int i = 1; i < size_; ++i) idle_.push_back(std::make_unique<Conn>());
    idle_.push_back(std::move(first));
  }

  // A connected, usable connection, or Unavailable.
  Result<Lease> Acquire() {
    std::unique_ptr<Conn> conn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, acquire_timeout_, [&] { return !idle_.empty(); })) {
        return Status::Unavailable("postgres: all " + std::to_string(size_) + " connections to " + target_ +
                                   " stayed busy for " + std::to_string(acquire_timeout_.count()) +
                                   " ms. Hint: the database is slow or overloaded; retry, or raise the pool size");
      }
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
    Lease lease(this, std::move(conn));
    AF_RETURN_IF_ERROR(Ready(*lease));
    return lease;
  }

  // Where its connections go (also the run-end listener's).
  const std::string& url() const { return url_; }
  const std::string& target() const { return target_; }
  std::chrono::milliseconds connect_timeout() const { return connect_timeout_; }

  void Release(std::unique_ptr<Conn> conn) {
    if (conn->broken) conn->Close();
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(conn));
    }
    cv_.notify_one();
  }

 private:
  Status Ready(Conn& c) {
    if (c.pg && (c.broken || !LooksAlive(c.pg))) c.Close();
    if (c.pg) return Status::Ok();
    auto pg = postgres::Connect(url_, target_, connect_timeout_);
    if (!pg.ok()) return pg.status();
    c.pg = *pg;
    Status s = PrepareAll(c.pg);
    if (!s.ok()) {
      c.Close();
      return s;
    }
    return Status::Ok();
  }

  const std::string url_;
  const std::string target_;  // url_ without the password, for messages
  const std::chrono::milliseconds connect_timeout_;
  const std::chrono::milliseconds acquire_timeout_;
  const int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;  // guarded by mu_
};

Lease::~Lease() {
  if (pool_ && conn_) pool_->Release(std::move(conn_));
}

// ---------------------------------------------------------------- the store

class PostgresStore final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const PostgresOptions& o);

  int MaxConcurrentCalls() const override { return pool_size_; }

  Result<Workflow> CreateWorkflow(const NewWorkflow& w) override {
    return Call([&](Conn& c) { return DoCreateWorkflow(c, w); });
  }
  Result<Workflow> UpdateWorkflow(const std::string& id, const NewWorkflow& w) override {
    return Call([&](Conn& c) { return DoUpdateWorkflow(c, id, w); });
  }
  Result<Workflow> GetWorkflow(const std::string& id, std::optional<int> version) override {
    return Call([&](Conn& c) { return DoGetWorkflow(c, id, version); });
  }
  Result<Workflow> GetWorkflowByName(const std::string& name) override {
    return Call([&](Conn& c) {
      Params p;
      p.Key("name", name);
      return OneWorkflow(c, kGetWorkflowByName, p, "a workflow named '" + name + "'");
    });
  }
  Result<Page<Workflow>> ListWorkflows(int limit, const std::string& page_token) override {
    return Call([&](Conn& c) { return DoListWorkflows(c, limit, page_token); });
  }
  Result<std::vector<Workflow>> ListWorkflowVersions(const std::string& id) override {
    return Call([&](Conn& c) { return DoListWorkflowVersions(c, id); });
  }
  Status DeleteWorkflow(const std::string& id) override {
    return Call([&](Conn& c) { return DoDeleteWorkflow(c, id); });
  }

  Result<CreatedRun> CreateRun(const NewRun& r) override {
    return Call([&](Conn& c) { return DoCreateRun(c, r); });
  }
  std::vector<Result<CreatedRun>> CreateRuns(const std::vector<NewRun>& runs) override {
    if (runs.empty()) return {};
    auto res = Call([&](Conn& c) -> Result<std::vector<Result<CreatedRun>>> { return DoCreateRuns(c, runs); });
    if (!res.ok()) return std::vector<Result<CreatedRun>>(runs.size(), Result<CreatedRun>(res.status()));
    return std::move(res).value();
  }
  Result<Run> GetRun(const std::string& run_id) override {
    return Call([&](Conn& c) { return DoGetRun(c, run_id); });
  }
  Result<Page<Run>> ListRuns(const RunFilter& f) override {
    return Call([&](Conn& c) { return DoListRuns(c, f); });
  }
  Result<std::vector<Run>> ListUnfinishedRuns(int limit) override {
    return Call([&](Conn& c) { return DoListUnfinishedRuns(c, limit); });
  }
  Result<std::vector<std::pair<std::string, RunStatus>>> GetRunStatuses(
      const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return std::vector<std::pair<std::string, RunStatus>>{};
    return Call([&](Conn& c) { return DoGetRunStatuses(c, run_ids); });
  }
  Result<std::vector<StepProgress>> GetStepProgress(const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return std::vector<StepProgress>{};
    return Call([&](Conn& c) { return DoGetStepProgress(c, run_ids); });
  }
  Result<std::vector<CancelRequest>> ListCancelRequests(const std::vector<std::string>& run_ids) override {
    if (run_ids.empty()) return std::vector<CancelRequest>{};
    return Call([&](Conn& c) { return DoListCancelRequests(c, run_ids); });
  }
  Result<Run> TransitionRun(const RunTransition& t) override {
    auto run = Call([&](Conn& c) { return DoTransitionRun(c, t); });
    if (notify_run_ends_ && run.ok() && IsTerminal(t.to)) run_ends_.Notify();
    return run;
  }
  std::unique_ptr<RunEndListener> ListenForRunEnds(std::function<void()> wake) override {
    return postgres::StartRunEndListener(pool_.url(), pool_.target(), pool_.connect_timeout(), std::move(wake));
  }
  Result<Run> RequestCancel(const CancelRequest& r) override {
    return Call([&](Conn& c) { return DoRequestCancel(c, r); });
  }

  using Store::InsertStep;
  Result<int64_t> InsertStep(const StepExecution& s, int64_t lease_token) override {
    return Call([&](Conn& c) { return DoInsertStep(c, s, lease_token); });
  }
  Status FinishStep(const StepFinish& f) override {
    return Call([&](Conn& c) { return DoFinishStep(c, f); });
  }
  Result<RunWritesResult> ApplyRunWrites(const RunWrites& w) override {
    auto res = Call([&](Conn& c) { return DoApplyRunWrites(c, w); });
    if (notify_run_ends_ && res.ok() && EndsARun(w)) run_ends_.Notify();
    return res;
  }
  std::vector<Result<RunWritesResult>> ApplyRunWritesGroup(const std::vector<const RunWrites*>& group) override {
    std::vector<Result<RunWritesResult>> out;
    auto all = Call([&](Conn& c) -> Status {
      out = DoApplyRunWritesGroup(c, group);
      return Status::Ok();
    });
    if (!all.ok()) out.assign(group.size(), all);  // no connection
    for (size_t i = 0; notify_run_ends_ && i < group.size() && i < out.size(); ++i) {
      if (out[i].ok() && EndsARun(*group[i])) {
        run_ends_.Notify();
        break;
      }
    }
    return out;
  }
  // `w` moves its run to a terminal status.
  static bool EndsARun(const RunWrites& w) {
    for (const RunWrite& op : w.ops) {
      if (op.kind == RunWrite::Kind::kTransition && IsTerminal(op.transition.to)) return true;
    }
    return false;
  }

  Result<std::vector<StepExecution>> ListSteps(const std::string& run_id) override {
    return Call([&](Conn& c) { return DoListSteps(c, run_id); });
  }

  Result<Agent> CreateAgent(const Agent& a) override {
    return Call([&](Conn& c) { return DoPutAgent(c, a, /*replace=*/false); });
  }
  Result<Agent> UpsertAgent(const Agent& a) override {
    return Call([&](Conn& c) { return DoPutAgent(c, a, /*replace=*/true); });
  }
  Result<Agent> GetAgent(const std::string& name) override {
    return Call([&](Conn& c) { return DoGetAgent(c, name); });
  }
  Result<std::vector<Agent>> ListAgents() override {
    return Call([&](Conn& c) { return DoListAgents(c); });
  }
  Status DeleteAgent(const std::string& name) override {
    return Call([&](Conn& c) { return DoDeleteAgent(c, name); });
  }
  Status RecordAgentHealth(const AgentHealthUpdate& u) override {
    return Call([&](Conn& c) { return DoRecordAgentHealth(c, u); });
  }
  Result<ApiKey> CreateApiKey(const ApiKey& k) override {
    return Call([&](Conn& c) { return DoCreateApiKey(c, k); });
  }
  Result<ApiKey> GetApiKey(const std::string& id) override {
    return Call([&](Conn& c) { return DoGetApiKey(c, id); });
  }
  Result<std::vector<ApiKey>> ListApiKeys() override {
    return Call([&](Conn& c) { return DoListApiKeys(c); });
  }
  Result<ApiKey> RevokeApiKey(const std::string& id) override {
    return Call([&](Conn& c) { return DoRevokeApiKey(c, id); });
  }
  Status RecordApiKeyUse(const std::string& id, TimeMs at) override {
    return Call([&](Conn& c) { return DoRecordApiKeyUse(c, id, at); });
  }
  Result<RunLease> AcquireRunLease(const std::string& run_id, const std::string& owner, int64_t ttl_ms) override {
    return Call([&](Conn& c) { return DoAcquireRunLease(c, run_id, owner, ttl_ms); });
  }
  Result<int64_t> RenewRunLeases(const std::string& owner, int64_t ttl_ms) override {
    return Call([&](Conn& c) -> Result<int64_t> {
      Params p;
      p.Key("lease owner", owner).Int(ttl_ms);
      auto r = Exec(c, kRenewLeases, p, "renew leases");
      if (!r.ok()) return r.status();
      return r->affected();
    });
  }
  Status ReleaseRunLease(const std::string& run_id, int64_t token) override {
    return Call([&](Conn& c) -> Status {
      Params p;
      p.Key("run id", run_id).Int(token);
      auto r = Exec(c, kReleaseLease, p, "release lease");
      return r.ok() ? Status::Ok() : r.status();
    });
  }
  Result<std::vector<Run>> ListStrandedRuns(int64_t older_than_ms, int limit) override {
    return Call([&](Conn& c) -> Result<std::vector<Run>> {
      Params p;
      p.Int(older_than_ms).Int(std::max(limit, 1));
      auto r = Exec(c, kListStranded, p, "list stranded runs");
      if (!r.ok()) return r.status();
      return AllRuns(*r);
    });
  }
  Result<bool> RedispatchRun(const std::string& run_id, int64_t older_than_ms, const OutboxMessage& m) override {
    std::shared_lock<std::shared_mutex> fast_path(outbox_mu_);
    return Call([&](Conn& c) -> Result<bool> {
      Params p;
      p.Int(older_than_ms).Key("run id", run_id).Key("topic", m.topic).Key("key", m.key).Key("payload", m.payload);
      p.Int(OutboxClaimMs());
      auto r = Exec(c, kRedispatch, p, "redispatch run");
      if (!r.ok()) return r.status();
      if (r->affected() != 1) return false;
      NotifyOutbox(m, *r, 0);
      return true;
    });
  }
  Result<std::vector<OutboxMessage>> ClaimOutbox(int limit, int64_t claim_ms) override {
    return Call([&](Conn& c) -> Result<std::vector<OutboxMessage>> {
      Params p;
      p.Int(claim_ms).Int(std::max(limit, 1));
      auto r = Exec(c, kClaimOutbox, p, "claim outbox");
      if (!r.ok()) return r.status();
      std::vector<OutboxMessage> out(static_cast<size_t>(r->rows()));
      for (int i = 0; i < r->rows(); ++i) {
        OutboxMessage& m = out[static_cast<size_t>(i)];
        m.id = r->Int64(i, 0);
        m.topic = r->Text(i, 1);
        m.key = r->Text(i, 2);
        m.payload = r->Text(i, 3);
        m.created_at = r->Int64(i, 4);
        m.attempts = r->Int(i, 5);
        m.last_error = r->Text(i, 6);
      }
      std::sort(out.begin(), out.end(), [](const OutboxMessage& a, const OutboxMessage& b) { return a.id < b.id; });
      return out;
    });
  }
  Status DeleteOutbox(const std::vector<int64_t>& ids) override {
    if (ids.empty()) return Status::Ok();
    return Call([&](Conn& c) -> Status {
      Params p;
      p.Text(IdArray(ids));
      auto r = Exec(c, kDeleteOutbox, p, "delete outbox");
      return r.ok() ? Status::Ok() : r.status();
    });
  }
  Status DeferOutbox(const std::vector<int64_t>& ids, const std::string& error, int64_t retry_ms) override {
    if (ids.empty()) return Status::Ok();
    return Call([&](Conn& c) -> Status {
      Params p;
      p.Text(IdArray(ids)).Text(postgres::IsStorableText(error) ? error : std::string("(unprintable error)"), true)
          .Int(retry_ms);
      auto r = Exec(c, kDeferOutbox, p, "defer outbox");
      return r.ok() ? Status::Ok() : r.status();
    });
  }
  Result<OutboxStats> GetOutboxStats() override {
    return Call([&](Conn& c) -> Result<OutboxStats> {
      auto r = Exec(c, kOutboxStats, Params(), "outbox stats");
      if (!r.ok()) return r.status();
      OutboxStats out;
      if (r->rows() == 1) {
        out.messages = r->Int64(0, 0);
        out.oldest_created_at = r->OptInt64(0, 1);
      }
      return out;
    });
  }
  bool SetOutboxListener(OutboxListener listener, int64_t claim_ms) override {
    std::unique_lock<std::shared_mutex> lock(outbox_mu_);  // waits for writes (and calls) in progress
    outbox_listener_ = std::move(listener);
    outbox_claim_ms_ = std::max<int64_t>(claim_ms, 0);
    return true;
  }
  Status Ping() override {
    return Call([&](Conn& c) -> Status {
      auto r = Exec(c, kPing, Params(), "ping");
      return r.ok() ? Status::Ok() : r.status();
    });
  }

 private:
  // The writer's fast path (SetOutboxListener). Writes that carry an outbox
  // message hold outbox_mu_ shared from before their statement until the
  // listener returned, so a message inserted claimed is always handed over.
  int64_t OutboxClaimMs() const { return outbox_listener_ ? outbox_claim_ms_ : 0; }
  // `r` returned the message's id and created_at at columns col, col + 1.
  void NotifyOutbox(const OutboxMessage& m, const PgResult& r, int col) {
    if (!outbox_listener_ || r.rows() != 1) return;
    OutboxMessage written = m;
    written.id = r.Int64(0, col);
    written.created_at = r.Int64(0, col + 1);
    outbox_listener_(written);
  }

  PostgresStore(const PostgresOptions& o, std::string target, std::unique_ptr<Conn> first)
      : notify_run_ends_(o.notify_run_ends),
        run_ends_(o.url, target, o.connect_timeout),
        pool_(o, std::move(target), std::move(first)),
        pool_size_(std::max(o.pool_size, 1)) {}

  // Runs f with a pooled connection; no exception escapes.
  template <typename F>
  auto Call(F&& f) -> decltype(f(std::declval<Conn&>())) {
    using R = decltype(f(std::declval<Conn&>()));
    return Guarded([&]() -> R {
      auto lease = pool_.Acquire();
      if (!lease.ok()) return lease.status();
      return f(**lease);
    });
  }

  // Runs one prepared statement. A failure that lost the connection marks it
  // broken, so it is replaced when the lease ends.
  static Result<PgResult> Exec(Conn& c, Sql s, const Params& p, const char* what) {
    if (!p.status().ok()) return p.status();
    std::vector<const char*> values = p.Pointers();
    PgResult r(PQexecPrepared(c.pg, StatementNames()[s].c_str(), p.size(), values.data(), nullptr, nullptr, 0));
    if (r.ok()) return r;
    if (ConnectionLost(c.pg, r.SqlState())) c.broken = true;
    return PgError(c.pg, r, what);
  }

  static bool IsSqlState(const Status& s, const char* state) { return SqlStateOf(s) == state; }

  // A bigint[] literal: "{1,2,3}".
  static std::string IdArray(const std::vector<int64_t>& ids) {
    std::string out = "{";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    return out + "}";
  }

  static Status LeaseLost(const std::string& run_id, int64_t token) {
    return Status::Aborted("run " + run_id + ": lease token " + std::to_string(token) +
                               " is no longer current; another executor took the run over",
                           {{"lease_token", token}});
  }

  // ---- workflows

  static Status NameTaken(const std::string& name) {
    return Status::AlreadyExists("a workflow named '" + name +
                                 "' already exists. Hint: choose another name, or update that workflow");
  }

  static Status WorkflowNotFound(const std::string& id) {
    return Status::NotFound("workflow " + id + " does not exist. Hint: list workflows to find its id");
  }

  static Params WorkflowParams(const std::string& id, const NewWorkflow& w, TimeMs now) {
    Params p;
    p.Key("workflow id", id).Key("workflow name", w.name).Text(w.description).Int(now).JsonText(w.plan);
    return p;
  }

  Result<Workflow> DoCreateWorkflow(Conn& c, const NewWorkflow& w) {
    Workflow out;
    out.id = NewWorkflowId();
    out.name = w.name;
    out.description = w.description;
    out.version = out.latest_version = 1;
    out.plan = w.plan;
    out.created_at = out.updated_at = NowMs();
    auto r = Exec(c, kCreateWorkflow, WorkflowParams(out.id, w, out.created_at), "create workflow");
    if (!r.ok()) {
      if (IsSqlState(r.status(), postgres::kUniqueViolation)) return NameTaken(w.name);
      return r.status();
    }
    return out;
  }

  Result<Workflow> DoUpdateWorkflow(Conn& c, const std::string& id, const NewWorkflow& w) {
    Workflow out;
    out.id = id;
    out.name = w.name;
    out.description = w.description;
    out.plan = w.plan;
    out.updated_at = NowMs();
    auto r = Exec(c, kUpdateWorkflow, WorkflowParams(id, w, out.updated_at), "update workflow");
    if (!r.ok()) {
      if (IsSqlState(r.status(), postgres::kUniqueViolation)) return NameTaken(w.name);
      return r.status();
    }
    if (r->rows() == 0) return WorkflowNotFound(id);
    out.version = out.latest_version = r->Int(0, 0);
    out.created_at = r->Int64(0, 1);
    return out;
  }

  Result<Workflow> OneWorkflow(Conn& c, Sql s, const Params& p, const std::string& not_found_what) {
    auto r = Exec(c, s, p, "read workflow");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) {
      return Status::NotFound(not_found_what + " does not exist. Hint: list workflows to find it");
    }
    Workflow w;
    AF_RETURN_IF_ERROR(ReadWorkflow(*r, 0, &w));
    return w;
  }

  Result<Workflow> DoGetWorkflow(Conn& c, const std::string& id, std::optional<int> version) {
    Params p;
    p.Key("workflow id", id);
    if (version) {
      p.Int(*version);
      return OneWorkflow(c, kGetWorkflowVersion, p, "workflow " + id + " version " + std::to_string(*version));
    }
    return OneWorkflow(c, kGetWorkflowLatest, p, "workflow " + id);
  }

  Result<Page<Workflow>> DoListWorkflows(Conn& c, int limit, const std::string& page_token) {
    auto cursor = DecodeCursor(page_token);
    if (!cursor.ok()) return cursor.status();
    limit = ClampLimit(limit);
    Params p;
    p.Int(cursor->created_at).Key("page token", cursor->id).Int(limit + 1);  // one more: is there another page?
    auto r = Exec(c, kListWorkflows, p, "list workflows");
    if (!r.ok()) return r.status();
    Page<Workflow> page;
    int n = std::min(r->rows(), limit);
    page.items.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) AF_RETURN_IF_ERROR(ReadWorkflow(*r, i, &page.items[i]));
    if (r->rows() > limit) {
      const Workflow& last = page.items.back();
      page.next_page_token = EncodeCursor(last.created_at, last.id);
    }
    return page;
  }

  Result<std::vector<Workflow>> DoListWorkflowVersions(Conn& c, const std::string& id) {
    Params p;
    p.Key("workflow id", id);
    auto r = Exec(c, kListWorkflowVersions, p, "list workflow versions");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return WorkflowNotFound(id);
    std::vector<Workflow> out(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) AF_RETURN_IF_ERROR(ReadWorkflow(*r, i, &out[i]));
    return out;
  }

  Status DoDeleteWorkflow(Conn& c, const std::string& id) {
    Params p;
    p.Key("workflow id", id).Int(NowMs());
    auto r = Exec(c, kDeleteWorkflow, p, "delete workflow");
    if (!r.ok()) return r.status();
    if (r->affected() == 0) return WorkflowNotFound(id);
    return Status::Ok();
  }

  // ---- runs

  static Status RunNotFound(const std::string& id) {
    return Status::NotFound("run " + id + " does not exist. Hint: list runs to find its id");
  }

  // Reads the single run row of `r` (if any).
  static Status OneRun(const PgResult& r, Run* out, bool* found) {
    *found = r.rows() > 0;
    if (*found) AF_RETURN_IF_ERROR(ReadRun(r, 0, out));
    return Status::Ok();
  }

  static Result<std::vector<Run>> AllRuns(const PgResult& r) {
    std::vector<Run> out(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) AF_RETURN_IF_ERROR(ReadRun(r, i, &out[i]));
    return out;
  }

  // The current status of a run, for explaining a failed compare-and-set.
  Result<RunStatus> CurrentRunStatus(Conn& c, const std::string& id) {
    Params p;
    p.Key("run id", id);
    auto r = Exec(c, kGetRunStatus, p, "read run status");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return RunNotFound(id);
    auto s = ParseRunStatus(r->Text(0, 0));
    if (!s) return CorruptStatus("workflow_runs", r->View(0, 0));
    return *s;
  }

  Result<CreatedRun> DoCreateRun(Conn& c, const NewRun& r) {
    CreatedRun out;
    Run& run = out.run;
    run.id = r.id.empty() ? NewRunId() : r.id;
    run.workflow_id = r.workflow_id;
    run.workflow_version = r.workflow_version;
    run.status = RunStatus::kPending;
    run.input = r.input;
    run.idempotency_key = r.idempotency_key;
    run.traceparent = r.traceparent;
    run.attempt = 1;
    run.created_at = run.updated_at = NowMs();
    // No explicit transaction: the INSERT is atomic and, with a key already
    // used, inserts nothing; runs are never deleted, so the existing run is
    // still there for the SELECT (a new statement, so it sees the racing
    // creator's commit that ON CONFLICT waited for).
    Params p;
    p.Key("run id", run.id)
        .Key("workflow id", run.workflow_id)
        .Int(run.workflow_version)
        .Json(run.input)
        .OptKey("idempotency key", run.idempotency_key)
        .Int(run.created_at)
        .Text(run.traceparent, /*empty_is_null=*/true);
    std::shared_lock<std::shared_mutex> fast_path(outbox_mu_, std::defer_lock);
    if (r.dispatch) {
      fast_path.lock();
      p.Key("topic", r.dispatch->topic).Key("key", r.dispatch->key).Key("payload", r.dispatch->payload);
      p.Int(OutboxClaimMs());
    }
    auto ins = Exec(c, r.dispatch ? kInsertRunDispatch : kInsertRun, p, "insert run");
    if (!ins.ok()) {
      if (IsSqlState(ins.status(), postgres::kUniqueViolation)) {
        return Status::AlreadyExists("a run with id " + run.id + " already exists. Hint: omit the id to get a new one");
      }
      if (IsSqlState(ins.status(), postgres::kForeignKeyViolation)) {
        return Status::NotFound("workflow " + run.workflow_id + " has no version " +
                                std::to_string(run.workflow_version) + ". Hint: create the workflow first");
      }
      return ins.status();
    }
    if (ins->affected() == 1) {
      if (r.dispatch) {
        run.dispatched_at = run.created_at;  // approximately: the server's clock set it
        NotifyOutbox(*r.dispatch, *ins, 0);
      }
      return out;
    }
    Params q;
    q.Key("workflow id", run.workflow_id).Key("idempotency key", run.idempotency_key);
    auto sel = Exec(c, kGetRunByKey, q, "read run by idempotency key");
    if (!sel.ok()) return sel.status();
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(*sel, &out.run, &found));
    if (!found) return Status::Internal("postgres: run insert ignored but no run has its idempotency key");
    out.created = false;
    return out;
  }

  // One kInsertRuns statement for the batch (one round trip, one commit);
  // a run it did not insert (key already used, id taken, no such version)
  // or cannot carry (a value to refuse, a repeated id) then goes through
  // DoCreateRun alone, which returns what CreateRun would. Fails as a whole
  // only if the statement fails.
  Result<std::vector<Result<CreatedRun>>> DoCreateRuns(Conn& c, const std::vector<NewRun>& runs) {
    std::vector<std::string> ids(runs.size());
    std::vector<TimeMs> created(runs.size());
    std::vector<size_t> batch, alone;
    std::unordered_set<std::string> seen;
    auto storable = [](const NewRun& r, const std::string& id) {
      if (!postgres::IsStorableText(id) || !postgres::IsStorableText(r.workflow_id) ||
          !postgres::IsStorableText(r.idempotency_key) || r.input.is_null()) {
        return false;
      }
      return !r.dispatch || (!r.dispatch->topic.empty() && postgres::IsStorableText(r.dispatch->topic) &&
                             postgres::IsStorableText(r.dispatch->key) &&
                             postgres::IsStorableText(r.dispatch->payload));
    };
    std::vector<std::string> a_id, a_wf, a_ver, a_input, a_key, a_at, a_trace, a_topic, a_mkey, a_payload;
    for (size_t i = 0; i < runs.size(); ++i) {
      const NewRun& r = runs[i];
      ids[i] = r.id.empty() ? NewRunId() : r.id;
      created[i] = NowMs();
      if (!storable(r, ids[i]) || !seen.insert(ids[i]).second) {
        alone.push_back(i);
        continue;
      }
      batch.push_back(i);
      a_id.push_back(ids[i]);
      a_wf.push_back(r.workflow_id);
      a_ver.push_back(std::to_string(r.workflow_version));
      a_input.push_back(JsonText(r.input));
      a_key.push_back(r.idempotency_key);
      a_at.push_back(std::to_string(created[i]));
      a_trace.push_back(postgres::ToStorableText(r.traceparent));
      a_topic.push_back(r.dispatch ? r.dispatch->topic : "");
      a_mkey.push_back(r.dispatch ? r.dispatch->key : "");
      a_payload.push_back(r.dispatch ? r.dispatch->payload : "");
    }
    std::vector<std::optional<Result<CreatedRun>>> out(runs.size());
    if (!batch.empty()) {
      Params p;
      p.KeyArray("run id", a_id)
          .KeyArray("workflow id", a_wf)
          .KeyArray("version", a_ver)
          .KeyArray("input", a_input)
          .KeyArray("idempotency key", a_key)
          .KeyArray("created_at", a_at)
          .KeyArray("traceparent", a_trace)
          .KeyArray("topic", a_topic)
          .KeyArray("key", a_mkey)
          .KeyArray("payload", a_payload);
      // The writer's fast path (SetOutboxListener) when every message of the
      // batch is told apart by its topic and key (execution requests: the run id).
      std::shared_lock<std::shared_mutex> fast_path(outbox_mu_);
      std::set<std::pair<std::string, std::string>> messages;
      bool distinct = true;
      for (size_t k = 0; k < a_topic.size(); ++k) {
        if (!a_topic[k].empty() && !messages.emplace(a_topic[k], a_mkey[k]).second) distinct = false;
      }
      const int64_t claim = distinct ? OutboxClaimMs() : 0;
      p.Int(claim);
      auto ins = Exec(c, kInsertRuns, p, "insert runs");
      if (!ins.ok()) return ins.status();
      std::unordered_set<std::string> inserted;
      std::map<std::string, int> outbox_row;  // run id → its row in `ins`, if it wrote a message
      for (int row = 0; row < ins->rows(); ++row) {
        inserted.insert(ins->Text(row, 0));
        if (!ins->IsNull(row, 1)) outbox_row[ins->Text(row, 0)] = row;
      }
      if (claim > 0 && outbox_listener_) {
        for (size_t i : batch) {
          auto it = outbox_row.find(ids[i]);
          if (it == outbox_row.end() || !runs[i].dispatch) continue;
          OutboxMessage written = *runs[i].dispatch;
          written.id = ins->Int64(it->second, 1);
          written.created_at = ins->Int64(it->second, 2);
          outbox_listener_(written);
        }
      }
      for (size_t i : batch) {
        if (!inserted.count(ids[i])) {
          alone.push_back(i);
          continue;
        }
        const NewRun& r = runs[i];
        CreatedRun cr;
        Run& run = cr.run;
        run.id = ids[i];
        run.workflow_id = r.workflow_id;
        run.workflow_version = r.workflow_version;
        run.status = RunStatus::kPending;
        run.input = r.input;
        run.idempotency_key = r.idempotency_key;
        run.traceparent = r.traceparent;
        run.attempt = 1;
        run.created_at = run.updated_at = created[i];
        if (r.dispatch) run.dispatched_at = run.created_at;  // approximately: the server's clock set it
        out[i] = std::move(cr);
      }
    }
    std::sort(alone.begin(), alone.end());
    for (size_t i : alone) {
      NewRun r = runs[i];
      r.id = ids[i];
      out[i] = DoCreateRun(c, r);
    }
    std::vector<Result<CreatedRun>> results;
    results.reserve(runs.size());
    for (auto& o : out) results.push_back(std::move(*o));
    return results;
  }

  Result<Run> DoGetRun(Conn& c, const std::string& id) {
    Params p;
    p.Key("run id", id);
    auto r = Exec(c, kGetRun, p, "read run");
    if (!r.ok()) return r.status();
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(*r, &run, &found));
    if (!found) return RunNotFound(id);
    return run;
  }

  Result<Page<Run>> DoListRuns(Conn& c, const RunFilter& f) {
    auto cursor = DecodeCursor(f.page_token);
    if (!cursor.ok()) return cursor.status();
    int limit = ClampLimit(f.limit);
    Sql which = f.workflow_id.empty() ? (f.status ? kListRunsByStatus : kListRuns)
                                      : (f.status ? kListRunsByWorkflowAndStatus : kListRunsByWorkflow);
    Params p;
    p.Int(cursor->created_at).Key("page token", cursor->id);
    if (!f.workflow_id.empty()) p.Key("workflow id", f.workflow_id);
    if (f.status) p.Key("status", ToString(*f.status));
    p.Int(limit + 1);  // one more tells whether another page follows
    auto r = Exec(c, which, p, "list runs");
    if (!r.ok()) return r.status();
    Page<Run> page;
    int n = std::min(r->rows(), limit);
    page.items.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) AF_RETURN_IF_ERROR(ReadRun(*r, i, &page.items[i]));
    if (r->rows() > limit) {
      const Run& last = page.items.back();
      page.next_page_token = EncodeCursor(last.created_at, last.id);
    }
    return page;
  }

  Result<std::vector<Run>> DoListUnfinishedRuns(Conn& c, int limit) {
    Params p;
    p.Int(std::max(limit, 1));
    auto r = Exec(c, kListUnfinishedRuns, p, "list unfinished runs");
    if (!r.ok()) return r.status();
    return AllRuns(*r);
  }

  Result<std::vector<CancelRequest>> DoListCancelRequests(Conn& c, const std::vector<std::string>& run_ids) {
    Params p;
    p.KeyArray("run id", run_ids);
    auto r = Exec(c, kListCancelRequests, p, "list cancel requests");
    if (!r.ok()) return r.status();
    std::vector<CancelRequest> out;
    out.reserve(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) out.push_back(CancelRequest{r->Text(i, 0), r->Text(i, 1), r->Text(i, 2)});
    return out;
  }

  Result<std::vector<std::pair<std::string, RunStatus>>> DoGetRunStatuses(Conn& c,
                                                                          const std::vector<std::string>& run_ids) {
    Params p;
    p.KeyArray("run id", run_ids);
    auto r = Exec(c, kGetRunStatuses, p, "read run statuses");
    if (!r.ok()) return r.status();
    std::vector<std::pair<std::string, RunStatus>> out;
    out.reserve(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) {
      std::string status = r->Text(i, 1);
      auto parsed = ParseRunStatus(status);
      if (!parsed) return CorruptStatus("workflow_runs", status);
      out.emplace_back(r->Text(i, 0), *parsed);
    }
    return out;
  }

  Result<std::vector<StepProgress>> DoGetStepProgress(Conn& c, const std::vector<std::string>& run_ids) {
    Params p;
    p.KeyArray("run id", run_ids);
    auto r = Exec(c, kGetStepProgress, p, "read step progress");
    if (!r.ok()) return r.status();
    std::vector<StepProgress> out;
    out.reserve(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) out.push_back({r->Text(i, 0), r->Int64(i, 1), r->Int64(i, 2)});
    return out;
  }

  static Params TransitionParams(const RunTransition& t) {
    Params p;
    p.Key("run id", t.run_id)
        .Key("status", ToString(t.from))
        .Key("status", ToString(t.to))
        .Int(NowMs())
        .Bool(t.to == RunStatus::kRunning)
        .Bool(IsTerminal(t.to))
        .Bool(t.to == RunStatus::kPending)
        .Bool(t.output.has_value());
    if (t.output) {
      p.Json(*t.output);
    } else {
      p.Null();
    }
    p.Bool(t.error_message.has_value());
    if (t.error_message) {
      p.Text(*t.error_message, /*empty_is_null=*/true);
    } else {
      p.Null();
    }
    p.Bool(t.input.has_value());
    if (t.input) {
      p.Json(*t.input);
    } else {
      p.Null();
    }
    p.Int(t.lease_token).Bool(t.dispatch.has_value());
    return p;  // DoTransitionRun adds the dispatch's parameters
  }

  Result<Run> DoTransitionRun(Conn& c, const RunTransition& t) {
    AF_RETURN_IF_ERROR(CheckTransition(t.from, t.to));
    Params p = TransitionParams(t);
    std::shared_lock<std::shared_mutex> fast_path(outbox_mu_, std::defer_lock);
    if (t.dispatch) {
      fast_path.lock();
      p.Key("topic", t.dispatch->topic).Key("key", t.dispatch->key).Key("payload", t.dispatch->payload);
      p.Int(OutboxClaimMs());
    }
    auto r = Exec(c, t.dispatch ? kTransitionRunDispatch : kTransitionRun, p, "transition run");
    if (!r.ok()) return r.status();
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(*r, &run, &found));
    if (found) {
      if (t.dispatch) NotifyOutbox(*t.dispatch, *r, kRunColumns);
      return run;
    }
    // The compare-and-set matched nothing: say why.
    auto current = CurrentRunStatus(c, t.run_id);
    if (!current.ok()) return current.status();
    if (*current == t.from && t.lease_token != 0) return LeaseLost(t.run_id, t.lease_token);
    return Status::FailedPrecondition(
        "run " + t.run_id + " is " + ToString(*current) + ", not " + ToString(t.from) +
            ". Hint: another writer changed it; read the run again",
        {{"current", ToString(*current)}, {"expected", ToString(t.from)}, {"to", ToString(t.to)}});
  }

  static Params StartParams(const RunStart& s) {
    Params p;
    p.Key("run id", s.run_id).Key("lease owner", s.owner).Int(s.ttl_ms).Json(s.input).Int(NowMs());
    return p;
  }

  Result<Run> DoStartRun(Conn& c, const RunStart& s) {
    Params p = StartParams(s);
    auto r = Exec(c, kStartRun, p, "start run");
    if (!r.ok()) return r.status();
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(*r, &run, &found));
    if (!found) return StartRefused(s.run_id);
    return run;
  }

  Result<Run> DoRequestCancel(Conn& c, const CancelRequest& req) {
    Params p;
    p.Key("run id", req.run_id).Text(req.cancelled_by, true).Text(req.reason, true).Int(NowMs());
    auto r = Exec(c, kRequestCancel, p, "request cancel");
    if (!r.ok()) return r.status();
    Run run;
    bool found = false;
    AF_RETURN_IF_ERROR(OneRun(*r, &run, &found));
    if (found) return run;
    auto current = CurrentRunStatus(c, req.run_id);
    if (!current.ok()) return current.status();
    return Status::FailedPrecondition(
        "run " + req.run_id + " already finished as " + ToString(*current) + "; there is nothing to cancel",
        {{"current", ToString(*current)}});
  }

  // ---- step executions

  static Params InsertStepParams(const StepExecution& s, int64_t lease_token) {
    TimeMs now = NowMs();
    Params p;
    p.Key("run id", s.run_id).Key("step id", s.step_id);
    if (s.item_index) {
      p.Int(*s.item_index);
    } else {
      p.Null();
    }
    p.Key("agent name", s.agent_name)
        .Int(s.attempt)
        .Key("status", ToString(s.status))
        .Json(s.input)
        .Json(s.output)
        .Text(s.error_message, /*empty_is_null=*/true)
        .Int(s.started_at != 0 ? s.started_at : now);
    if (IsTerminal(s.status)) {
      p.Int(s.completed_at.value_or(now));
    } else {
      p.Null();
    }
    p.Int(lease_token);
    return p;
  }

  Result<int64_t> DoInsertStep(Conn& c, const StepExecution& s, int64_t lease_token) {
    AF_RETURN_IF_ERROR(CheckTransition(std::nullopt, s.status));
    Params p = InsertStepParams(s, lease_token);
    auto r = Exec(c, kInsertStep, p, "insert step execution");
    if (!r.ok()) {
      if (IsSqlState(r.status(), postgres::kForeignKeyViolation)) return RunNotFound(s.run_id);
      return r.status();
    }
    if (r->rows() == 0 && lease_token != 0) {
      auto current = CurrentRunStatus(c, s.run_id);  // NotFound if there is no such run
      if (!current.ok()) return current.status();
      return LeaseLost(s.run_id, lease_token);
    }
    if (r->rows() != 1) return Status::Internal("postgres: step insert returned no id");
    return r->Int64(0, 0);
  }

  // A statement without parameters (BEGIN, COMMIT, ROLLBACK).
  static Status ExecCommand(Conn& c, const char* sql) {
    PgResult r(PQexec(c.pg, sql));
    if (r.ok()) return Status::Ok();
    if (ConnectionLost(c.pg, r.SqlState())) c.broken = true;
    return PgError(c.pg, r, sql);
  }

  // ApplyRunWrites' common case in one round trip: every op of every batch
  // in `group`, in its strict form, sent at once in a libpq pipeline and
  // committed at its sync (the statements before a sync are one implicit
  // transaction). True: committed, outs[i] filled for group[i]. False:
  // rolled back (an op matched nothing, which the strict forms turn into an
  // error, or failed); the caller retries batch by batch, op by op, to say
  // why. An error: the connection failed, or what committed did not read
  // back.
  Result<bool> TryPipelinedRunWrites(Conn& c, const std::vector<const RunWrites*>& group,
                                     std::vector<RunWritesResult>* outs) {
    struct Op {
      size_t batch;
      size_t index;  // in its batch
    };
    // One statement of the pipeline: one op, or several of one kind in one
    // statement (kInsertStepsStrict, kFinishStepsStrict).
    struct Stmt {
      Sql sql;
      Params params;
      std::vector<Op> ops;
    };
    std::vector<Stmt> single;  // one per op, in the group's order
    outs->assign(group.size(), RunWritesResult{});
    bool canonical = true;  // every batch: a start only first, a transition only last
    for (size_t b = 0; b < group.size(); ++b) {
      const RunWrites& w = *group[b];
      (*outs)[b].step_ids.assign(w.ops.size(), 0);
      for (size_t i = 0; i < w.ops.size(); ++i) {
        const RunWrite& op = w.ops[i];
        Stmt st{kPing, Params(), {Op{b, i}}};
        switch (op.kind) {
          case RunWrite::Kind::kInsertStep:
            if (!CheckTransition(std::nullopt, op.insert.status).ok()) return false;
            st.params = InsertStepParams(op.insert, w.lease_token);
            st.sql = kInsertStepStrict;
            break;
          case RunWrite::Kind::kFinishStep:
            if (!CheckTransition(StepStatus::kRunning, op.finish.to).ok()) return false;
            st.params = FinishStepParams(op.finish, w.lease_token);
            st.sql = kFinishStepStrict;
            break;
          case RunWrite::Kind::kTransition: {
            if (!CheckTransition(op.transition.from, op.transition.to).ok()) return false;
            RunTransition t = op.transition;
            t.lease_token = w.lease_token;
            st.params = TransitionParams(t);
            st.sql = kTransitionRunStrict;
            if (i + 1 != w.ops.size()) canonical = false;
            break;
          }
          case RunWrite::Kind::kStart:
            st.params = StartParams(op.start);
            st.sql = kStartRunStrict;
            if (i != 0) canonical = false;
            break;
        }
        if (!st.params.status().ok()) return false;
        single.push_back(std::move(st));
      }
    }
    std::vector<Stmt> stmts = CoalescedRunWrites(std::move(single), canonical);
    for (const Stmt& st : stmts) {
      if (!st.params.status().ok()) return false;
    }
    auto lost = [&c](const char* what) -> Status {
      c.broken = true;
      return Status::Unavailable(std::string("postgres: ") + what + ": " + PQerrorMessage(c.pg));
    };
    if (PQtransactionStatus(c.pg) != PQTRANS_IDLE) return false;  // inside a transaction: no implicit one
    if (PQenterPipelineMode(c.pg) != 1) return false;
    bool sent = true;
    for (size_t i = 0; sent && i < stmts.size(); ++i) {
      std::vector<const char*> values = stmts[i].params.Pointers();
      sent = PQsendQueryPrepared(c.pg, StatementNames()[stmts[i].sql].c_str(), stmts[i].params.size(), values.data(),
                                 nullptr, nullptr, 0) == 1;
    }
    if (sent) sent = PQpipelineSync(c.pg) == 1;
    if (!sent) return lost("sending a pipeline");
    bool failed = false;     // a statement failed: everything was rolled back
    std::string unreadable;  // committed, but a result did not read as expected
    // One result per command (each followed by a null), then the sync.
    for (const Stmt& st : stmts) {
      PgResult r(PQgetResult(c.pg));
      if (r.get() == nullptr) return lost("reading a pipeline");
      while (PGresult* extra = PQgetResult(c.pg)) PQclear(extra);
      if (failed || !r.ok()) {
        failed = true;  // the rest come back PGRES_PIPELINE_ABORTED
        continue;
      }
      if (st.sql == kInsertStepsStrict) {
        if (r.rows() != static_cast<int>(st.ops.size())) {
          unreadable =
              "an insert of " + std::to_string(st.ops.size()) + " steps returned " + std::to_string(r.rows()) + " rows";
          continue;
        }
        for (size_t k = 0; k < st.ops.size(); ++k) {
          (*outs)[st.ops[k].batch].step_ids[st.ops[k].index] = r.Int64(static_cast<int>(k), 0);
        }
        continue;
      }
      if (r.rows() != 1) {
        unreadable = "a strict write returned " + std::to_string(r.rows()) + " rows";
        continue;
      }
      if (st.sql == kFinishStepsStrict) continue;
      const Op& op = st.ops.front();
      RunWritesResult& out = (*outs)[op.batch];
      switch (group[op.batch]->ops[op.index].kind) {
        case RunWrite::Kind::kInsertStep:
          out.step_ids[op.index] = r.Int64(0, 0);
          break;
        case RunWrite::Kind::kFinishStep:
          break;
        case RunWrite::Kind::kTransition:
        case RunWrite::Kind::kStart: {
          Run run;
          bool found = false;
          Status read = OneRun(r, &run, &found);
          if (!read.ok()) {
            unreadable = read.ToString();
          } else {
            out.run = std::move(run);
          }
          break;
        }
      }
    }
    // The sync; a commit that fails there comes as an error result first.
    PgResult sync(PQgetResult(c.pg));
    if (sync.get() != nullptr && PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
      failed = true;
      while (PGresult* extra = PQgetResult(c.pg)) PQclear(extra);
      sync = PgResult(PQgetResult(c.pg));
    }
    if (sync.get() == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) return lost("ending a pipeline");
    if (PQexitPipelineMode(c.pg) != 1) return lost("leaving pipeline mode");
    if (PQtransactionStatus(c.pg) != PQTRANS_IDLE) return lost("a pipeline left a transaction open");
    if (failed) return false;
    if (!unreadable.empty()) return Status::Internal("postgres: run writes committed, but " + unreadable);
    return true;
  }

  // TryPipelinedRunWrites' statements: `single` (one per op, in the group's
  // order) as they are, or, when there are several step inserts or several
  // step finishes and every batch is `canonical` (a start only first, a
  // transition only last), in the order starts, finishes, inserts,
  // transitions, with the finishes and the inserts each one statement (two
  // or more) instead of one per row. Per statement a row costs PostgreSQL
  // ~25-35 µs; the many-row forms take a 40-element fan-out's commit from
  // ~2 ms to well under half that (docs/benchmarks.md). The reordering
  // keeps what the transaction writes: a start comes before its batch's
  // other writes (their fence reads the token it sets), a transition after
  // them, and rows of different batches are independent.
  template <typename Stmt>
  static std::vector<Stmt> CoalescedRunWrites(std::vector<Stmt> single, bool canonical) {
    std::vector<size_t> starts, finishes, inserts, transitions;
    for (size_t i = 0; i < single.size(); ++i) {
      switch (single[i].sql) {
        case kStartRunStrict:
          starts.push_back(i);
          break;
        case kFinishStepStrict:
          finishes.push_back(i);
          break;
        case kInsertStepStrict:
          inserts.push_back(i);
          break;
        default:
          transitions.push_back(i);
          break;
      }
    }
    if (!canonical || (finishes.size() < 2 && inserts.size() < 2)) return single;
    std::vector<Stmt> out;
    auto add = [&](const std::vector<size_t>& which, Sql many) {
      if (which.size() < 2) {
        for (size_t i : which) out.push_back(std::move(single[i]));
        return;
      }
      std::vector<const Params*> rows;
      Stmt st{many, Params(), {}};
      for (size_t i : which) {
        rows.push_back(&single[i].params);
        st.ops.push_back(single[i].ops.front());
      }
      st.params = Params::Columns(rows);
      out.push_back(std::move(st));
    };
    for (size_t i : starts) out.push_back(std::move(single[i]));  // each returns its run
    add(finishes, kFinishStepsStrict);
    add(inserts, kInsertStepsStrict);
    for (size_t i : transitions) out.push_back(std::move(single[i]));
    return out;
  }

  std::vector<Result<RunWritesResult>> DoApplyRunWritesGroup(Conn& c, const std::vector<const RunWrites*>& group) {
    std::vector<Result<RunWritesResult>> out(group.size(), Status::Internal("not applied"));
    // Batches the checks refuse get their error and stay out of the group.
    // The rest go in run id order: every writer that locks several runs'
    // rows (this, kRenewLeases) takes them in that order, so two of them
    // never wait for each other.
    std::vector<size_t> order(group.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&group](size_t a, size_t b) { return group[a]->run_id < group[b]->run_id; });
    std::vector<const RunWrites*> valid;
    std::vector<size_t> where;
    for (size_t i : order) {
      Status st = CheckRunWrites(*group[i]);
      if (!st.ok()) {
        out[i] = st;
      } else {
        valid.push_back(group[i]);
        where.push_back(i);
      }
    }
    if (valid.size() > 1) {
      std::vector<RunWritesResult> results;
      auto fast = TryPipelinedRunWrites(c, valid, &results);
      if (!fast.ok()) {
        for (size_t i : where) out[i] = fast.status();
        return out;
      }
      if (*fast) {
        for (size_t k = 0; k < valid.size(); ++k) out[where[k]] = std::move(results[k]);
        return out;
      }
      // Rolled back: one batch at a time says which failed and why.
    }
    for (size_t k = 0; k < valid.size(); ++k) {
      if (c.broken) {
        out[where[k]] = Status::Unavailable("postgres: the connection was lost");
        continue;
      }
      out[where[k]] = ApplyCheckedRunWrites(c, *valid[k]);
    }
    return out;
  }

  Result<RunWritesResult> DoApplyRunWrites(Conn& c, const RunWrites& w) {
    AF_RETURN_IF_ERROR(CheckRunWrites(w));
    return ApplyCheckedRunWrites(c, w);
  }

  // DoApplyRunWrites for a batch CheckRunWrites accepted.
  Result<RunWritesResult> ApplyCheckedRunWrites(Conn& c, const RunWrites& w) {
    RunWritesResult out;
    out.step_ids.assign(w.ops.size(), 0);
    const bool txn = w.ops.size() > 1;
    if (txn) {
      std::vector<RunWritesResult> results;
      auto fast = TryPipelinedRunWrites(c, {&w}, &results);
      if (!fast.ok()) return fast.status();
      if (*fast) return std::move(results[0]);
      // Something did not go as expected (rolled back): the ops one by one
      // say what, or succeed if a race settled meanwhile.
    }
    if (txn) AF_RETURN_IF_ERROR(ExecCommand(c, "BEGIN"));
    auto fail = [&](const Status& st, size_t i) -> Status {
      if (txn && !c.broken) {
        Status rb = ExecCommand(c, "ROLLBACK");
        if (!rb.ok()) c.broken = true;  // never hand out a connection inside a transaction
      }
      return WithOpIndex(st, i);
    };
    for (size_t i = 0; i < w.ops.size(); ++i) {
      const RunWrite& op = w.ops[i];
      switch (op.kind) {
        case RunWrite::Kind::kInsertStep: {
          auto id = DoInsertStep(c, op.insert, w.lease_token);
          if (!id.ok()) return fail(id.status(), i);
          out.step_ids[i] = *id;
          break;
        }
        case RunWrite::Kind::kFinishStep: {
          StepFinish f = op.finish;
          f.lease_token = w.lease_token;
          Status st = DoFinishStep(c, f);
          if (!st.ok()) return fail(st, i);
          break;
        }
        case RunWrite::Kind::kTransition: {
          RunTransition t = op.transition;
          t.lease_token = w.lease_token;
          auto run = DoTransitionRun(c, t);
          if (!run.ok()) return fail(run.status(), i);
          out.run = std::move(run).value();
          break;
        }
        case RunWrite::Kind::kStart: {
          auto run = DoStartRun(c, op.start);
          if (!run.ok()) return fail(run.status(), i);
          out.run = std::move(run).value();
          break;
        }
      }
    }
    if (txn) {
      Status st = ExecCommand(c, "COMMIT");
      if (!st.ok()) {
        if (PQtransactionStatus(c.pg) != PQTRANS_IDLE) c.broken = true;
        return st;
      }
    }
    return out;
  }

  static Params FinishStepParams(const StepFinish& f, int64_t lease_token) {
    Params p;
    p.Int(f.id)
        .Key("run id", f.run_id)
        .Key("status", ToString(f.to))
        .Json(f.output)
        .Text(f.error_message, /*empty_is_null=*/true)
        .Int(NowMs())
        .Int(lease_token);
    return p;
  }

  Status DoFinishStep(Conn& c, const StepFinish& f) {
    AF_RETURN_IF_ERROR(CheckTransition(StepStatus::kRunning, f.to));
    Params p = FinishStepParams(f, f.lease_token);
    auto r = Exec(c, kFinishStep, p, "finish step execution");
    if (!r.ok()) return r.status();
    if (r->affected() == 1) return Status::Ok();
    Params q;
    q.Int(f.id).Key("run id", f.run_id);
    auto st = Exec(c, kGetStepStatus, q, "read step execution status");
    if (!st.ok()) return st.status();
    if (st->rows() == 0) {
      return Status::NotFound("run " + f.run_id + " has no step execution " + std::to_string(f.id));
    }
    std::string current = st->Text(0, 0);
    if (current == "RUNNING" && f.lease_token != 0) return LeaseLost(f.run_id, f.lease_token);
    return Status::FailedPrecondition(
        "step execution " + std::to_string(f.id) + " is already " + current + ", not RUNNING",
        {{"current", current}, {"expected", "RUNNING"}, {"to", ToString(f.to)}});
  }

  Result<RunLease> DoAcquireRunLease(Conn& c, const std::string& run_id, const std::string& owner, int64_t ttl_ms) {
    Params p;
    p.Key("run id", run_id).Key("lease owner", owner).Int(ttl_ms);
    auto r = Exec(c, kAcquireLease, p, "acquire lease");
    if (!r.ok()) return r.status();
    if (r->rows() == 1) {
      RunLease lease{run_id, owner, 0, 0, {}};
      AF_RETURN_IF_ERROR(ReadRun(*r, 0, &lease.run));
      lease.token = lease.run.lease_token;
      lease.expires_at = lease.run.lease_expires_at.value_or(0);
      return lease;
    }
    Params q;
    q.Key("run id", run_id);
    auto st = Exec(c, kGetLeaseState, q, "read lease");
    if (!st.ok()) return st.status();
    if (st->rows() == 0) return RunNotFound(run_id);
    std::string status = st->Text(0, 0);
    auto parsed = ParseRunStatus(status);
    if (!parsed) return CorruptStatus("workflow_runs", status);
    if (IsTerminal(*parsed)) {
      return Status::FailedPrecondition("run " + run_id + " already finished as " + status, {{"current", status}});
    }
    int64_t now = st->Int64(0, 3);
    int64_t left = std::max<int64_t>(st->OptInt64(0, 2).value_or(now) - now, 0);
    std::string holder = st->Text(0, 1);
    return Status::Aborted("run " + run_id + " is being executed by " + holder + " (lease for another " +
                               std::to_string(left) + " ms)",
                           {{"lease_owner", holder}, {"retry_after_ms", left}});
  }

  Result<std::vector<StepExecution>> DoListSteps(Conn& c, const std::string& run_id) {
    Params p;
    p.Key("run id", run_id);
    auto r = Exec(c, kListSteps, p, "list step executions");
    if (!r.ok()) return r.status();
    std::vector<StepExecution> out(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) AF_RETURN_IF_ERROR(ReadStep(*r, i, &out[i]));
    return out;
  }

  // ---- agents

  static Status AgentNotFound(const std::string& name) {
    return Status::NotFound("agent '" + name + "' is not registered. Hint: list agents to see the names");
  }

  Result<Agent> DoPutAgent(Conn& c, const Agent& a, bool replace) {
    Agent out = a;
    out.created_at = out.updated_at = NowMs();
    out.health = AgentHealth::kUnknown;
    out.health_error.clear();
    out.last_seen_at.reset();
    out.health_checked_at.reset();
    Params p;
    p.Key("agent name", a.name)
        .Key("agent url", a.url)
        .Int(a.timeout_ms)
        .Int(a.max_concurrency)
        .Json(a.metadata)
        .Int(out.created_at)
        .Key("agent transport", ToString(a.transport))
        .OptKey("agent topic", a.topic)
        .OptKey("agent health_url", a.health_url);
    auto r = Exec(c, replace ? kUpsertAgent : kInsertAgent, p, replace ? "upsert agent" : "insert agent");
    if (!r.ok()) {
      if (!replace && IsSqlState(r.status(), postgres::kUniqueViolation)) {
        return Status::AlreadyExists("agent '" + a.name +
                                     "' is already registered. Hint: update it instead, or choose another name");
      }
      return r.status();
    }
    if (replace && r->rows() == 1) AF_RETURN_IF_ERROR(ReadAgent(*r, 0, &out));  // created_at, health kept
    return out;
  }

  Result<Agent> DoGetAgent(Conn& c, const std::string& name) {
    Params p;
    p.Key("agent name", name);
    auto r = Exec(c, kGetAgent, p, "read agent");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return AgentNotFound(name);
    Agent a;
    AF_RETURN_IF_ERROR(ReadAgent(*r, 0, &a));
    return a;
  }

  Result<std::vector<Agent>> DoListAgents(Conn& c) {
    auto r = Exec(c, kListAgents, Params(), "list agents");
    if (!r.ok()) return r.status();
    std::vector<Agent> out(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) AF_RETURN_IF_ERROR(ReadAgent(*r, i, &out[i]));
    return out;
  }

  Status DoDeleteAgent(Conn& c, const std::string& name) {
    Params p;
    p.Key("agent name", name);
    auto r = Exec(c, kDeleteAgent, p, "delete agent");
    if (!r.ok()) return r.status();
    if (r->affected() == 0) return AgentNotFound(name);
    return Status::Ok();
  }

  Status DoRecordAgentHealth(Conn& c, const AgentHealthUpdate& u) {
    Params p;
    p.Key("agent name", u.name)
        .Key("agent health", ToString(u.health))
        .Text(u.health == AgentHealth::kUnhealthy ? u.error : std::string(), /*empty_is_null=*/true)
        .Int(u.at)
        .Bool(u.health == AgentHealth::kHealthy);
    auto r = Exec(c, kRecordAgentHealth, p, "record agent health");
    if (!r.ok()) return r.status();
    if (r->affected() == 0) return AgentNotFound(u.name);
    return Status::Ok();
  }

  // ---- API keys

  static Status ApiKeyNotFound(const std::string& id) {
    return Status::NotFound("API key " + id + " does not exist. Hint: 'agentflow apikey list' shows the keys");
  }

  Result<ApiKey> DoCreateApiKey(Conn& c, const ApiKey& k) {
    ApiKey out = k;
    out.created_at = NowMs();
    out.last_used_at.reset();
    out.revoked_at.reset();
    Params p;
    p.Key("API key id", k.id).Text(k.name).Key("API key role", ToString(k.role)).Key("API key hash", k.secret_hash);
    p.Int(out.created_at);
    auto r = Exec(c, kInsertApiKey, p, "insert API key");
    if (!r.ok()) {
      if (IsSqlState(r.status(), postgres::kUniqueViolation)) {
        return Status::AlreadyExists("API key " + k.id + " already exists");
      }
      return r.status();
    }
    return out;
  }

  Result<ApiKey> DoGetApiKey(Conn& c, const std::string& id) {
    Params p;
    p.Key("API key id", id);
    if (!p.status().ok()) return ApiKeyNotFound(id);  // not storable, so not stored
    auto r = Exec(c, kGetApiKey, p, "read API key");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return ApiKeyNotFound(id);
    ApiKey k;
    AF_RETURN_IF_ERROR(ReadApiKey(*r, 0, &k));
    return k;
  }

  Result<std::vector<ApiKey>> DoListApiKeys(Conn& c) {
    auto r = Exec(c, kListApiKeys, Params(), "list API keys");
    if (!r.ok()) return r.status();
    std::vector<ApiKey> out(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) AF_RETURN_IF_ERROR(ReadApiKey(*r, i, &out[i]));
    return out;
  }

  Result<ApiKey> DoRevokeApiKey(Conn& c, const std::string& id) {
    Params p;
    p.Key("API key id", id).Int(NowMs());
    if (!p.status().ok()) return ApiKeyNotFound(id);
    auto r = Exec(c, kRevokeApiKey, p, "revoke API key");
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return ApiKeyNotFound(id);
    ApiKey k;
    AF_RETURN_IF_ERROR(ReadApiKey(*r, 0, &k));
    return k;
  }

  Status DoRecordApiKeyUse(Conn& c, const std::string& id, TimeMs at) {
    Params p;
    p.Key("API key id", id).Int(at);
    if (!p.status().ok()) return ApiKeyNotFound(id);
    auto r = Exec(c, kRecordApiKeyUse, p, "record API key use");
    if (!r.ok()) return r.status();
    if (r->affected() == 0) return ApiKeyNotFound(id);
    return Status::Ok();
  }

  const bool notify_run_ends_;
  postgres::RunEndNotifier run_ends_;  // after every commit that ended a run, if notify_run_ends_
  Pool pool_;
  int pool_size_ = 1;
  std::shared_mutex outbox_mu_;     // guards the two below (see OutboxClaimMs)
  OutboxListener outbox_listener_;  // empty: no fast path
  int64_t outbox_claim_ms_ = 0;
};

Result<std::unique_ptr<Store>> PostgresStore::Open(const PostgresOptions& o) {
  if (o.pool_size < 1) {
    return Status::InvalidArgument("postgres: pool_size must be at least 1, not " + std::to_string(o.pool_size));
  }
  auto target = postgres::DescribeUrl(o.url);
  if (!target.ok()) return target.status();
  auto pg = postgres::Connect(o.url, *target, o.connect_timeout);
  if (!pg.ok()) return pg.status();
  auto first = std::make_unique<Conn>();  // owns the connection from here on
  first->pg = *pg;
  if (o.apply_migrations) {
    AF_RETURN_IF_ERROR(postgres::ApplyMigrations(first->pg, postgres::EmbeddedMigrations(), nullptr));
  } else {
    AF_RETURN_IF_ERROR(postgres::CheckMigrations(first->pg, postgres::EmbeddedMigrations()));
  }
  AF_RETURN_IF_ERROR(PrepareAll(first->pg));
  return std::unique_ptr<Store>(new PostgresStore(o, *target, std::move(first)));
}

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options) {
  return Guarded([&] { return PostgresStore::Open(options); });
}

Status MigratePostgres(const std::string& url, std::vector<std::string>* applied) {
  return Guarded([&]() -> Status {
    auto target = postgres::DescribeUrl(url);
    if (!target.ok()) return target.status();
    auto pg = postgres::Connect(url, *target, PostgresOptions{}.connect_timeout);
    if (!pg.ok()) return pg.status();
    Conn conn;  // closes the connection on every path
    conn.pg = *pg;
    return postgres::ApplyMigrations(conn.pg, postgres::EmbeddedMigrations(), applied);
  });
}

}  // namespace af
