#include "storage/sqlite/migrations.h"

#include <cstdint>
#include <set>
#include <string>

#include "common/time.h"

namespace af::sqlite {
namespace {

constexpr Migration kEmbedded[] = {
#include "storage/sqlite/migrations.inc"
};

// Runs one statement that returns no rows we need.
Status Exec(sqlite3* db, const char* sql, const std::string& what) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);  // the same text is available from sqlite3_errmsg
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  return Status::Ok();
}

Result<bool> ForeignKeysOn(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_keys", -1, &st, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "reading PRAGMA foreign_keys");
  bool on = false;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) on = sqlite3_column_int(st, 0) != 0;
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return SqliteError(db, rc, "reading PRAGMA foreign_keys");
  return on;
}

// Internal if any row refers to a row that does not exist.
Status CheckForeignKeys(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "checking foreign keys");
  std::string first;
  int64_t violations = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (violations++ == 0) {
      const auto* table = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      const auto* parent = reinterpret_cast<const char*>(sqlite3_column_text(st, 2));
      first = std::string(table ? table : "?") + " rowid " + std::to_string(sqlite3_column_int64(st, 1)) +
              " refers to a missing " + (parent ? parent : "?") + " row";
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return SqliteError(db, rc, "checking foreign keys");
  if (violations > 0) {
    return Status::Internal("migrations would leave " + std::to_string(violations) +
                            " foreign key violation(s), e.g. " + first + "; nothing was applied");
  }
  return Status::Ok();
}

Status ApplyInTransaction(sqlite3* db, std::span<const Migration> migrations) {
  AF_RETURN_IF_ERROR(Exec(db,
                          "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                          "creating schema_migrations"));
  std::set<int> applied;
  {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT version FROM schema_migrations", -1, &st, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, "reading schema_migrations");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) applied.insert(sqlite3_column_int(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return SqliteError(db, rc, "reading schema_migrations");
  }
  int newest_known = migrations.empty() ? 0 : migrations.back().version;
  if (!applied.empty() && *applied.rbegin() > newest_known) {
    return Status::FailedPrecondition(
        "the database has schema version " + std::to_string(*applied.rbegin()) +
            ", newer than this binary knows (" + std::to_string(newest_known) +
            "). Hint: run a newer agentflow against this database, or use another database file",
        {{"database_version", *applied.rbegin()}, {"binary_version", newest_known}});
  }
  sqlite3_stmt* record = nullptr;
  int rc = sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", -1,
                              &record, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "preparing schema_migrations insert");
  Status status;
  for (const Migration& m : migrations) {
    if (applied.count(m.version)) continue;
    status = Exec(db, m.sql, std::string("applying migration ") + m.name);
    if (!status.ok()) break;
    sqlite3_bind_int(record, 1, m.version);
    sqlite3_bind_int64(record, 2, NowMs());
    rc = sqlite3_step(record);
    sqlite3_reset(record);
    if (rc != SQLITE_DONE) {
      status = SqliteError(db, rc, std::string("recording migration ") + m.name);
      break;
    }
  }
  sqlite3_finalize(record);
  return status;
}

}  // namespace

std::span<const Migration> EmbeddedMigrations() { return kEmbedded; }

Status SqliteError(sqlite3* db, int rc, const std::string& what) {
  std::string msg = "sqlite: " + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (" +
                    sqlite3_errstr(rc) + ")";
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return Status::Unavailable(msg + ". Hint: another connection holds the database lock; retry later");
  }
  return Status::Internal(msg);
}

Status ApplyMigrations(sqlite3* db, std::span<const Migration> migrations) {
  for (size_t i = 1; i < migrations.size(); ++i) {
    if (migrations[i].version <= migrations[i - 1].version) {
      return Status::Internal(std::string("migrations out of order: ") + migrations[i - 1].name + " then " +
                              migrations[i].name);
    }
  }
  // Foreign-key enforcement is off while migrations run (it cannot change
  // inside a transaction), so a migration may rebuild a table others refer to
  // (SQLite's procedure for schema changes ALTER TABLE cannot make); every
  // foreign key is checked before the commit instead.
  auto fk = ForeignKeysOn(db);
  if (!fk.ok()) return fk.status();
  if (*fk) AF_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys = OFF", "turning foreign keys off for migrations"));
  // IMMEDIATE: take the write lock before reading the applied versions, so two
  // processes opening a new database cannot both apply the same migration.
  Status status = Exec(db, "BEGIN IMMEDIATE", "starting the migration transaction");
  if (status.ok()) status = ApplyInTransaction(db, migrations);
  if (status.ok()) status = CheckForeignKeys(db);
  if (status.ok()) status = Exec(db, "COMMIT", "committing migrations");
  if (!status.ok() && !sqlite3_get_autocommit(db)) {
    (void)Exec(db, "ROLLBACK", "rolling back migrations");
  }
  if (*fk) {
    Status on = Exec(db, "PRAGMA foreign_keys = ON", "turning foreign keys back on");
    if (status.ok()) status = on;
  }
  return status;
}

}  // namespace af::sqlite
