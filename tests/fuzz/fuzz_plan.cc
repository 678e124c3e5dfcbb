// libFuzzer target: plan documents as the API, the CLI and the consumer read
// them (depth check, JSON parse, ParsePlan). A plan ParsePlan accepts must be
// schedulable to the end by DagScheduler, and its retry delays must respect
// the plan's cap. An Internal status means an exception escaped: a bug.
#include <string>
#include <string_view>

#include "common/json_limits.h"
#include "fuzz_check.h"
#include "model/dag.h"
#include "model/plan.h"

using namespace af;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (!CheckJsonDepth(text, "plan").ok()) return 0;
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;
  // Small limits too, so the limit paths are reached with small inputs.
  for (const PlanLimits& limits : {PlanLimits{}, PlanLimits{3, 4}}) {
    Result<Plan> plan = ParsePlan(doc, limits);
    if (!plan.ok()) {
      FUZZ_CHECK(plan.status().code() == Code::kInvalidArgument, plan.status().ToString());
      const json& problems = plan.status().details()["problems"];
      FUZZ_CHECK(problems.is_array() && !problems.empty(), plan.status().ToString());
      (void)plan.status().details().dump(-1, ' ', false, json::error_handler_t::replace);
      continue;
    }
    const size_t n = plan->steps.size();
    FUZZ_CHECK(n >= 1 && n <= limits.max_steps, "step count");
    FUZZ_CHECK(plan->index_of.size() == n && plan->upstream.size() == n && plan->downstream.size() == n,
               "derived tables");
    for (size_t i = 0; i < n; ++i) {
      FUZZ_CHECK(plan->Find(plan->steps[i].id) == &plan->steps[i], plan->steps[i].id);
      for (int u : plan->upstream[i]) FUZZ_CHECK(u >= 0 && static_cast<size_t>(u) < n && u != int(i), "edge");
      const RetryPolicy& p = plan->steps[i].retry;
      for (int attempt = 2; attempt <= p.max_attempts; ++attempt) {
        for (double jitter : {0.0, 0.999}) {
          int64_t d = BackoffMs(p, attempt, jitter, 86400000);
          FUZZ_CHECK(d >= 0 && d <= p.max_backoff_ms, "backoff " + std::to_string(d));
        }
      }
    }
    // Run it: every round starts what is ready and finishes it. A valid plan
    // (acyclic) finishes in at most n rounds.
    DagScheduler sched(*plan);
    size_t rounds = 0;
    while (!sched.AllFinished()) {
      std::vector<int> ready = sched.Ready();
      FUZZ_CHECK(!ready.empty() && ++rounds <= n, "a valid plan stalls");
      for (int s : ready) sched.Set(s, (s % 3 == 0) ? StepState::kSkipped : StepState::kDone);
    }
  }
  return 0;
}
