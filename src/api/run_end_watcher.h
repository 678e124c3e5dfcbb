// RunEndWatcher: how a ?wait in the distributed topology hears that a run
// ended. The consumers end runs in other processes, so this api's change
// feed never hears of it, and each waiter re-reading its run at
// ApiOptions::wait_poll_interval (500 ms) answered up to that late. While
// anyone here waits, one thread reads the statuses of every run waited for
// in one statement (Store::GetRunStatuses) each interval and publishes the
// ends it finds to the feed, which wakes their waiters at once.
//
// The interval is min_interval plus per_run for each run waited for, up to
// max_interval: ~100 reads a second for a few waiters, and the cost of a
// read stays bounded with thousands. Nobody waiting: no reads.
//
// Thread-safety: Watch and Unwatch from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "storage/change_feed.h"
#include "storage/store.h"

namespace af {

struct RunEndWatcherOptions {
  std::chrono::milliseconds min_interval{10};
  std::chrono::microseconds per_run{100};
  std::chrono::milliseconds max_interval{500};
};

class RunEndWatcher {
 public:
  // `store` must outlive the watcher.
  RunEndWatcher(Store* store, std::shared_ptr<ChangeFeed> feed, RunEndWatcherOptions options = {});
  ~RunEndWatcher();  // stops and joins the thread
  RunEndWatcher(const RunEndWatcher&) = delete;
  RunEndWatcher& operator=(const RunEndWatcher&) = delete;

  // A waiter starts / stops waiting for `run_id` (counted: several may
  // wait for one run).
  void Watch(const std::string& run_id);
  void Unwatch(const std::string& run_id);
  // How many runs are watched now.
  size_t watched() const;

  // Reads once and publishes the ends found; returns how many. For tests
  // and the thread.
  int CheckOnce();

 private:
  void Loop();

  Store* store_;
  std::shared_ptr<ChangeFeed> feed_;
  const RunEndWatcherOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> watched_;  // guarded by mu_: waiters per run
  bool stopping_ = false;               // guarded by mu_
  std::thread thread_;
};

}  // namespace af
