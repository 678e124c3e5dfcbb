#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"

namespace af {

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  const std::string& url = options.url;
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    return Status::InvalidArgument("PostgreSQL storage is not built into this binary yet",
                                   {{"hint", "use a SQLite path or leave DATABASE_URL empty"}});
  }
  std::string path = url;
  if (path.rfind("sqlite://", 0) == 0) path = path.substr(9);
  return OpenSqliteStore(path.empty() ? ":memory:" : path, options.sqlite_full_sync);
}

}  // namespace af
