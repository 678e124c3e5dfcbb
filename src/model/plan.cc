#include "model/plan.h"

#include <climits>
#include <cstdint>
#include <exception>
#include <set>
#include <utility>

#include "common/ids.h"
#include "common/json_limits.h"

namespace af {
namespace {

// At most this many problems are listed in details (all are counted), so a
// hostile plan cannot produce an unbounded error body.
constexpr size_t kMaxListedProblems = 100;
constexpr int kMaxTemplateDepth = 100;
constexpr int64_t kMaxTimeoutMs = 86400000;  // one day
constexpr size_t kMaxQuoted = 60;

const std::set<std::string>& TopFields() {
  static const std::set<std::string> f = {"name", "description", "steps", "output"};
  return f;
}
const std::set<std::string>& StepFields() {
  static const std::set<std::string> f = {"id",           "agent", "input", "depends_on", "for_each",
                                          "max_parallel", "when",  "retry", "timeout_ms"};
  return f;
}

std::string Quote(const std::string& s) {
  if (s.size() <= kMaxQuoted) return "'" + s + "'";
  return "'" + s.substr(0, kMaxQuoted) + "...'";
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

std::optional<int64_t> AsInt(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

bool IsSingleReference(const std::string& s) {
  return s.size() >= 3 && s.compare(0, 2, "${") == 0 && s.find('}') == s.size() - 1;
}

// Collects every problem; messages read "step 'x': field 'f': what is wrong".
class Problems {
 public:
  // `step` is the step's id (or null), `label` how the message names the step
  // ("step 'x'", "steps[3]"; empty at top level).
  void Add(const json& step, const std::string& label, const std::string& field, const std::string& what) {
    ++count_;
    if (list_.size() >= kMaxListedProblems) return;
    std::string text = label.empty() ? "" : label + ": ";
    if (!field.empty()) text += "field '" + field + "': ";
    text += what;
    list_.push_back({{"step", step}, {"field", field}, {"message", std::move(text)}});
  }
  size_t count() const { return count_; }
  Status ToStatus() const {
    json details = {{"problems", list_}};
    if (count_ > list_.size()) details["truncated"] = true;
    return Status::InvalidArgument("workflow plan is invalid: " + std::to_string(count_) + " problem(s)",
                                   std::move(details));
  }

 private:
  size_t count_ = 0;
  json list_ = json::array();
};

struct FoundRef {
  std::string field;  // where the reference sits, e.g. "input.text"
  Reference ref;
};

// Walks a template, collecting its references with their field paths and
// reporting malformed ones (one problem per bad string).
void ScanTemplate(const json& v, const std::string& path, int depth, std::vector<FoundRef>* refs,
                  std::vector<std::pair<std::string, std::string>>* errors) {
  if (depth > kMaxTemplateDepth) {
    errors->push_back({path, "nested deeper than " + std::to_string(kMaxTemplateDepth) + " levels"});
    return;
  }
  if (v.is_string()) {
    if (v.get_ref<const std::string&>().find("${") == std::string::npos) return;
    Result<std::vector<Reference>> r = CollectReferences(v);
    if (!r.ok()) {
      errors->push_back({path, r.status().message()});
      return;
    }
    for (Reference& ref : *r) refs->push_back({path, std::move(ref)});
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it)
      ScanTemplate(it.value(), path + "." + it.key(), depth + 1, refs, errors);
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      ScanTemplate(v[i], path + "[" + std::to_string(i) + "]", depth + 1, refs, errors);
    }
  }
}

enum class Where { kInput, kForEach, kWhen };

struct RefUse {
  int step;
  Where where;
  FoundRef found;
};

std::string Braced(const Reference& r) { return "${" + r.text + "}"; }

Result<Plan> ParsePlanImpl(const json& doc, const PlanLimits& limits) {
  Problems problems;
  auto top = [&](const std::string& field, const std::string& what) { problems.Add(nullptr, "", field, what); };

  if (!doc.is_object()) {
    top("", "the plan must be a JSON object with \"name\" and \"steps\"");
    return problems.ToStatus();
  }
  if (limits.max_plan_bytes > 0) {
    // Like too many steps: reported alone, before any work on a huge plan.
    size_t size = JsonSerializedSize(doc);
    if (size > limits.max_plan_bytes) {
      top("", "the plan is " + std::to_string(size) + " bytes as compact JSON, over the limit of " +
                  std::to_string(limits.max_plan_bytes) +
                  " bytes. Hint: move large constant data out of the plan (into the run input), or raise the "
                  "limit (--max-plan-bytes)");
      return problems.ToStatus();
    }
  }
  Plan plan;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!TopFields().count(it.key())) {
      top(it.key(), "unknown field. Hint: a plan has name, description, steps and output");
    }
  }
  if (auto it = doc.find("name"); it == doc.end()) {
    top("name", "is required (a non-empty string)");
  } else if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
    top("name", "must be a non-empty string");
  } else if (!IsValidId(it->get<std::string>())) {
    top("name", "must be 1-128 characters of letters, digits, '.', '_', ':' and '-' (it is used in URLs and "
                "on the command line, e.g. 'agentflow run start NAME')");
  } else {
    plan.name = it->get<std::string>();
  }
  if (auto it = doc.find("description"); it != doc.end()) {
    if (it->is_string()) {
      plan.description = it->get<std::string>();
    } else {
      top("description", "must be a string");
    }
  }
  if (auto it = doc.find("output"); it != doc.end()) plan.output = *it;

  const json* steps = nullptr;
  if (auto it = doc.find("steps"); it == doc.end()) {
    top("steps", "is required (a non-empty array of steps)");
  } else if (!it->is_array()) {
    top("steps", "must be an array of steps");
  } else if (it->empty()) {
    top("steps", "must contain at least one step");
  } else if (it->size() > limits.max_steps) {
    // Validating a huge plan step by step is wasted work: this one problem
    // must be fixed first.
    top("steps", "too many steps (" + std::to_string(it->size()) + "; the limit is " +
                     std::to_string(limits.max_steps) +
                     "). Hint: split the workflow, use for_each for repeated work, or raise the limit "
                     "(--max-plan-steps)");
    return problems.ToStatus();
  } else {
    steps = &*it;
  }

  const size_t n = steps ? steps->size() : 0;
  plan.steps.resize(n);
  std::vector<std::string> labels(n);
  std::vector<json> ids(n);  // the step's id, or null if it has no valid one
  std::vector<bool> declares_deps(n, false), has_for_each(n, false);
  std::vector<RefUse> uses;

  for (size_t i = 0; i < n; ++i) {
    const json& s = (*steps)[i];
    StepSpec& spec = plan.steps[i];
    const int si = static_cast<int>(i);
    labels[i] = "steps[" + std::to_string(i) + "]";
    if (!s.is_object()) {
      problems.Add(nullptr, labels[i], "", "must be an object with \"id\" and \"agent\"");
      continue;
    }

    // The id first: later messages name the step by it.
    if (auto it = s.find("id"); it == s.end()) {
      problems.Add(nullptr, labels[i], "id", "is required (letters, digits, '_' and '-')");
    } else if (!it->is_string()) {
      problems.Add(nullptr, labels[i], "id", "must be a string");
    } else {
      const std::string& id = it->get_ref<const std::string&>();
      bool chars_ok = true;
      for (char c : id) chars_ok = chars_ok && IsIdChar(c);
      if (id.empty()) {
        problems.Add(nullptr, labels[i], "id", "must not be empty");
      } else if (id.size() > limits.max_id_length) {
        problems.Add(nullptr, labels[i], "id",
                     "is longer than " + std::to_string(limits.max_id_length) + " characters");
      } else if (!chars_ok) {
        problems.Add(nullptr, labels[i], "id", Quote(id) + " may only contain letters, digits, '_' and '-'");
      } else {
        spec.id = id;
        ids[i] = id;
        labels[i] = "step '" + id + "'";
        auto [pos, inserted] = plan.index_of.emplace(id, si);
        if (!inserted) {
          problems.Add(ids[i], labels[i], "id",
                       "duplicate step id (steps[" + std::to_string(pos->second) + "] and steps[" + std::to_string(i) +
                           "] both use it)");
        }
      }
    }
    auto add = [&](const std::string& field, const std::string& what) { problems.Add(ids[i], labels[i], field, what); };

    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!StepFields().count(it.key())) {
        add(it.key(),
            "unknown field. Hint: a step has id, agent, input, depends_on, for_each, max_parallel, when, retry and "
            "timeout_ms");
      }
    }

    if (auto it = s.find("agent"); it == s.end()) {
      add("agent", "is required (the name of a registered agent)");
    } else if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      add("agent", "must be a non-empty string");
    } else {
      spec.agent = it->get<std::string>();
    }

    if (auto it = s.find("input"); it != s.end()) {
      if (!it->is_object()) {
        add("input", "must be an object (a JSON template)");
      } else {
        spec.input = *it;
        std::vector<FoundRef> refs;
        std::vector<std::pair<std::string, std::string>> errors;
        ScanTemplate(*it, "input", 0, &refs, &errors);
        for (auto& [field, what] : errors) add(field, what);
        for (FoundRef& f : refs) uses.push_back({si, Where::kInput, std::move(f)});
      }
    }

    if (auto it = s.find("depends_on"); it != s.end()) {
      declares_deps[i] = true;
      if (!it->is_array()) {
        add("depends_on", "must be an array of step ids");
      } else {
        for (size_t k = 0; k < it->size(); ++k) {
          const json& d = (*it)[k];
          if (d.is_string()) {
            spec.depends_on.push_back(d.get<std::string>());
          } else {
            add("depends_on", "entry " + std::to_string(k) + " must be a string (a step id)");
          }
        }
      }
    }

    if (auto it = s.find("for_each"); it != s.end()) {
      has_for_each[i] = true;
      if (!it->is_string() || !IsSingleReference(it->get_ref<const std::string&>())) {
        add("for_each", "must be exactly one reference to an array, like \"${steps.fetch.output.items}\"");
      } else {
        const std::string& text = it->get_ref<const std::string&>();
        Result<Reference> r = ParseReference(text.substr(2, text.size() - 3));
        if (!r.ok()) {
          add("for_each", r.status().message());
        } else if (r->root != Reference::Root::kInput && r->root != Reference::Root::kStep) {
          add("for_each", Braced(*r) + " cannot be iterated. Hint: refer to an array in input or in a step's output");
        } else {
          spec.for_each = text;
          spec.for_each_ref = *r;
          uses.push_back({si, Where::kForEach, {"for_each", *r}});
        }
      }
    }

    if (auto it = s.find("max_parallel"); it != s.end()) {
      std::optional<int64_t> v = AsInt(*it);
      if (!v || *v < 0 || *v > INT_MAX) {
        add("max_parallel", "must be an integer >= 0 (0 = no limit)");
      } else {
        spec.max_parallel = static_cast<int>(*v);
      }
      if (!has_for_each[i]) add("max_parallel", "is only valid together with for_each");
    }

    if (auto it = s.find("when"); it != s.end()) {
      if (!it->is_string()) {
        add("when", "must be a string (a condition such as \"${input.enabled} == true\")");
      } else if (it->get_ref<const std::string&>().find_first_not_of(" \t\r\n") == std::string::npos) {
        add("when", "must not be empty");
      } else {
        Result<std::shared_ptr<const Condition>> c = ParseCondition(it->get<std::string>());
        if (!c.ok()) {
          add("when", c.status().message());
        } else {
          spec.when = it->get<std::string>();
          spec.when_cond = *c;
          for (Reference& r : (*c)->References()) uses.push_back({si, Where::kWhen, {"when", std::move(r)}});
        }
      }
    }

    if (auto it = s.find("retry"); it != s.end()) {
      std::vector<std::string> retry_problems;
      spec.retry = RetryPolicy::FromJson(*it, &retry_problems);
      for (const std::string& p : retry_problems) {
        size_t colon = p.find(": ");  // "retry.max_attempts: must be ..."
        if (colon == std::string::npos) {
          add("retry", p);
        } else {
          add(p.substr(0, colon), p.substr(colon + 2));
        }
      }
    }

    if (auto it = s.find("timeout_ms"); it != s.end()) {
      std::optional<int64_t> v = AsInt(*it);
      if (!v || *v < 1 || *v > kMaxTimeoutMs) {
        add("timeout_ms", "must be an integer 1.." + std::to_string(kMaxTimeoutMs) + " (milliseconds)");
      } else {
        spec.timeout_ms = *v;
      }
    }
  }

  // Edges: deps[i] are the steps step i depends on.
  for (size_t i = 0; i < n; ++i) plan.is_dag = plan.is_dag || declares_deps[i];
  std::vector<std::vector<int>> deps(n);
  for (size_t i = 0; i < n; ++i) {
    std::set<int> seen;
    for (const std::string& name : plan.steps[i].depends_on) {
      auto it = plan.index_of.find(name);
      if (it == plan.index_of.end()) {
        problems.Add(ids[i], labels[i], "depends_on", "unknown step " + Quote(name));
      } else if (it->second == static_cast<int>(i)) {
        problems.Add(ids[i], labels[i], "depends_on", "a step cannot depend on itself");
      } else if (!seen.insert(it->second).second) {
        problems.Add(ids[i], labels[i], "depends_on", "lists " + Quote(name) + " more than once");
      } else {
        deps[i].push_back(it->second);
      }
    }
  }

  // Cycles: iterative DFS (no recursion, so a long chain cannot overflow the
  // stack). `order` receives steps after all their dependencies.
  bool has_cycle = false;
  std::vector<int> order;
  if (plan.is_dag) {
    std::vector<int> color(n, 0);  // 0 unvisited, 1 on the path, 2 done
    std::vector<int> path;
    std::vector<size_t> next_edge;
    for (size_t root = 0; root < n; ++root) {
      if (color[root] != 0) continue;
      color[root] = 1;
      path.push_back(static_cast<int>(root));
      next_edge.push_back(0);
      while (!path.empty()) {
        int u = path.back();
        if (next_edge.back() < deps[u].size()) {
          int v = deps[u][next_edge.back()++];
          if (color[v] == 0) {
            color[v] = 1;
            path.push_back(v);
            next_edge.push_back(0);
          } else if (color[v] == 1) {
            has_cycle = true;
            std::string cycle;
            size_t start = 0;
            while (path[start] != v) ++start;
            for (size_t k = start; k < path.size(); ++k) cycle += plan.steps[path[k]].id + " -> ";
            cycle += plan.steps[v].id;
            problems.Add(ids[v], labels[v], "depends_on",
                         "dependency cycle: " + cycle +
                             " (each step depends on the next). Hint: remove one of these "
                             "dependencies");
          }
        } else {
          color[u] = 2;
          order.push_back(u);
          path.pop_back();
          next_edge.pop_back();
        }
      }
    }
  }

  // upstream/downstream: direct edges (the implicit chain when sequential).
  plan.upstream.assign(n, {});
  plan.downstream.assign(n, {});
  for (size_t i = 0; i < n; ++i) {
    if (plan.is_dag) {
      plan.upstream[i] = deps[i];
    } else if (i > 0) {
      plan.upstream[i] = {static_cast<int>(i) - 1};
    }
    for (int u : plan.upstream[i]) plan.downstream[u].push_back(static_cast<int>(i));
  }

  // Transitive ancestors as bitsets, filled in dependency order (DAG, acyclic).
  const size_t words = (n + 63) / 64;
  std::vector<std::vector<uint64_t>> ancestors;
  if (plan.is_dag && !has_cycle) {
    ancestors.assign(n, std::vector<uint64_t>(words, 0));
    for (int u : order) {
      for (int v : deps[u]) {
        for (size_t w = 0; w < words; ++w) ancestors[u][w] |= ancestors[v][w];
        ancestors[u][v / 64] |= uint64_t{1} << (v % 64);
      }
    }
  }
  auto is_upstream = [&](int step, int other) -> bool {
    if (!plan.is_dag) return other < step;
    return ((ancestors[step][other / 64] >> (other % 64)) & 1) != 0;
  };

  for (const RefUse& use : uses) {
    const Reference& r = use.found.ref;
    const std::string& field = use.found.field;
    const size_t i = static_cast<size_t>(use.step);
    auto add = [&](const std::string& what) { problems.Add(ids[i], labels[i], field, what); };
    switch (r.root) {
      case Reference::Root::kStep: {
        auto it = plan.index_of.find(r.step_id);
        if (it == plan.index_of.end()) {
          add(Braced(r) + " refers to unknown step '" + r.step_id + "'");
        } else if (it->second == use.step) {
          add(Braced(r) + " refers to the step's own output");
        } else if (has_cycle) {
          // Upstream is undefined until the cycle is fixed (reported above).
        } else if (!is_upstream(use.step, it->second)) {
          const std::string self = plan.steps[i].id.empty() ? labels[i] : "'" + plan.steps[i].id + "'";
          if (plan.is_dag) {
            add(Braced(r) + " refers to step '" + r.step_id + "', which is not upstream of " + self + ". Hint: add '" +
                r.step_id + "' to depends_on (directly or through another step)");
          } else {
            add(Braced(r) + " refers to step '" + r.step_id + "', which runs after " + self +
                ". Hint: move it before " + self + " in steps");
          }
        }
        break;
      }
      case Reference::Root::kItem:
      case Reference::Root::kIndex:
        if (use.where == Where::kWhen) {
          add(Braced(r) +
              " cannot be used in when: the condition is evaluated once per step, before for_each "
              "fans out");
        } else if (use.where == Where::kInput && !has_for_each[i]) {
          add(Braced(r) + " is only available in the input of a for_each step");
        }
        break;
      case Reference::Root::kInput:
      case Reference::Root::kRunId:
        break;
    }
  }

  // The output template runs after every step, so any existing step is fine.
  if (!plan.output.is_null()) {
    std::vector<FoundRef> refs;
    std::vector<std::pair<std::string, std::string>> errors;
    ScanTemplate(plan.output, "output", 0, &refs, &errors);
    for (auto& [field, what] : errors) top(field, what);
    for (const FoundRef& f : refs) {
      const Reference& r = f.ref;
      if (r.root == Reference::Root::kStep && steps && !plan.index_of.count(r.step_id)) {
        top(f.field, Braced(r) + " refers to unknown step '" + r.step_id + "'");
      } else if (r.root == Reference::Root::kItem || r.root == Reference::Root::kIndex) {
        top(f.field, Braced(r) + " is only available in the input of a for_each step");
      }
    }
  }

  if (problems.count() > 0) return problems.ToStatus();
  return plan;
}

}  // namespace

const StepSpec* Plan::Find(const std::string& id) const {
  auto it = index_of.find(id);
  if (it == index_of.end() || it->second < 0 || static_cast<size_t>(it->second) >= steps.size()) return nullptr;
  return &steps[static_cast<size_t>(it->second)];
}

Status CheckPlanLimits(const PlanLimits& limits) {
  if (limits.max_steps >= 1 && limits.max_steps <= PlanLimits::kMaxStepsCap) return Status::Ok();
  return Status::InvalidArgument("--max-plan-steps must be from 1 to " + std::to_string(PlanLimits::kMaxStepsCap) +
                                 ", got " + std::to_string(limits.max_steps) +
                                 ". Hint: executors refuse plans with more steps than that");
}

Result<Plan> ParsePlan(const json& doc, const PlanLimits& limits) {
  try {
    return ParsePlanImpl(doc, limits);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("validating workflow plan: ") + e.what());
  }
}

}  // namespace af
