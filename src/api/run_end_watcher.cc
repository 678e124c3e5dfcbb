#include "api/run_end_watcher.h"

#include <algorithm>
#include <vector>

#include "model/types.h"

namespace af {

RunEndWatcher::RunEndWatcher(Store* store, std::shared_ptr<ChangeFeed> feed, RunEndWatcherOptions options)
    : store_(store), feed_(std::move(feed)), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

RunEndWatcher::~RunEndWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RunEndWatcher::Watch(const std::string& run_id) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = watched_.empty();
    ++watched_[run_id];
  }
  if (first) cv_.notify_all();
}

void RunEndWatcher::Unwatch(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = watched_.find(run_id);
  if (it != watched_.end() && --it->second <= 0) watched_.erase(it);
}

size_t RunEndWatcher::watched() const {
  std::lock_guard<std::mutex> lock(mu_);
  return watched_.size();
}

int RunEndWatcher::CheckOnce() {
  std::vector<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.reserve(watched_.size());
    for (const auto& [id, n] : watched_) ids.push_back(id);
  }
  if (ids.empty()) return 0;
  // A failed read ends nobody's wait early; the waiters' own slow re-read
  // still ends it.
  auto statuses = store_->GetRunStatuses(ids);
  if (!statuses.ok()) return 0;
  int ended = 0;
  for (const auto& [id, status] : *statuses) {
    if (!IsTerminal(status)) continue;
    Change c;
    c.kind = Change::Kind::kRun;
    c.run_id = id;
    c.run_status = status;
    feed_->Publish(c);
    ++ended;
  }
  return ended;
}

void RunEndWatcher::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !watched_.empty(); });
    if (stopping_) return;
    auto interval = std::min<std::chrono::microseconds>(
        options_.min_interval + options_.per_run * static_cast<int64_t>(watched_.size()), options_.max_interval);
    if (cv_.wait_for(lock, interval, [this] { return stopping_; })) return;
    lock.unlock();
    CheckOnce();
    lock.lock();
  }
}

}  // namespace af
