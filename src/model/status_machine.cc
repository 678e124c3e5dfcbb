#include "model/status_machine.h"

#include <string>

namespace af {

bool CanTransition(RunStatus from, RunStatus to) {
  switch (from) {
    case RunStatus::kPending:
      return to == RunStatus::kRunning || to == RunStatus::kCancelled || to == RunStatus::kFailed;
    case RunStatus::kRunning:
      return to == RunStatus::kCompleted || to == RunStatus::kFailed || to == RunStatus::kCancelled;
    case RunStatus::kFailed:
    case RunStatus::kCancelled:
      return to == RunStatus::kPending;
    case RunStatus::kCompleted:
      return false;
  }
  return false;
}

bool CanTransition(std::optional<StepStatus> from, StepStatus to) {
  if (!from) return to != StepStatus::kCompleted;
  if (*from == StepStatus::kRunning) return to != StepStatus::kRunning && to != StepStatus::kSkipped;
  return false;
}

Status CheckTransition(RunStatus from, RunStatus to) {
  if (CanTransition(from, to)) return Status::Ok();
  return Status::FailedPrecondition(std::string("run cannot go from ") + ToString(from) + " to " + ToString(to),
                                    {{"from", ToString(from)}, {"to", ToString(to)}});
}

Status CheckTransition(std::optional<StepStatus> from, StepStatus to) {
  if (CanTransition(from, to)) return Status::Ok();
  return Status::FailedPrecondition(std::string("step execution cannot go from ") +
                                        (from ? ToString(*from) : "(new)") + " to " + ToString(to),
                                    {{"from", from ? json(ToString(*from)) : json(nullptr)}, {"to", ToString(to)}});
}

}  // namespace af
