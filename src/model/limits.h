// Size limits on the data a run moves, checked where it enters a step: a
// step's resolved input before its agent is called, a for_each step's
// elements before any of them starts. The engine applies them
// (EngineOptions::limits); these are the plain checks, tested alone.
// Neighbouring limits live with what they guard: request bodies in
// http::ServerOptions, plans in PlanLimits (plan.h), agent replies in
// HttpAgentCallerOptions (agent.h). docs/reliability.md lists them all.
// Pure; thread-safe.
#pragma once

#include <cstddef>

#include "common/status.h"
#include "model/types.h"

namespace af {

struct StepLimits {
  // A step's resolved input, as compact JSON (what the agent is sent).
  // Larger: the step fails without calling the agent. 16 MiB, the default
  // limit on an agent's reply, so what one step returns the next can take.
  size_t max_input_bytes = 16 << 20;
  // Elements of one for_each step; more: the step fails before any element
  // starts. Each element is an agent call and a step_executions row, and
  // GET /runs/{id}/steps is not paged: 10000 rows stay a readable page.
  size_t max_for_each_items = 10000;
};

// TooLarge "input is N bytes, over the limit of M bytes. Hint: ..." when the
// compact JSON of `input` is longer than `max_bytes` (0: no limit).
Status CheckStepInput(const json& input, size_t max_bytes);

// TooLarge "for_each has N elements, over the limit of M. Hint: ..." when
// `count` is over `max_items` (0: no limit).
Status CheckForEachItems(size_t count, size_t max_items);

}  // namespace af
