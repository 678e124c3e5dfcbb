#include "storage/postgres/migrations.h"

#include <set>
#include <string>

#include "common/time.h"
#include "storage/postgres/pg_util.h"

namespace af::postgres {
namespace {

constexpr Migration kEmbedded[] = {
#include "storage/postgres/migrations.inc"
};

// The advisory lock every migrator of every agentflow process takes: "afmigrat".
constexpr char kLockSql[] = "SELECT pg_advisory_xact_lock(7018141431236894068)";

constexpr char kCreateTableSql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

constexpr char kUndefinedTable[] = "42P01";

// The recorded versions; `missing_table` if schema_migrations does not exist.
Result<std::set<int>> AppliedVersions(PGconn* conn, bool missing_table_is_empty) {
  PgResult r(PQexec(conn, "SELECT version FROM schema_migrations"));
  if (!r.ok()) {
    if (missing_table_is_empty && r.SqlState() == kUndefinedTable) return std::set<int>{};
    return PgError(conn, r, "reading schema_migrations");
  }
  std::set<int> out;
  for (int i = 0; i < r.rows(); ++i) out.insert(r.Int(i, 0));
  return out;
}

Status CheckNotNewer(const std::set<int>& applied, std::span<const Migration> migrations) {
  int newest_known = migrations.empty() ? 0 : migrations.back().version;
  if (!applied.empty() && *applied.rbegin() > newest_known) {
    return Status::FailedPrecondition("the database has schema version " + std::to_string(*applied.rbegin()) +
                                          ", newer than this binary knows (" + std::to_string(newest_known) +
                                          "). Hint: run a newer agentflow against this database, or use another "
                                          "database",
                                      {{"database_version", *applied.rbegin()}, {"binary_version", newest_known}});
  }
  return Status::Ok();
}

Status CheckOrder(std::span<const Migration> migrations) {
  for (size_t i = 1; i < migrations.size(); ++i) {
    if (migrations[i].version <= migrations[i - 1].version) {
      return Status::Internal(std::string("migrations out of order: ") + migrations[i - 1].name + " then " +
                              migrations[i].name);
    }
  }
  return Status::Ok();
}

Status ApplyInTransaction(PGconn* conn, std::span<const Migration> migrations, std::vector<std::string>* applied) {
  // The lock first: two migrators of an empty database would otherwise race
  // on CREATE TABLE IF NOT EXISTS. Read committed: every statement after the
  // lock sees what the previous holder committed.
  AF_RETURN_IF_ERROR(RunStatement(conn, kLockSql, "taking the migration lock"));
  AF_RETURN_IF_ERROR(RunStatement(conn, kCreateTableSql, "creating schema_migrations"));
  auto done = AppliedVersions(conn, /*missing_table_is_empty=*/false);
  if (!done.ok()) return done.status();
  AF_RETURN_IF_ERROR(CheckNotNewer(*done, migrations));
  for (const Migration& m : migrations) {
    if (done->count(m.version)) continue;
    AF_RETURN_IF_ERROR(RunStatement(conn, m.sql, std::string("applying migration ") + m.name));
    Params p;
    p.Int(m.version).Key("name", m.name).Int(NowMs());
    std::vector<const char*> v = p.Pointers();
    PgResult r(PQexecParams(conn, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                            p.size(), nullptr, v.data(), nullptr, nullptr, 0));
    if (!r.ok()) return PgError(conn, r, std::string("recording migration ") + m.name);
    if (applied) applied->push_back(m.name);
  }
  return Status::Ok();
}

}  // namespace

std::span<const Migration> EmbeddedMigrations() { return kEmbedded; }

Status ApplyMigrations(PGconn* conn, std::span<const Migration> migrations, std::vector<std::string>* applied) {
  AF_RETURN_IF_ERROR(CheckOrder(migrations));
  std::vector<std::string> names;
  AF_RETURN_IF_ERROR(RunStatement(conn, "BEGIN", "starting the migration transaction"));
  Status status = ApplyInTransaction(conn, migrations, &names);
  if (status.ok()) status = RunStatement(conn, "COMMIT", "committing migrations");
  if (!status.ok()) {
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE) {
      (void)RunStatement(conn, "ROLLBACK", "rolling back migrations");
    }
    return status;
  }
  if (applied) applied->insert(applied->end(), names.begin(), names.end());
  return Status::Ok();
}

Status CheckMigrations(PGconn* conn, std::span<const Migration> migrations) {
  AF_RETURN_IF_ERROR(CheckOrder(migrations));
  auto done = AppliedVersions(conn, /*missing_table_is_empty=*/true);
  if (!done.ok()) return done.status();
  AF_RETURN_IF_ERROR(CheckNotNewer(*done, migrations));
  for (const Migration& m : migrations) {
    if (!done->count(m.version)) {
      return Status::FailedPrecondition(
          std::string("the database lacks schema migration ") + m.name +
              ". Hint: run `agentflow migrate --database-url URL` first, or open with migrations enabled",
          {{"missing", m.name}});
    }
  }
  return Status::Ok();
}

}  // namespace af::postgres
