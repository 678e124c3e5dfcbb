// SqliteStore: the embedded default Store, one SQLite database file in WAL
// mode with versioned migrations (storage/sqlite/migrations).
// Thread-safety: safe from any thread (one connection behind a mutex).
#pragma once

#include <memory>
#include <string>

#include "storage/store.h"

namespace af {

// Process-wide SQLite settings for the agentflow processes; call once at
// start, before anything opens a database (afterwards SQLite refuses them,
// and this returns false). Turns off SQLite's memory statistics, which take
// a global mutex on every allocation and free SQLite makes: Debian builds
// SQLite without lookaside memory, so a step's commit makes ~50 of each
// (docs/benchmarks.md item 41). Nothing in agentflow reads the statistics.
bool ConfigureSqliteProcess();

// `path` is a file path or ":memory:". full_sync: synchronous=FULL instead of
// NORMAL. Creates the file and applies migrations.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, bool full_sync = false);

}  // namespace af
