// Workflow plans: parsing and validation of the plan document.
//
//   {"name", "description"?, "steps": [ {"id", "agent", "input"?, "depends_on"?,
//     "for_each"?, "max_parallel"?, "when"?, "retry"?, "timeout_ms"?} ], "output"?}
//
// If no step declares depends_on, steps run in list order (each depends on
// the one before it). If any does, the plan is a DAG.
// Pure; thread-safe.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/expr.h"
#include "model/retry.h"
#include "model/types.h"

namespace af {

// Limits on plan documents (checked by ParsePlan).
struct PlanLimits {
  // The hard cap on max_steps: validation keeps an n x n bit matrix of
  // ancestors (10000 steps: 12.5 MB), so services refuse a larger setting.
  static constexpr size_t kMaxStepsCap = 10000;

  size_t max_steps = 1000;        // steps per plan (--max-plan-steps)
  size_t max_id_length = 128;     // step id length
  // The plan as compact JSON (0: not checked). 512 KiB: every execution
  // request carries the plan, and a plan plus a run input at the 1 MiB body
  // limit must stay well under Kafka's message limit (10 MiB producer side).
  size_t max_plan_bytes = 512 * 1024;  // --max-plan-bytes

  // What an executor applies to a plan it is handed: plans were admitted by
  // the API with its own (configurable) limits, so only the hard cap on
  // steps holds here, and the size is bounded by the queue message limit.
  static PlanLimits ForExecution() {
    PlanLimits l;
    l.max_steps = kMaxStepsCap;
    l.max_plan_bytes = 0;
    return l;
  }
};

struct StepSpec {
  std::string id;
  std::string agent;
  json input = json::object();         // template
  std::vector<std::string> depends_on; // as written (empty in sequential plans)
  std::optional<std::string> for_each; // reference text "${...}" to an array
  std::optional<Reference> for_each_ref;
  int max_parallel = 0;                // for_each items in flight; 0 = no limit
  std::optional<std::string> when;     // condition text
  std::shared_ptr<const Condition> when_cond;
  RetryPolicy retry;
  std::optional<int64_t> timeout_ms;   // per attempt; falls back to the agent's
};

struct Plan {
  std::string name;
  std::string description;
  std::vector<StepSpec> steps;
  json output;          // template for the run output; null = see RunOutput
  bool is_dag = false;  // any step declared depends_on

  // Derived at parse time, indexed like `steps`:
  std::vector<std::vector<int>> upstream;    // direct predecessors (implicit chain if !is_dag)
  std::vector<std::vector<int>> downstream;  // direct successors
  std::map<std::string, int> index_of;       // step id → index

  const StepSpec* Find(const std::string& id) const;
};

// Parses and validates a plan. On failure returns InvalidArgument whose
// details() is {"problems": [{"step": id|null, "field": "...", "message": "..."}]}
// listing EVERY problem found: unknown fields (top level and per step),
// missing/empty/duplicate step ids, missing agent, unknown depends_on, cycles,
// references to steps that are not upstream of the referencing step (in
// input, for_each, when), malformed references and conditions, bad
// retry/timeout/max_parallel values, the output template referencing unknown
// steps.
Result<Plan> ParsePlan(const json& doc, const PlanLimits& limits = {});

// InvalidArgument naming the flag unless max_steps is 1..kMaxStepsCap (for
// services checking their configuration at start).
Status CheckPlanLimits(const PlanLimits& limits);

}  // namespace af
