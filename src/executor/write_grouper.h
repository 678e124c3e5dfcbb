// Group commit of runs' write batches (Store::ApplyRunWritesGroup).
//
// Every run's executor hands its batches here. While `max_in_flight` groups
// are being committed, new batches wait; when a commit returns, everything
// that waited (up to max_group batches) goes as the next group, in one call
// and, on PostgreSQL, one transaction. A batch that finds a free slot goes
// at once, with the batches staged before its commit starts: a lone run
// never waits for company, and an inline store (SQLite, gather_a_turn)
// groups the writes of every run whose agent answered in the same turn.
//
// Single-threaded: construct, call Apply and destroy on one executor (the
// engine's loop). Every Apply must have returned before the grouper goes.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "storage/store.h"

namespace af {

class WriteGrouper {
 public:
  using Results = std::vector<Result<RunWritesResult>>;
  // Commits one group; one result per batch, in order.
  using Commit = std::function<boost::asio::awaitable<Results>(std::vector<const RunWrites*>)>;

  // gather_a_turn: a commit waits one more turn of the loop before it takes
  // its group, so that the flushes posted in this turn join it. For a store
  // called inline (SQLite), whose commit would otherwise take only the batch
  // that started it; a store called on other threads (PostgreSQL) commits at
  // once while the loop goes on, and the batches staged meanwhile form the
  // next group.
  WriteGrouper(boost::asio::any_io_executor ex, Commit commit, int max_in_flight, size_t max_group,
               bool gather_a_turn = false);
  WriteGrouper(const WriteGrouper&) = delete;
  WriteGrouper& operator=(const WriteGrouper&) = delete;

  // Commits `w` (with whatever else is waiting) and returns its own result:
  // exactly what Store::ApplyRunWrites(w) would. `w` must stay alive until
  // this returns.
  boost::asio::awaitable<Result<RunWritesResult>> Apply(const RunWrites& w);

  int in_flight() const { return in_flight_; }
  size_t waiting() const { return queue_.size(); }

 private:
  struct Pending {
    explicit Pending(boost::asio::any_io_executor ex) : done(ex) {}
    const RunWrites* writes = nullptr;
    std::optional<Result<RunWritesResult>> result;
    boost::asio::steady_timer done;  // cancelled when result is set
  };
  void Pump();
  boost::asio::awaitable<void> CommitGroup();

  boost::asio::any_io_executor ex_;
  Commit commit_;
  int max_in_flight_;
  size_t max_group_;
  std::deque<std::shared_ptr<Pending>> queue_;
  int in_flight_ = 0;
  bool gather_a_turn_;
  bool starting_ = false;  // a commit is spawned and has not taken its group yet
};

}  // namespace af
