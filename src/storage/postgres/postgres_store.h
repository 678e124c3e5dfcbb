// PostgresStore: the Store on a PostgreSQL database (libpq), for deployments
// where several agentflow processes (API, executors) share one database.
// Same semantics as SqliteStore; both pass the conformance suite in
// storage/store_conformance.h.
//
// - A pool of up to `pool_size` connections: a call takes one, runs its
//   statement(s) and returns it; every statement is prepared once per
//   connection and parameterised (no SQL is ever built from values).
// - Most calls are one round trip (compare-and-set UPDATE ... RETURNING,
//   INSERT ... RETURNING, single-statement CTEs for multi-row writes).
// - When the server goes away (restart, failover, network), the call that
//   finds its connection dead fails with Unavailable (retryable) and the
//   connection is replaced; idle connections are checked before use, so once
//   the server is back the next calls succeed without reopening the store.
// - Errors: unique violations become AlreadyExists where store.h says so;
//   connection loss, serialization failures, deadlocks, "too many
//   connections" and shutdowns become Unavailable; anything else Internal
//   (details carry the SQLSTATE). Nothing throws out of the store.
// - Text: PostgreSQL cannot store U+0000 or invalid UTF-8 in TEXT. JSON is
//   kept as its serialized text (U+0000 escaped), so any JSON round-trips.
//   Ids, names, keys and URLs containing NUL or invalid UTF-8 are refused
//   (InvalidArgument); free text (descriptions, error messages, who/why of a
//   cancellation) has such bytes replaced by U+FFFD rather than failing the
//   write.
//
// The database must use the UTF8 (or SQL_ASCII) encoding.
//
// Thread-safety: safe from any thread; calls beyond pool_size wait for a
// free connection (up to acquire_timeout).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "storage/store.h"

namespace af {

struct PostgresOptions {
  // A libpq connection URI ("postgresql://user:pass@host:5432/db?sslmode=...")
  // or key=value string. Parameters given here override the defaults below.
  std::string url;
  // Most connections open at once. More allow more concurrent calls (the
  // executor's step writes) at the cost of server memory (~10 MB each).
  int pool_size = 8;
  // How long opening one connection may take before the call fails with
  // Unavailable. libpq counts whole seconds (at least 2).
  std::chrono::milliseconds connect_timeout{5000};
  // How long a call waits for a free connection when all pool_size are busy
  // before failing with Unavailable.
  std::chrono::milliseconds acquire_timeout{10000};
  // Apply pending schema migrations on open. Off: the open fails with
  // FailedPrecondition unless the schema is exactly this binary's (for
  // deployments that run `agentflow migrate` as a separate step).
  bool apply_migrations = true;
  // After every commit that ends a run, NOTIFY agentflow_run_ends (from a
  // connection of its own, at most every 5 ms; run_ends.h), which an api's
  // ?wait hears at once instead of on its next 10 ms read. Off by default:
  // it lowered chain10 throughput with 64 in flight in most measured runs
  // (docs/benchmarks.md, item 35).
  bool notify_run_ends = false;
};

// Connects (one connection, to fail early on a wrong URL or credentials),
// checks the encoding, applies or checks migrations, and prepares the
// statements. InvalidArgument for a malformed URL; Unavailable if the server
// cannot be reached; FailedPrecondition for a schema this binary cannot use.
Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options);

// Applies the schema migrations built into this binary that the database at
// `url` lacks (for `agentflow migrate --database-url URL`). Idempotent and
// safe when several processes migrate at once (they serialize on an advisory
// lock and apply each version once). If `applied` is given, it receives the
// file names of the migrations this call applied (empty: already up to date).
// FailedPrecondition if the database records a newer version than this
// binary knows.
Status MigratePostgres(const std::string& url, std::vector<std::string>* applied = nullptr);

}  // namespace af
