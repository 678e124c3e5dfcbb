// An in-process feed of run and step changes, so waiters (long-poll, live
// views) wake as soon as a change is committed instead of polling the store.
// WithChangeFeed wraps any Store and publishes after each successful write.
// Changes made by other processes do not appear here: waiters must also poll
// at a slow interval (the distributed topology).
//
// Thread-safety: all methods are safe from any thread. Listeners run on the
// publishing thread, outside the feed's lock, and must be quick (post work to
// their own executor).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/types.h"
#include "storage/store.h"

namespace af {

struct Change {
  enum class Kind { kRun, kStep };
  Kind kind = Kind::kRun;
  std::string run_id;
  std::optional<RunStatus> run_status;  // for kRun
  int64_t step_execution_id = 0;        // for kStep
  // For a kRun change that ended the run: the run as that commit left it
  // (what a read would return), so a waiter answers without reading it
  // again. Null for other changes.
  std::shared_ptr<const Run> ended;
};

class ChangeFeed {
 public:
  using Listener = std::function<void(const Change&)>;
  // Which changes a subscriber hears. A run waiter (long-poll) subscribes to
  // kRuns so that the step writes of a run it waits for (two or more per
  // step) do not wake it: only the run's own changes (status transitions,
  // creation, cancel requests) do.
  enum class Interest { kAll, kRuns };

  // Listens to changes of one run (run_id non-empty) or of all runs.
  uint64_t Subscribe(const std::string& run_id, Listener listener, Interest interest = Interest::kAll);
  // When it returns, the listener is not running, will not run again and
  // has been destroyed (here, not on a publishing thread later: it may own
  // things, like a timer, that must not outlive their executor): it waits
  // for a call in progress. Called from inside a listener it does not wait;
  // the listener then goes when the call in progress returns.
  void Unsubscribe(uint64_t token);
  // Makes the run a change ends (Change::ended).
  using MakeEndedRun = std::function<std::shared_ptr<const Run>()>;
  // Delivers `change` to its listeners. For a change that ends a run,
  // `ended` fills change.ended: it is called once, and only when someone
  // hears the change (a copy of a run's input and output costs, and most
  // ends have no waiter).
  void Publish(Change change, const MakeEndedRun& ended = nullptr);

 private:
  struct Entry {
    std::string run_id;
    Interest interest = Interest::kAll;
    std::shared_ptr<Listener> listener;
  };
  std::mutex mu_;
  std::condition_variable released_;  // a publisher dropped its copy of a listener
  uint64_t next_token_ = 1;
  std::map<uint64_t, Entry> entries_;
  // Tokens by run id ("" = all runs), so a publish looks at the run's own
  // subscribers only, not at every waiter of every run.
  std::unordered_map<std::string, std::vector<uint64_t>> by_run_;
};

// Returns a Store that forwards to `inner` and publishes to `feed` after every
// successful run or step write.
std::unique_ptr<Store> WithChangeFeed(std::unique_ptr<Store> inner, std::shared_ptr<ChangeFeed> feed);

}  // namespace af
