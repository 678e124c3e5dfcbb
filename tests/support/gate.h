// A gate for tests that hold a call on another thread: the call Pass()es,
// which counts it and waits until the test Open()s the gate; the test waits
// for the first call with WaitForCall. Header-only. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace af::testing_support {

class Gate {
 public:
  ~Gate() { Open(); }

  // Counts a call, then waits until the gate is open.
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  // Lets every call through, now and from now on.
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Whether a call came within `bound`.
  bool WaitForCall(std::chrono::seconds bound) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, bound, [this] { return calls_ > 0; });
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int calls_ = 0;
  bool open_ = false;
};

}  // namespace af::testing_support
