#include "executor/write_grouper.h"

#include <algorithm>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace af {

namespace asio = boost::asio;

WriteGrouper::WriteGrouper(asio::any_io_executor ex, Commit commit, int max_in_flight, size_t max_group,
                           bool gather_a_turn)
    : ex_(std::move(ex)),
      commit_(std::move(commit)),
      max_in_flight_(std::max(max_in_flight, 1)),
      max_group_(std::max<size_t>(max_group, 1)),
      gather_a_turn_(gather_a_turn) {}

asio::awaitable<Result<RunWritesResult>> WriteGrouper::Apply(const RunWrites& w) {
  auto p = std::make_shared<Pending>(ex_);
  p->writes = &w;
  p->done.expires_at(asio::steady_timer::time_point::max());
  queue_.push_back(p);
  Pump();
  while (!p->result) {
    boost::system::error_code ec;
    co_await p->done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return std::move(*p->result);
}

void WriteGrouper::Pump() {
  // A commit takes its group when it starts (co_spawn posts it), so the
  // batches staged before then go with it; that, and gather_a_turn, is what
  // groups an inline store's writes (SQLite: every commit returns before the
  // next batch could queue behind it). One commit waits to start at a time.
  if (starting_ || in_flight_ >= max_in_flight_ || queue_.empty()) return;
  starting_ = true;
  ++in_flight_;
  asio::co_spawn(ex_, CommitGroup(), [](std::exception_ptr) {});
}

asio::awaitable<void> WriteGrouper::CommitGroup() {
  // One more turn: the runs whose flushes were posted in this turn (after
  // this commit was spawned) queue their batches first.
  if (gather_a_turn_) co_await asio::post(ex_, asio::use_awaitable);
  std::vector<std::shared_ptr<Pending>> group;
  while (!queue_.empty() && group.size() < max_group_) {
    group.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  starting_ = false;
  Pump();  // a free slot takes what is left over
  std::vector<const RunWrites*> batches;
  batches.reserve(group.size());
  for (const auto& p : group) batches.push_back(p->writes);
  Results results;
  try {
    results = co_await commit_(batches);
  } catch (const std::exception& e) {
    results.assign(group.size(), Status::Internal(std::string("group commit failed: ") + e.what()));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    group[i]->result = i < results.size() ? std::move(results[i])
                                          : Result<RunWritesResult>(Status::Internal("group commit lost a result"));
    group[i]->done.cancel();
  }
  --in_flight_;
  Pump();
}

}  // namespace af
