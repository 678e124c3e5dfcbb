// libFuzzer target: the expression language of plans (model/expr.h). The
// input is tried as a `when` condition, as one reference (the text between
// ${ and }) and as a template string, each evaluated against a fixed scope.
// Errors must be InvalidArgument: an Internal status means an exception
// escaped, a bug.
#include <string>

#include "fuzz_check.h"
#include "model/expr.h"

using namespace af;

namespace {

const json& Input() {
  static const json v = json::parse(R"({"a": 1, "s": "text", "t": true, "f": 1.5, "neg": -3, "zero": 0,
    "big": 18446744073709551615, "arr": [1, "two", {"b": null}, [3]], "obj": {"k": "v", "n": [true, false]},
    "empty": {}, "none": null, "topics": ["x", "y"], "odd key": {"x.y": 2}})");
  return v;
}

const json& StepOutput() {
  static const json v = json::parse(R"({"items": [{"id": 1}, {"id": 2}], "ok": true, "count": 2, "name": "n"})");
  return v;
}

Scope MakeScope(bool in_for_each) {
  static const json item = json::parse(R"({"name": "it", "v": [1, 2], "n": 7})");
  static const json null_output;
  Scope scope;
  scope.input = &Input();
  scope.run_id = "run-1";
  scope.step_output = [](const std::string& id) -> const json* {
    if (id == "fetch" || id == "plan") return &StepOutput();
    if (id == "skipped") return &null_output;
    return nullptr;
  };
  if (in_for_each) {
    scope.item = &item;
    scope.index = 3;
  }
  return scope;
}

void CheckStatus(const Status& s) {
  FUZZ_CHECK(s.code() == Code::kInvalidArgument, s.ToString());
  (void)json(s.message()).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool in_for_each : {false, true}) {
    const Scope scope = MakeScope(in_for_each);

    Result<std::shared_ptr<const Condition>> cond = ParseCondition(text);
    if (!cond.ok()) {
      CheckStatus(cond.status());
    } else {
      for (const Reference& r : (*cond)->References()) FUZZ_CHECK(!r.text.empty(), "empty reference");
      Result<bool> v = EvaluateCondition(**cond, scope);
      if (!v.ok()) CheckStatus(v.status());
    }

    Result<Reference> ref = ParseReference(text);
    if (!ref.ok()) {
      CheckStatus(ref.status());
    } else {
      Result<json> v = Resolve(*ref, scope);
      if (!v.ok()) CheckStatus(v.status());
    }

    const json tmpl = {{"whole", text}, {"list", {text, "${input.s}"}}};
    Result<std::vector<Reference>> refs = CollectReferences(tmpl);
    if (!refs.ok()) CheckStatus(refs.status());
    Result<json> resolved = ResolveTemplate(tmpl, scope);
    if (!resolved.ok()) {
      CheckStatus(resolved.status());
    } else {
      FUZZ_CHECK(refs.ok(), "a template that resolves has well-formed references");
      (void)resolved->dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
  return 0;
}
