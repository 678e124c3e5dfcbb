#include "model/plan_cache.h"

#include "common/json_limits.h"

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
      Erase(it->second);
    }
  }
  auto parsed = ParsePlan(doc, limits);
  if (!parsed.ok()) return parsed.status();
  auto plan = std::make_shared<const Plan>(std::move(parsed).value());
  if (!keyed || max_plans_ == 0 || plan->steps.size() > max_steps_) return plan;
  const size_t bytes = JsonSerializedSize(doc);
  if (bytes > max_bytes_) return plan;
  entries_.push_front(Entry{key, doc, bytes, plan});
  index_[key] = entries_.begin();
  steps_ += plan->steps.size();
  bytes_ += bytes;
  while (entries_.size() > max_plans_ || steps_ > max_steps_ || bytes_ > max_bytes_) Erase(std::prev(entries_.end()));
  return plan;
}

void PlanCache::Erase(std::list<Entry>::iterator it) {
  steps_ -= it->plan->steps.size();
  bytes_ -= it->bytes;
  index_.erase(it->key);
  entries_.erase(it);
}

}  // namespace af
