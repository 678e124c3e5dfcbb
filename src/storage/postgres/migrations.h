// Versioned schema migrations of the PostgreSQL store. The numbered files in
// migrations/ (0001_initial.sql, ...) are the source of truth; the build
// embeds them (src/storage/sqlite/embed_migrations.cmake, shared with the
// SQLite backend), so a binary carries its schema.
//
// Private to the PostgreSQL backend. Thread-safety: the functions use the
// given connection; the caller must not use it concurrently.
#pragma once

#include <libpq-fe.h>

#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace af::postgres {

struct Migration {
  int version;       // from the file name's number; strictly increasing
  const char* name;  // the file name, e.g. "0001_initial.sql"
  const char* sql;   // one or more statements
};

// The migrations built into this binary, in version order.
std::span<const Migration> EmbeddedMigrations();

// Applies, in version order and in one transaction, every migration not yet
// recorded in schema_migrations(version, name, applied_at), recording each.
// The transaction first takes a transaction-scoped advisory lock, then reads
// the applied versions, so concurrent migrators (other processes) wait for
// each other and apply each version once. On any error nothing is applied.
// FailedPrecondition if the database records a version newer than any in
// `migrations`. `applied` (optional) receives the names applied.
Status ApplyMigrations(PGconn* conn, std::span<const Migration> migrations, std::vector<std::string>* applied);

// OK if the database records exactly the versions in `migrations`;
// FailedPrecondition (with a hint to run `agentflow migrate`) if it lacks
// some or records a newer one.
Status CheckMigrations(PGconn* conn, std::span<const Migration> migrations);

}  // namespace af::postgres
