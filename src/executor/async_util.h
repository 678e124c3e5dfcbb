// Small single-threaded coroutine primitives for the executor (Asio 1.74 has
// no channels or awaitable operators). All of them must be used from one
// executor (one loop thread or strand); none is thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/cancel.h"

namespace af {

namespace asio = boost::asio;

// A wake-up flag: Notify() wakes the (single) waiter, or makes the next
// Wait() return at once.
class Notifier {
 public:
  explicit Notifier(asio::any_io_executor ex) : timer_(ex) {}
  asio::awaitable<void> Wait() {
    if (!pending_) {
      timer_.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    pending_ = false;
  }
  void Notify() {
    pending_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

// Sleeps for `d` unless `cancel` fires first. Returns false if cancelled.
asio::awaitable<bool> SleepFor(std::chrono::milliseconds d, CancelSignal* cancel);

// Per-agent concurrency limits shared by every run of the process.
// Acquire waits (without a thread) until a slot is free; returns false if
// `cancel` fired while waiting. limit <= 0 means unlimited.
class AgentLimiter {
 public:
  asio::awaitable<bool> Acquire(const std::string& agent, int limit, CancelSignal* cancel);
  void Release(const std::string& agent);
  int InUse(const std::string& agent) const;

 private:
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    bool granted = false;
  };
  struct Slot {
    int in_use = 0;
    std::deque<std::shared_ptr<Waiter>> waiters;
  };
  std::map<std::string, Slot> slots_;
};

}  // namespace af
