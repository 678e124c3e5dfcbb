// Its own test binary: SQLite's configuration is process-wide and must come
// before anything in the process uses SQLite.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "storage/sqlite/sqlite_store.h"

namespace af {
namespace {

TEST(ConfigureSqliteProcess, TurnsSqlitesMemoryStatisticsOffBeforeFirstUse) {
  ASSERT_TRUE(ConfigureSqliteProcess());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE t (x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                         "WHERE i < 1000) INSERT INTO t SELECT printf('%0100d', i) FROM n;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  // With the statistics on (SQLite's default) this is the heap SQLite holds:
  // hundreds of KB for the table above.
  EXPECT_EQ(sqlite3_memory_used(), 0);
  sqlite3_close(db);
  // Once SQLite is in use it refuses configuration, and says so.
  EXPECT_FALSE(ConfigureSqliteProcess());
}

}  // namespace
}  // namespace af
