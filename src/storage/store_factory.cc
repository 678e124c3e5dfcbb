#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "storage/store.h"

namespace af {

Result<std::unique_ptr<Store>> OpenStore(const StoreOptions& options) {
  const std::string& url = options.url;
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    PostgresOptions pg;
    pg.url = url;
    pg.notify_run_ends = options.notify_run_ends;
    return OpenPostgresStore(pg);
  }
  std::string path = url;
  if (path.rfind("sqlite://", 0) == 0) path = path.substr(9);
  return OpenSqliteStore(path.empty() ? ":memory:" : path, options.sqlite_full_sync);
}

}  // namespace af

namespace af {

// Defaults for test doubles; SqliteStore and PostgresStore override them.
namespace {
Status NoApiKeys() { return Status::Internal("this store does not keep API keys"); }
}  // namespace

Result<ApiKey> Store::CreateApiKey(const ApiKey&) { return NoApiKeys(); }
Result<ApiKey> Store::GetApiKey(const std::string&) { return NoApiKeys(); }
Result<std::vector<ApiKey>> Store::ListApiKeys() { return NoApiKeys(); }
Result<ApiKey> Store::RevokeApiKey(const std::string&) { return NoApiKeys(); }
Status Store::RecordApiKeyUse(const std::string&, TimeMs) { return NoApiKeys(); }

std::unique_ptr<Store::RunEndListener> Store::ListenForRunEnds(std::function<void()>) { return nullptr; }

Result<std::vector<std::pair<std::string, RunStatus>>> Store::GetRunStatuses(const std::vector<std::string>& run_ids) {
  std::vector<std::pair<std::string, RunStatus>> out;
  for (const std::string& id : run_ids) {
    auto run = GetRun(id);
    if (run.ok()) {
      out.emplace_back(id, run->status);
    } else if (run.status().code() != Code::kNotFound) {
      return run.status();
    }
  }
  return out;
}

std::vector<Result<Store::CreatedRun>> Store::CreateRuns(const std::vector<NewRun>& runs) {
  std::vector<Result<CreatedRun>> out;
  out.reserve(runs.size());
  for (const NewRun& r : runs) out.push_back(CreateRun(r));
  return out;
}

Status StartRefused(const std::string& run_id) {
  return Status::FailedPrecondition(
      "run " + run_id + " cannot be started as new (not PENDING in its first attempt, leased before, cancelled, "
      "or its input differs from the request's)",
      {{"start", "refused"}});
}

Status CheckRunWrites(const RunWrites& w) {
  for (size_t i = 0; i < w.ops.size(); ++i) {
    const RunWrite& op = w.ops[i];
    const std::string& rid = op.kind == RunWrite::Kind::kInsertStep   ? op.insert.run_id
                             : op.kind == RunWrite::Kind::kFinishStep ? op.finish.run_id
                             : op.kind == RunWrite::Kind::kStart      ? op.start.run_id
                                                                      : op.transition.run_id;
    if (rid != w.run_id) {
      return WithOpIndex(Status::InvalidArgument("apply run writes: op for run " + rid + " in a batch for " + w.run_id), i);
    }
    if (op.kind == RunWrite::Kind::kTransition && op.transition.dispatch) {
      return WithOpIndex(Status::InvalidArgument("apply run writes: a transition may not carry a dispatch"), i);
    }
    if (op.kind == RunWrite::Kind::kStart && (i != 0 || w.lease_token != kFirstLeaseToken)) {
      return WithOpIndex(Status::InvalidArgument("apply run writes: a start must be the first op of a batch fenced "
                                                 "with the first lease token"),
                         i);
    }
  }
  return Status::Ok();
}

}  // namespace af
