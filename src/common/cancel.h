// A cancellation signal for one run or one call: whoever starts an operation
// that may be stopped (an HTTP call, a backoff sleep) registers a callback;
// Cancel() runs them all once. Later registrations on a cancelled signal run
// at once.
// Not thread-safe: create, use and cancel it on one executor (thread/strand).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

namespace af {

class CancelSignal {
 public:
  bool cancelled() const { return cancelled_; }
  const std::string& reason() const { return reason_; }

  // Returns a token for Remove. If already cancelled, runs `fn` now and
  // returns 0.
  uint64_t OnCancel(std::function<void()> fn) {
    if (cancelled_) {
      fn();
      return 0;
    }
    uint64_t t = next_++;
    callbacks_.emplace(t, std::move(fn));
    return t;
  }
  void Remove(uint64_t token) { callbacks_.erase(token); }

  void Cancel(std::string reason = "cancelled") {
    if (cancelled_) return;
    cancelled_ = true;
    reason_ = std::move(reason);
    auto cbs = std::move(callbacks_);
    callbacks_.clear();
    for (auto& [t, fn] : cbs) fn();
  }

 private:
  bool cancelled_ = false;
  std::string reason_;
  uint64_t next_ = 1;
  std::map<uint64_t, std::function<void()>> callbacks_;
};

// Removes its callback when it goes out of scope.
class CancelRegistration {
 public:
  CancelRegistration(CancelSignal* signal, std::function<void()> fn) : signal_(signal) {
    if (signal_) token_ = signal_->OnCancel(std::move(fn));
  }
  ~CancelRegistration() {
    if (signal_ && token_) signal_->Remove(token_);
  }
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;

 private:
  CancelSignal* signal_;
  uint64_t token_ = 0;
};

}  // namespace af
