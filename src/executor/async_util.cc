#include "executor/async_util.h"

#include <algorithm>

#include <boost/asio/this_coro.hpp>

namespace af {

asio::awaitable<bool> SleepFor(std::chrono::milliseconds d, CancelSignal* cancel) {
  if (cancel && cancel->cancelled()) co_return false;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  timer.expires_after(d);
  CancelRegistration reg(cancel, [&timer] { timer.cancel(); });
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return !(cancel && cancel->cancelled());
}

asio::awaitable<bool> AgentLimiter::Acquire(const std::string& agent, int limit, CancelSignal* cancel) {
  if (limit <= 0) co_return true;
  if (cancel && cancel->cancelled()) co_return false;
  Slot& slot = slots_[agent];
  if (slot.in_use < limit && slot.waiters.empty()) {
    ++slot.in_use;
    co_return true;
  }
  auto ex = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(ex);
  waiter->timer.expires_at(asio::steady_timer::time_point::max());
  slot.waiters.push_back(waiter);
  CancelRegistration reg(cancel, [waiter] { waiter->timer.cancel(); });
  boost::system::error_code ec;
  co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (waiter->granted) co_return true;
  // Cancelled while waiting: leave the queue.
  Slot& s = slots_[agent];
  s.waiters.erase(std::remove(s.waiters.begin(), s.waiters.end(), waiter), s.waiters.end());
  co_return false;
}

void AgentLimiter::Release(const std::string& agent) {
  auto it = slots_.find(agent);
  if (it == slots_.end()) return;
  Slot& slot = it->second;
  while (!slot.waiters.empty()) {
    auto w = slot.waiters.front();
    slot.waiters.pop_front();
    if (w->granted) continue;
    w->granted = true;  // the slot passes to the waiter; in_use unchanged
    w->timer.cancel();
    return;
  }
  if (slot.in_use > 0) --slot.in_use;
}

int AgentLimiter::InUse(const std::string& agent) const {
  auto it = slots_.find(agent);
  return it == slots_.end() ? 0 : it->second.in_use;
}

}  // namespace af
