#include "model/plan_cache.h"

namespace af {

Result<std::shared_ptr<const Plan>> PlanCache::Get(const std::string& workflow_id, int version, const json& doc,
                                                   const PlanLimits& limits) {
  const bool keyed = !workflow_id.empty() && version > 0;
  Key key;
  if (keyed) {
    key = Key(workflow_id, version);
    auto it = index_.find(key);
    if (it != index_.end()) {
      if (it->second->doc == doc) {
        entries_.splice(entries_.begin(), entries_, it->second);
        return it->second->plan;
      }
      steps_ -= it->second->plan->steps.size();
      entries_.erase(it->second);
      index_.erase(it);
    }
  }
  auto parsed = ParsePlan(doc, limits);
  if (!parsed.ok()) return parsed.status();
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  if (!keyed || plan->steps.size() > max_steps_ || max_plans_ == 0) return plan;
  entries_.push_front(Entry{key, doc, plan});
  index_[key] = entries_.begin();
  steps_ += plan->steps.size();
  Evict();
  return plan;
}

void PlanCache::Evict() {
  while (entries_.size() > max_plans_ || steps_ > max_steps_) {
    Entry& last = entries_.back();
    steps_ -= last.plan->steps.size();
    index_.erase(last.key);
    entries_.pop_back();
  }
}

}  // namespace af
