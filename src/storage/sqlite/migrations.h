// Versioned schema migrations of the SQLite store. The numbered files in
// migrations/ (0001_initial.sql, ...) are the source of truth; the build embeds
// them (embed_migrations.cmake), so a binary carries its schema.
//
// Private to the SQLite backend. Thread-safety: ApplyMigrations uses the given
// connection; the caller must not use it concurrently.
#pragma once

#include <span>

#include <sqlite3.h>

#include "common/status.h"

namespace af::sqlite {

struct Migration {
  int version;       // from the file name's number; strictly increasing
  const char* name;  // the file name, e.g. "0001_initial.sql"
  const char* sql;   // one or more statements
};

// The migrations built into this binary, in version order.
std::span<const Migration> EmbeddedMigrations();

// Applies, in version order and in one IMMEDIATE transaction, every migration
// not yet recorded in schema_migrations(version, applied_at), recording each.
// Already applied versions are skipped, so reopening applies only new ones and
// concurrent openers (other processes) apply each migration once. On any
// error nothing is applied. FailedPrecondition if the database records a
// version newer than any in `migrations` (a newer binary wrote it).
Status ApplyMigrations(sqlite3* db, std::span<const Migration> migrations);

// Maps a SQLite result code to a Status: SQLITE_BUSY/LOCKED → Unavailable
// (retryable), anything else → Internal; the message names `what` and
// carries SQLite's own message.
Status SqliteError(sqlite3* db, int rc, const std::string& what);

}  // namespace af::sqlite
