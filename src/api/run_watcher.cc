#include "api/run_watcher.h"

#include <algorithm>
#include <vector>

#include "model/types.h"

namespace af {

RunWatcher::RunWatcher(Store* store, std::shared_ptr<ChangeFeed> feed, RunWatcherOptions options)
    : store_(store), feed_(std::move(feed)), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

RunWatcher::~RunWatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RunWatcher::Watch(const std::string& run_id) { Add(watched_, run_id); }

void RunWatcher::Unwatch(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  Remove(watched_, run_id);
}

void RunWatcher::WatchSteps(const std::string& run_id) { Add(steps_watched_, run_id); }

void RunWatcher::UnwatchSteps(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Remove(steps_watched_, run_id)) last_progress_.erase(run_id);
}

void RunWatcher::Add(std::map<std::string, int>& counts, const std::string& run_id) {
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    first = watched_.empty() && steps_watched_.empty();
    ++counts[run_id];
  }
  if (first) cv_.notify_all();  // the loop sleeps while nothing is watched
}

bool RunWatcher::Remove(std::map<std::string, int>& counts, const std::string& run_id) {
  auto it = counts.find(run_id);
  if (it == counts.end() || --it->second > 0) return false;
  counts.erase(it);
  return true;
}

size_t RunWatcher::watched() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = watched_.size();
  for (const auto& [id, count] : steps_watched_) n += watched_.count(id) == 0 ? 1 : 0;
  return n;
}

int RunWatcher::CheckOnce() {
  std::vector<std::string> ids, step_ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ids.reserve(watched_.size());
    for (const auto& [id, n] : watched_) ids.push_back(id);
    step_ids.reserve(steps_watched_.size());
    for (const auto& [id, n] : steps_watched_) step_ids.push_back(id);
  }
  int published = 0;
  // A failed read ends nobody's wait early and skips no step for good:
  // the waiters' and streams' own slow re-reads still see it.
  if (!ids.empty()) {
    auto statuses = store_->GetRunStatuses(ids);
    if (statuses.ok()) {
      for (const auto& [id, status] : *statuses) {
        if (!IsTerminal(status)) continue;
        Change c;
        c.kind = Change::Kind::kRun;
        c.run_id = id;
        c.run_status = status;
        feed_->Publish(c);
        ++published;
      }
    }
  }
  if (!step_ids.empty()) {
    auto progress = store_->GetStepProgress(step_ids);
    if (progress.ok()) {
      std::vector<std::string> moved;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (const Store::StepProgress& p : *progress) {
          if (steps_watched_.count(p.run_id) == 0) continue;  // no stream any more
          std::pair<int64_t, int64_t> now{p.executions, p.finished};
          auto [it, first] = last_progress_.emplace(p.run_id, now);
          if (!first && it->second == now) continue;
          it->second = now;
          moved.push_back(p.run_id);
        }
      }
      for (const std::string& id : moved) {
        Change c;
        c.kind = Change::Kind::kStep;
        c.run_id = id;
        feed_->Publish(c);
        ++published;
      }
    }
  }
  return published;
}

void RunWatcher::Nudge() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    nudged_ = true;
  }
  cv_.notify_all();
}

void RunWatcher::Loop() {
  using Clock = std::chrono::steady_clock;
  std::chrono::microseconds last_read{0};
  Clock::time_point last_end{};
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !watched_.empty() || !steps_watched_.empty(); });
    if (stopping_) return;
    const auto runs = static_cast<int64_t>(watched_.size() + steps_watched_.size());
    const auto spacing = last_read * options_.read_spacing;
    auto interval =
        std::min<std::chrono::microseconds>(options_.min_interval + options_.per_run * runs, options_.max_interval);
    interval = std::max<std::chrono::microseconds>(interval, spacing);
    // The interval's end, or a nudge once the spacing after the last read
    // has passed, whichever comes first.
    const Clock::time_point deadline = Clock::now() + interval;
    const Clock::time_point nudge_from = last_end + spacing;
    while (!stopping_) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline || (nudged_ && now >= nudge_from)) break;
      cv_.wait_until(lock, nudged_ ? std::min(deadline, nudge_from) : deadline);
    }
    if (stopping_) return;
    nudged_ = false;  // a nudge from here on asks for the next read
    lock.unlock();
    auto began = Clock::now();
    CheckOnce();
    last_end = Clock::now();
    last_read = std::chrono::duration_cast<std::chrono::microseconds>(last_end - began);
    lock.lock();
  }
}

}  // namespace af
