// The one status machine for runs and step executions. Every store write that
// changes a status calls these checks first, so no code path can record an
// impossible transition. Pure functions; thread-safe.
//
// Runs:   PENDING → RUNNING | CANCELLED | FAILED
//         RUNNING → COMPLETED | FAILED | CANCELLED
//         FAILED | CANCELLED → PENDING            (retry)
// Steps:  (new) → RUNNING | SKIPPED | CANCELLED | FAILED
//         RUNNING → COMPLETED | FAILED | CANCELLED
#pragma once

#include <optional>

#include "common/status.h"
#include "model/types.h"

namespace af {

bool CanTransition(RunStatus from, RunStatus to);
// from == nullopt means the step execution is being created.
bool CanTransition(std::optional<StepStatus> from, StepStatus to);

// OK, or FailedPrecondition naming both states.
Status CheckTransition(RunStatus from, RunStatus to);
Status CheckTransition(std::optional<StepStatus> from, StepStatus to);

}  // namespace af
