// Parsed plans kept per workflow version, so that runs of one workflow do
// not each parse and validate the same plan document again (ParsePlan was
// ~79k instructions of a 10-step run's ~2.6 M on the executor's loop:
// docs/benchmarks.md item 41).
//
// An entry is used only when its document equals the one asked about, so a
// plan carried by a request that differs from the stored one (or two
// workflows' documents under one key) is parsed, never confused. Plans
// without a workflow id and version (a seed publisher's message may carry
// only the plan) are parsed every time.
//
// Not thread-safe: one per executor loop.
#pragma once

#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/status.h"
#include "model/plan.h"

namespace af {

class PlanCache {
 public:
  // At most `max_plans` plans with at most `max_steps` steps and
  // `max_bytes` of plan document (as compact JSON) between them; the least
  // recently used go first, and a plan over a bound alone is not kept.
  explicit PlanCache(size_t max_plans = 64, size_t max_steps = 4096, size_t max_bytes = 8 << 20)
      : max_plans_(max_plans), max_steps_(max_steps), max_bytes_(max_bytes) {}

  // The plan `doc` parses to under `limits` (a parse failure is returned,
  // not kept). Kept under (workflow_id, version) when workflow_id is not
  // empty and version > 0. Callers must pass the same limits for one cache.
  Result<std::shared_ptr<const Plan>> Get(const std::string& workflow_id, int version, const json& doc,
                                          const PlanLimits& limits);

  size_t size() const { return entries_.size(); }
  size_t steps() const { return steps_; }
  size_t bytes() const { return bytes_; }

 private:
  using Key = std::pair<std::string, int>;
  struct Entry {
    Key key;
    json doc;
    size_t bytes = 0;  // doc as compact JSON
    std::shared_ptr<const Plan> plan;
  };
  void Erase(std::list<Entry>::iterator it);

  size_t max_plans_;
  size_t max_steps_;
  size_t max_bytes_;
  size_t steps_ = 0;
  size_t bytes_ = 0;
  std::list<Entry> entries_;  // most recently used first
  std::map<Key, std::list<Entry>::iterator> index_;
};

}  // namespace af
