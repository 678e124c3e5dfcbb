// References and conditions inside workflow plans.
//
// References: ${input.<path>}, ${steps.<id>.output.<path>}, ${steps.<id>.output},
// ${item}, ${item.<path>}, ${index}, ${run.id}; a path is a chain of `.field`
// and `[n]`. A template string that is exactly one reference keeps the JSON
// type of the value; references inside longer strings are interpolated as
// text (strings raw, other values as compact JSON).
//
// Conditions (`when`): ==, !=, <, <=, >, >=, &&, ||, !, parentheses, numbers,
// 'single' or "double" quoted strings, true/false/null and ${...} references.
// A condition's value is its truthiness: false, null, 0, "" , [] and {} are
// false. == compares JSON values; < etc. compare two numbers or two strings.
//
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/types.h"

namespace af {

// One `${...}` reference, parsed.
struct Reference {
  enum class Root { kInput, kStep, kItem, kIndex, kRunId };
  struct PathElem {
    std::string field;  // set for .field
    int index = -1;     // set (>= 0) for [n]
  };
  Root root = Root::kInput;
  std::string step_id;          // for kStep
  std::vector<PathElem> path;   // after `input`, `steps.<id>.output` or `item`
  std::string text;             // the reference as written, without ${ }
};

// Parses the text between ${ and }.
Result<Reference> ParseReference(const std::string& text);

// Every reference in a JSON template (strings at any depth), in order.
// Fails on the first malformed one, naming it.
Result<std::vector<Reference>> CollectReferences(const json& tmpl);

// What references resolve against during a run. Not owned; must outlive calls.
struct Scope {
  const json* input = nullptr;
  std::string run_id;
  // Looks up a finished step's output; nullptr if the step has no output
  // (not run yet). A skipped step's output is JSON null.
  std::function<const json*(const std::string& step_id)> step_output;
  const json* item = nullptr;   // inside for_each only
  std::optional<int> index;     // inside for_each only
};

// Resolves one reference. A missing field, an index out of range or an
// unknown step fails with InvalidArgument naming the full path
// ("${steps.a.output.x.y}: field 'y' not found").
Result<json> Resolve(const Reference& ref, const Scope& scope);

// Resolves every string in a template (objects and arrays are walked).
Result<json> ResolveTemplate(const json& tmpl, const Scope& scope);

// A parsed condition.
class Condition {
 public:
  virtual ~Condition() = default;
  // The condition's value (before truthiness).
  virtual Result<json> Evaluate(const Scope& scope) const = 0;
  // The references it contains, for validation.
  virtual std::vector<Reference> References() const = 0;
};

// Parses a `when` expression; InvalidArgument with the position on error.
Result<std::shared_ptr<const Condition>> ParseCondition(const std::string& text);

// Evaluates and applies truthiness.
Result<bool> EvaluateCondition(const Condition& cond, const Scope& scope);
bool Truthy(const json& v);

}  // namespace af
