// SqliteStore: the embedded default Store, one SQLite database file in WAL
// mode with versioned migrations (storage/sqlite/migrations).
// Thread-safety: safe from any thread (one connection behind a mutex).
#pragma once

#include <memory>
#include <string>

#include "storage/store.h"

namespace af {

// `path` is a file path or ":memory:". full_sync: synchronous=FULL instead of
// NORMAL. Creates the file and applies migrations.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, bool full_sync = false);

}  // namespace af
