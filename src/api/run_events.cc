#include "api/run_events.h"

#include <algorithm>

#include "common/json_text.h"
#include "model/types.h"

namespace af {

std::vector<RunEvent> RunEventDiff::Next(const Run& run, const std::vector<StepExecution>& steps) {
  std::vector<RunEvent> out;
  if (ended_) return out;
  std::vector<RunEvent> step_events;
  std::vector<const StepExecution*> ordered;
  ordered.reserve(steps.size());
  for (const StepExecution& s : steps) ordered.push_back(&s);
  std::sort(ordered.begin(), ordered.end(),
            [](const StepExecution* a, const StepExecution* b) { return a->id < b->id; });
  for (const StepExecution* s : ordered) {
    std::string doc = JsonText(ToJson(*s));
    std::string& last = last_steps_[s->id];
    if (last == doc) continue;
    last = doc;
    step_events.push_back(RunEvent{"step", std::move(doc)});
  }
  std::string run_doc = RunJsonText(run);
  const bool run_changed = run_doc != last_run_;
  const bool finished = IsTerminal(run.status);
  if (run_changed) last_run_ = run_doc;
  if (!finished && run_changed) out.push_back(RunEvent{"run", run_doc});
  for (RunEvent& e : step_events) out.push_back(std::move(e));
  if (finished) {
    if (run_changed) out.push_back(RunEvent{"run", run_doc});
    out.push_back(RunEvent{"end", std::move(run_doc)});
    ended_ = true;
  }
  return out;
}

}  // namespace af
