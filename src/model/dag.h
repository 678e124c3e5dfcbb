// Scheduling decisions for one run: which steps may start now. Pure logic over
// the plan and the steps' states; the executor owns the state and asks.
// Not thread-safe (one run, one owner).
#pragma once

#include <vector>

#include "model/plan.h"

namespace af {

enum class StepState { kWaiting, kRunning, kDone, kSkipped, kFailed, kCancelled };

class DagScheduler {
 public:
  explicit DagScheduler(const Plan& plan);

  // Steps (indices) whose upstream steps are all kDone or kSkipped and which
  // are still kWaiting, in plan order. Does not change state.
  std::vector<int> Ready() const;
  // Records a step's state; indices outside the plan are ignored.
  void Set(int step, StepState state);
  StepState Get(int step) const { return states_[step]; }
  // True when every step is kDone or kSkipped.
  bool AllFinished() const;
  // True when nothing is running and nothing can become ready, yet not every
  // step finished (a step failed or was cancelled, or an upstream of a waiting
  // step did). False once AllFinished().
  bool Stalled() const;
  int Running() const;

 private:
  const Plan& plan_;
  std::vector<StepState> states_;
};

}  // namespace af
