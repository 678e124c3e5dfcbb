// StoreRunner: Store calls for the engine's coroutines without blocking its
// event loop.
//
// The engine drives every run on one loop thread. A Store call is a blocking
// database round trip (a PostgreSQL commit waits for its WAL flush), so made
// on the loop it stops every other run for its duration, and commits never
// overlap: PostgreSQL cannot flush several together. The runner hands calls
// to a few threads (as many as the store has connections) and resumes the
// coroutine on its own executor when the call returns, so while one run waits
// for its commit the others advance, and concurrent commits share a flush.
//
// With threads == 0 every call runs inline on the caller's thread: right for
// SQLite, whose one connection serializes calls anyway and whose commits
// take microseconds, less than a hand-off between threads (~50 µs here).
//
// Inline when idle: with inline_when_idle, a call the caller marks `lone`
// (the engine: it drives one run only and awaits no agent reply, which an
// inline call would keep unread) made while no other call is in flight
// runs inline too. One run at a time then pays no hand-off; with several,
// calls overlap on the threads. (Inline whenever nothing is in flight would
// be wrong: an inline call keeps the others from being issued, so under load
// every call would end up inline, one after another.)
//
// Thread-safety: Call from the engine's executor only (one thread).
#pragma once

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "storage/store.h"

namespace af {

class StoreRunner {
 public:
  StoreRunner(Store* store, int threads, bool inline_when_idle)
      : store_(store), inline_when_idle_(inline_when_idle) {
    if (threads > 0) pool_ = std::make_unique<boost::asio::thread_pool>(threads);
  }
  ~StoreRunner() { Stop(); }
  StoreRunner(const StoreRunner&) = delete;
  StoreRunner& operator=(const StoreRunner&) = delete;

  // Waits for calls in flight on the threads to return. Their coroutines
  // resume (later) only if their executor still runs.
  void Stop() {
    if (pool_) pool_->join();
  }

  Store& store() { return *store_; }
  int in_flight() const { return in_flight_; }

  // co_await runner.Call([&](Store& s) { return s.GetRun(id); }): f runs on
  // a runner thread (or inline) and its result is returned on the caller's
  // executor. f must not touch state of the loop thread.
  template <typename F>
  boost::asio::awaitable<std::invoke_result_t<F&, Store&>> Call(F f, bool lone = false) {
    using R = std::invoke_result_t<F&, Store&>;
    if (!pool_ || (lone && inline_when_idle_ && in_flight_ == 0)) co_return f(*store_);
    auto ex = co_await boost::asio::this_coro::executor;
    std::optional<R> out;
    ++in_flight_;
    co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>, void()>(
        [this, ex, &f, &out](auto handler) {
          // The loop must not run out of work while the call is away.
          auto tracked = boost::asio::prefer(ex, boost::asio::execution::outstanding_work.tracked);
          boost::asio::post(*pool_, [this, tracked, &f, &out, handler = std::move(handler)]() mutable {
            out.emplace(f(*store_));
            boost::asio::post(tracked, std::move(handler));
          });
        },
        boost::asio::use_awaitable);
    --in_flight_;
    co_return std::move(*out);
  }

 private:
  Store* store_;
  bool inline_when_idle_;
  std::unique_ptr<boost::asio::thread_pool> pool_;
  int in_flight_ = 0;  // loop thread only
};

}  // namespace af
