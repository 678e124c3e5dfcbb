// RunWatcher: how a ?wait or an event stream in the distributed topology
// hears what the consumers did to a run. They write in other processes, so
// this api's change feed never hears of it, and each waiter re-reading its
// run at ApiOptions::wait_poll_interval (500 ms) answered up to that late;
// a stream showed each step up to its 250 ms re-read late. While anyone
// here waits or streams, one thread reads, each interval, the statuses of
// every run watched in one statement (Store::GetRunStatuses) and publishes
// the ends it finds to the feed, which wakes their waiters at once; and
// for the runs streamed, their step progress in one statement
// (Store::GetStepProgress), publishing a step change for each run whose
// steps moved since its last read (and on its first), which wakes the
// stream to re-read the run's steps.
//
// The interval is min_interval plus per_run for each run watched, up to
// max_interval: ~100 reads a second for a few waiters, and the cost of a
// read stays bounded with thousands. It is never less than read_spacing
// times the last read's duration either, so reads that turn slow (a
// streamed run of thousands of steps, a busy database) take at most a
// tenth of a connection. Nobody waiting: no reads. Where the store can tell
// that a run ended in another process (PostgreSQL's NOTIFY), the api
// nudges the watcher, which then reads at once: a ?wait hears of the end
// within a read's round trip; the interval stays as the safety net.
//
// Thread-safety: Watch, Unwatch, WatchSteps and UnwatchSteps from any
// thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "storage/change_feed.h"
#include "storage/store.h"

namespace af {

struct RunWatcherOptions {
  std::chrono::milliseconds min_interval{10};
  std::chrono::microseconds per_run{100};
  std::chrono::milliseconds max_interval{500};
  int read_spacing = 10;
};

class RunWatcher {
 public:
  // `store` must outlive the watcher.
  RunWatcher(Store* store, std::shared_ptr<ChangeFeed> feed, RunWatcherOptions options = {});
  ~RunWatcher();  // stops and joins the thread
  RunWatcher(const RunWatcher&) = delete;
  RunWatcher& operator=(const RunWatcher&) = delete;

  // A waiter starts / stops waiting for `run_id` (counted: several may
  // wait for one run).
  void Watch(const std::string& run_id);
  void Unwatch(const std::string& run_id);
  // An event stream starts / stops showing `run_id`'s steps (counted).
  void WatchSteps(const std::string& run_id);
  void UnwatchSteps(const std::string& run_id);
  // How many runs are watched now (for their end, their steps or both).
  size_t watched() const;

  // Something may have ended (Store::ListenForRunEnds heard a run end):
  // read now rather than at the interval's end, though still no sooner than
  // read_spacing times the last read's duration after it. From any thread.
  void Nudge();

  // Reads once and publishes what it found; returns how many changes (ends
  // and runs whose steps moved). For tests and the thread.
  int CheckOnce();

 private:
  void Loop();
  // One more watcher of `run_id` in `counts` (watched_ or steps_watched_).
  void Add(std::map<std::string, int>& counts, const std::string& run_id);
  // One fewer; true if it was the last. mu_ held.
  bool Remove(std::map<std::string, int>& counts, const std::string& run_id);

  Store* store_;
  std::shared_ptr<ChangeFeed> feed_;
  const RunWatcherOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, int> watched_;  // guarded by mu_: waiters per run
  std::map<std::string, int> steps_watched_;  // guarded by mu_: streams per run
  // guarded by mu_: the step progress last read of each run in steps_watched_
  std::map<std::string, std::pair<int64_t, int64_t>> last_progress_;
  bool stopping_ = false;  // guarded by mu_
  bool nudged_ = false;    // guarded by mu_: a Nudge since the last read began
  std::thread thread_;
};

}  // namespace af
