#include "model/dag.h"

namespace af {

DagScheduler::DagScheduler(const Plan& plan) : plan_(plan), states_(plan.steps.size(), StepState::kWaiting) {}

std::vector<int> DagScheduler::Ready() const {
  std::vector<int> ready;
  for (size_t i = 0; i < states_.size(); ++i) {
    if (states_[i] != StepState::kWaiting) continue;
    bool ok = true;
    if (i < plan_.upstream.size()) {
      for (int up : plan_.upstream[i]) {
        StepState s = states_[static_cast<size_t>(up)];
        if (s != StepState::kDone && s != StepState::kSkipped) {
          ok = false;
          break;
        }
      }
    }
    if (ok) ready.push_back(static_cast<int>(i));
  }
  return ready;
}

void DagScheduler::Set(int step, StepState state) {
  if (step < 0 || static_cast<size_t>(step) >= states_.size()) return;
  states_[static_cast<size_t>(step)] = state;
}

bool DagScheduler::AllFinished() const {
  for (StepState s : states_) {
    if (s != StepState::kDone && s != StepState::kSkipped) return false;
  }
  return true;
}

bool DagScheduler::Stalled() const { return !AllFinished() && Running() == 0 && Ready().empty(); }

int DagScheduler::Running() const {
  int n = 0;
  for (StepState s : states_) n += s == StepState::kRunning ? 1 : 0;
  return n;
}

}  // namespace af
