// The API's cache of workflow lookups, so a trigger does not read the
// workflow (by id, then by name) on every request.
//
// A workflow version is immutable, so an exact (id, version) is cached for
// good. What changes is the resolution of an id or name to the workflow's
// latest version: an update (new version), a rename, a delete, a new
// workflow taking a freed name. Several api processes may change workflows,
// and this process hears only of its own changes, so a resolution is used
// for resolve_ttl at most (default 1 s) and this process drops all of them
// at once when it changes a workflow itself. Hence: through one api process
// a trigger always sees the process's own changes; a change made through
// another process is seen by triggers here within resolve_ttl (a trigger in
// that window runs the version that was latest up to resolve_ttl ago, as if
// it had arrived that much earlier). resolve_ttl 0 disables the resolution
// cache.
//
// One lookup per expiry, not one per waiting trigger: the first Resolve
// after an entry expired misses (its caller reads the store and calls
// PutResolved); for the next resolve_ttl the others keep getting the expired
// resolution instead of all reading the store at once (64 triggers in
// flight used to queue 64 lookups, twice a read each, behind the trigger
// commits every second). So a change made elsewhere shows within
// 2 x resolve_ttl at most; a refresh that fails is retried by the first
// Resolve after that.
//
// Thread-safety: every method from any thread (one mutex, held for map
// operations only).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "model/types.h"
#include "queue/messages.h"

namespace af {

struct WorkflowCacheOptions {
  // How long an id or name resolves to the same latest version.
  std::chrono::milliseconds resolve_ttl{1000};
  // Bound on each map; when full it is emptied (workflows are few).
  size_t max_entries = 10000;
  // The clock (tests replace it).
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
};

class WorkflowCache {
 public:
  explicit WorkflowCache(WorkflowCacheOptions options = {}) : options_(std::move(options)) {}

  // The latest version `id_or_name` resolved to less than resolve_ttl ago;
  // or, while another caller refreshes an expired one, that one; or null:
  // the caller reads the store and calls PutResolved.
  std::shared_ptr<const Workflow> Resolve(const std::string& id_or_name) {
    if (options_.resolve_ttl.count() <= 0) return nullptr;
    auto now = options_.now();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = resolved_.find(id_or_name);
    if (it == resolved_.end()) return nullptr;
    Resolved& r = it->second;
    if (now < r.expires) return r.wf;
    if (now < r.refresh_until) return r.wf;      // another caller is refreshing it
    r.refresh_until = now + options_.resolve_ttl;  // this caller refreshes it
    return nullptr;
  }
  // Records that `id_or_name` resolved to `wf` (its latest version) now,
  // and keeps the version.
  void PutResolved(const std::string& id_or_name, std::shared_ptr<const Workflow> shared) {
    auto now = options_.now();
    std::lock_guard<std::mutex> lock(mu_);
    KeepVersion(shared);
    if (options_.resolve_ttl.count() <= 0) return;
    if (resolved_.size() >= options_.max_entries) resolved_.clear();
    resolved_.insert_or_assign(id_or_name, Resolved{std::move(shared), now + options_.resolve_ttl, {}});
  }
  // Version `version` of workflow `id`, if seen; versions never change.
  std::shared_ptr<const Workflow> Version(const std::string& id, int version) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = versions_.find({id, version});
    return it == versions_.end() ? nullptr : it->second;
  }
  void PutVersion(const Workflow& wf) {
    auto shared = std::make_shared<const Workflow>(wf);
    std::lock_guard<std::mutex> lock(mu_);
    KeepVersion(std::move(shared));
  }
  // The execution request template of `wf`'s version: its plan serialized
  // once for all the version's runs, not once per trigger.
  std::shared_ptr<const ExecutionRequestTemplate> RequestTemplate(const Workflow& wf) {
    std::pair<std::string, int> key{wf.id, wf.version};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = templates_.find(key);
      if (it != templates_.end()) return it->second;
    }
    auto made = std::make_shared<const ExecutionRequestTemplate>(wf.plan, wf.id, wf.version);  // unlocked
    std::lock_guard<std::mutex> lock(mu_);
    if (templates_.size() >= options_.max_entries) templates_.clear();
    return templates_.emplace(std::move(key), std::move(made)).first->second;  // the first one made wins
  }
  // This process changed a workflow (update, rename, delete): every
  // resolution may be stale.
  void InvalidateResolutions() {
    std::lock_guard<std::mutex> lock(mu_);
    resolved_.clear();
  }

 private:
  struct Resolved {
    std::shared_ptr<const Workflow> wf;
    std::chrono::steady_clock::time_point expires;
    // Expired and being refreshed by one caller until then (the others get wf).
    std::chrono::steady_clock::time_point refresh_until;
  };
  void KeepVersion(std::shared_ptr<const Workflow> wf) {
    if (versions_.size() >= options_.max_entries) versions_.clear();
    std::pair<std::string, int> key{wf->id, wf->version};
    versions_.insert_or_assign(std::move(key), std::move(wf));
  }

  const WorkflowCacheOptions options_;
  std::mutex mu_;
  std::map<std::string, Resolved> resolved_;                                      // guarded by mu_
  std::map<std::pair<std::string, int>, std::shared_ptr<const Workflow>> versions_;  // guarded by mu_
  std::map<std::pair<std::string, int>, std::shared_ptr<const ExecutionRequestTemplate>> templates_;  // guarded by mu_
};

}  // namespace af
