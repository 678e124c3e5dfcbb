#include "model/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace af {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const char* kExample = R"({"name": "summarize", "description": "optional text", "steps": [
  {"id": "fetch", "agent": "echo", "input": {"text": "${input.topic}"}},
  {"id": "shout", "agent": "upper", "input": {"text": "${steps.fetch.output.echo.text}"},
   "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "backoff_multiplier": 2.0, "max_backoff_ms": 5000},
   "timeout_ms": 10000}
], "output": {"result": "${steps.shout.output.text}"}})";

Plan MustParse(const json& doc, const PlanLimits& limits = {}) {
  Result<Plan> p = ParsePlan(doc, limits);
  EXPECT_TRUE(p.ok()) << p.status().ToString() << "\n" << p.status().details().dump(2);
  return p.ok() ? std::move(p).value() : Plan{};
}

// The problems ParsePlan reports for `doc` (which must be invalid).
json Problems(const json& doc, const PlanLimits& limits = {}) {
  Result<Plan> p = ParsePlan(doc, limits);
  EXPECT_FALSE(p.ok()) << doc.dump();
  if (p.ok()) return json::array();
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  const json& problems = p.status().details()["problems"];
  EXPECT_EQ(p.status().message(), "workflow plan is invalid: " + std::to_string(problems.size()) + " problem(s)");
  return problems;
}

// The messages of all problems.
std::vector<std::string> Messages(const json& doc, const PlanLimits& limits = {}) {
  std::vector<std::string> out;
  for (const json& p : Problems(doc, limits)) out.push_back(p["message"].get<std::string>());
  return out;
}

// Exactly one problem; returns it.
json OneProblem(const json& doc) {
  json problems = Problems(doc);
  EXPECT_EQ(problems.size(), 1u) << problems.dump(2);
  return problems.empty() ? json::object() : problems[0];
}

json Step(const std::string& id, json extra = json::object()) {
  json s = {{"id", id}, {"agent", "echo"}};
  for (auto it = extra.begin(); it != extra.end(); ++it) s[it.key()] = it.value();
  return s;
}

json PlanOf(json steps, json extra = json::object()) {
  json doc = {{"name", "p"}, {"steps", std::move(steps)}};
  for (auto it = extra.begin(); it != extra.end(); ++it) doc[it.key()] = it.value();
  return doc;
}

// ---- Valid plans -----------------------------------------------------------

TEST(ParsePlanTest, ExamplePlanParses) {
  Plan plan = MustParse(json::parse(kExample));
  EXPECT_EQ(plan.name, "summarize");
  EXPECT_EQ(plan.description, "optional text");
  EXPECT_FALSE(plan.is_dag);
  ASSERT_EQ(plan.steps.size(), 2u);
  const StepSpec& fetch = plan.steps[0];
  EXPECT_EQ(fetch.id, "fetch");
  EXPECT_EQ(fetch.agent, "echo");
  EXPECT_EQ(fetch.input, json({{"text", "${input.topic}"}}));
  EXPECT_EQ(fetch.retry.ToJson(), RetryPolicy{}.ToJson());
  EXPECT_FALSE(fetch.timeout_ms);
  const StepSpec& shout = plan.steps[1];
  EXPECT_EQ(shout.agent, "upper");
  EXPECT_EQ(shout.retry.max_attempts, 3);
  EXPECT_EQ(shout.retry.initial_backoff_ms, 100);
  EXPECT_EQ(shout.retry.backoff_multiplier, 2.0);
  EXPECT_EQ(shout.retry.max_backoff_ms, 5000);
  EXPECT_EQ(shout.timeout_ms, 10000);
  EXPECT_TRUE(shout.depends_on.empty());
  EXPECT_EQ(plan.output, json({{"result", "${steps.shout.output.text}"}}));
  EXPECT_THAT(plan.upstream[0], IsEmpty());
  EXPECT_THAT(plan.upstream[1], ElementsAre(0));
  EXPECT_THAT(plan.downstream[0], ElementsAre(1));
  EXPECT_THAT(plan.downstream[1], IsEmpty());
  EXPECT_EQ(plan.index_of.at("fetch"), 0);
  EXPECT_EQ(plan.index_of.at("shout"), 1);
  ASSERT_NE(plan.Find("shout"), nullptr);
  EXPECT_EQ(plan.Find("shout")->agent, "upper");
  EXPECT_EQ(plan.Find("nope"), nullptr);
}

TEST(ParsePlanTest, MinimalPlanDefaults) {
  Plan plan = MustParse(PlanOf(json::array({Step("only")})));
  EXPECT_EQ(plan.description, "");
  EXPECT_TRUE(plan.output.is_null());
  EXPECT_EQ(plan.steps[0].input, json::object());
  EXPECT_EQ(plan.steps[0].max_parallel, 0);
  EXPECT_FALSE(plan.steps[0].for_each);
  EXPECT_FALSE(plan.steps[0].when);
  EXPECT_EQ(plan.steps[0].when_cond, nullptr);
}

TEST(ParsePlanTest, SequentialChain) {
  Plan plan = MustParse(PlanOf(json::array({Step("a"), Step("b"), Step("c"), Step("d")})));
  EXPECT_FALSE(plan.is_dag);
  EXPECT_THAT(plan.upstream, ElementsAre(IsEmpty(), ElementsAre(0), ElementsAre(1), ElementsAre(2)));
  EXPECT_THAT(plan.downstream, ElementsAre(ElementsAre(1), ElementsAre(2), ElementsAre(3), IsEmpty()));
}

TEST(ParsePlanTest, SequentialMayReferenceAnyEarlierStep) {
  MustParse(PlanOf(json::array({Step("a"), Step("b"),
                                Step("c", {{"input", {{"x", "${steps.a.output}"}, {"y", "${steps.b.output.z}"}}},
                                           {"when", "${steps.a.output.ok} == true"}})})));
}

TEST(ParsePlanTest, DagUpstreamDownstream) {
  Plan plan =
      MustParse(PlanOf(json::array({Step("a", {{"depends_on", json::array()}}), Step("b", {{"depends_on", {"a"}}}),
                                    Step("c", {{"depends_on", {"a"}}}), Step("d", {{"depends_on", {"c", "b"}}})})));
  EXPECT_TRUE(plan.is_dag);
  EXPECT_THAT(plan.upstream, ElementsAre(IsEmpty(), ElementsAre(0), ElementsAre(0), ElementsAre(2, 1)));
  EXPECT_THAT(plan.downstream, ElementsAre(ElementsAre(1, 2), ElementsAre(3), ElementsAre(3), IsEmpty()));
  EXPECT_THAT(plan.steps[3].depends_on, ElementsAre("c", "b"));
}

TEST(ParsePlanTest, AnyDependsOnMakesADagAndOtherStepsRoots) {
  Plan plan = MustParse(PlanOf(json::array({Step("a"), Step("b"), Step("c", {{"depends_on", {"a"}}})})));
  EXPECT_TRUE(plan.is_dag);
  EXPECT_THAT(plan.upstream, ElementsAre(IsEmpty(), IsEmpty(), ElementsAre(0)));
}

TEST(ParsePlanTest, DagMayReferenceTransitiveUpstream) {
  MustParse(PlanOf(json::array({Step("a"), Step("b", {{"depends_on", {"a"}}}),
                                Step("c", {{"depends_on", {"b"}},
                                           {"input", {{"x", "${steps.a.output.v}"}}},
                                           {"when", "${steps.a.output.v} > 1"}})})));
  // Order in the list does not matter in a DAG.
  MustParse(PlanOf(json::array({Step("late", {{"depends_on", {"early"}}, {"input", {{"x", "${steps.early.output}"}}}}),
                                Step("early", {{"depends_on", json::array()}})})));
}

TEST(ParsePlanTest, ForEachStep) {
  Plan plan = MustParse(PlanOf(json::array(
      {Step("list"), Step("each", {{"for_each", "${steps.list.output.items}"},
                                   {"max_parallel", 4},
                                   {"input", {{"item", "${item}"}, {"x", "${item.x}"}, {"i", "n${index}"}}}})})));
  const StepSpec& each = plan.steps[1];
  EXPECT_EQ(each.for_each, "${steps.list.output.items}");
  ASSERT_TRUE(each.for_each_ref);
  EXPECT_EQ(each.for_each_ref->root, Reference::Root::kStep);
  EXPECT_EQ(each.for_each_ref->step_id, "list");
  EXPECT_EQ(each.max_parallel, 4);
  MustParse(PlanOf(json::array({Step("each", {{"for_each", "${input.items}"}, {"max_parallel", 0}})})));
}

TEST(ParsePlanTest, WhenIsParsed) {
  Plan plan = MustParse(PlanOf(json::array({Step("a", {{"when", "${input.go} && ${run.id} != ''"}})})));
  EXPECT_EQ(plan.steps[0].when, "${input.go} && ${run.id} != ''");
  ASSERT_NE(plan.steps[0].when_cond, nullptr);
  json in = {{"go", true}};
  Scope scope;
  scope.input = &in;
  scope.run_id = "r";
  EXPECT_TRUE(*EvaluateCondition(*plan.steps[0].when_cond, scope));
}

TEST(ParsePlanTest, OutputMayReferenceAnyStep) {
  MustParse(PlanOf(json::array({Step("a"), Step("b", {{"depends_on", {"a"}}}), Step("c")}),
                   {{"output",
                     {{"all", json::array({"${steps.a.output}", "${steps.b.output}", "${steps.c.output}"})},
                      {"in", "${input.x}"},
                      {"id", "${run.id}"}}}}));
  // Any JSON is a valid output template.
  MustParse(PlanOf(json::array({Step("a")}), {{"output", "${steps.a.output.text}"}}));
  MustParse(PlanOf(json::array({Step("a")}), {{"output", 42}}));
}

TEST(ParsePlanTest, LongDagChainHasNoRecursionProblem) {
  json steps = json::array({Step("s0")});
  for (int i = 1; i < 1000; ++i) {
    steps.push_back(Step("s" + std::to_string(i), {{"depends_on", {"s" + std::to_string(i - 1)}},
                                                   {"input", {{"first", "${steps.s0.output}"}}}}));
  }
  Plan plan = MustParse(PlanOf(steps));
  EXPECT_EQ(plan.steps.size(), 1000u);
  EXPECT_THAT(plan.upstream[999], ElementsAre(998));
}

// ---- Top-level problems ----------------------------------------------------

TEST(ParsePlanProblemsTest, NotAnObject) {
  json p = OneProblem(json::array());
  EXPECT_THAT(p["message"].get<std::string>(), HasSubstr("must be a JSON object"));
  EXPECT_TRUE(p["step"].is_null());
}

TEST(ParsePlanProblemsTest, TopLevelFields) {
  EXPECT_EQ(
      OneProblem({{"steps", json::array({Step("a")})}}),
      json({{"step", nullptr}, {"field", "name"}, {"message", "field 'name': is required (a non-empty string)"}}));
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a")}), {{"name", ""}}))["message"],
            "field 'name': must be a non-empty string");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a")}), {{"name", 5}}))["field"], "name");
  // Names are used in URLs and on the command line.
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a")}), {{"name", "my flow"}}))["field"], "name");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a")}), {{"name", "../x"}}))["field"], "name");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a")}), {{"description", 5}}))["message"],
            "field 'description': must be a string");
  json unknown = OneProblem(PlanOf(json::array({Step("a")}), {{"stepz", 1}}));
  EXPECT_EQ(unknown["field"], "stepz");
  EXPECT_THAT(unknown["message"].get<std::string>(), HasSubstr("field 'stepz': unknown field"));
  EXPECT_EQ(OneProblem({{"name", "p"}})["message"], "field 'steps': is required (a non-empty array of steps)");
  EXPECT_EQ(OneProblem(PlanOf(json::object()))["message"], "field 'steps': must be an array of steps");
  EXPECT_EQ(OneProblem(PlanOf(json::array()))["message"], "field 'steps': must contain at least one step");
}

TEST(ParsePlanProblemsTest, TooManySteps) {
  PlanLimits limits;
  limits.max_steps = 3;
  json steps = json::array({Step("a"), Step("b"), Step("c")});
  MustParse(PlanOf(steps), limits);
  steps.push_back(Step("d"));
  std::vector<std::string> m = Messages(PlanOf(steps), limits);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_THAT(m[0], HasSubstr("field 'steps': too many steps (4; the limit is 3). Hint:"));
  EXPECT_THAT(m[0], HasSubstr("--max-plan-steps"));
}

TEST(ParsePlanProblemsTest, PlanOverTheByteLimitIsOneProblemNamingSizeAndLimit) {
  json plan = PlanOf(json::array({Step("a")}));
  plan["description"] = std::string(1000, 'x');
  const size_t size = plan.dump().size();
  PlanLimits limits;
  limits.max_plan_bytes = size;
  MustParse(plan, limits);  // exactly at the limit is fine
  limits.max_plan_bytes = size - 1;
  std::vector<std::string> m = Messages(plan, limits);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_THAT(m[0], HasSubstr("the plan is " + std::to_string(size) + " bytes as compact JSON, over the limit of " +
                              std::to_string(size - 1) + " bytes"));
  // Reported alone, even when the plan has other problems.
  plan["colour"] = "blue";
  EXPECT_EQ(Messages(plan, limits).size(), 1u);
  limits.max_plan_bytes = 0;  // not checked
  EXPECT_EQ(Messages(plan, limits).size(), 1u);  // now only the unknown field
  // The default (512 KiB) admits a plan of 1000 small steps.
  json many = json::array();
  for (int i = 0; i < 1000; ++i) many.push_back(Step("s" + std::to_string(i)));
  MustParse(PlanOf(many));
}

TEST(ParsePlanProblemsTest, ConfiguredStepLimitMustStayUnderTheCap) {
  PlanLimits l;
  EXPECT_TRUE(CheckPlanLimits(l).ok());
  l.max_steps = PlanLimits::kMaxStepsCap;
  EXPECT_TRUE(CheckPlanLimits(l).ok());
  l.max_steps = PlanLimits::kMaxStepsCap + 1;
  EXPECT_THAT(CheckPlanLimits(l).message(), HasSubstr("--max-plan-steps must be from 1 to 10000, got 10001"));
  l.max_steps = 0;
  EXPECT_FALSE(CheckPlanLimits(l).ok());
}

TEST(ParsePlanProblemsTest, ExecutionLimitsAdmitWhatAConfiguredApiAdmitted) {
  json many = json::array();
  for (int i = 0; i < 1500; ++i) many.push_back(Step("s" + std::to_string(i)));
  json plan = PlanOf(many);
  plan["description"] = std::string(600 * 1024, 'x');
  EXPECT_FALSE(ParsePlan(plan).ok());  // over the default limits
  PlanLimits api;
  api.max_steps = 2000;
  api.max_plan_bytes = 1 << 20;
  MustParse(plan, api);
  MustParse(plan, PlanLimits::ForExecution());
}

TEST(ParsePlanProblemsTest, OutputReferences) {
  json p = OneProblem(PlanOf(json::array({Step("a")}), {{"output", {{"r", {{"x", "${steps.nope.output}"}}}}}}));
  EXPECT_EQ(p["field"], "output.r.x");
  EXPECT_EQ(p["message"], "field 'output.r.x': ${steps.nope.output} refers to unknown step 'nope'");
  EXPECT_THAT(OneProblem(PlanOf(json::array({Step("a")}), {{"output", {"${item}"}}}))["message"].get<std::string>(),
              HasSubstr("field 'output[0]': ${item} is only available"));
  EXPECT_THAT(OneProblem(PlanOf(json::array({Step("a")}), {{"output", "${wat}"}}))["message"].get<std::string>(),
              HasSubstr("field 'output': invalid reference '${wat}'"));
}

// ---- Step problems ---------------------------------------------------------

TEST(ParsePlanProblemsTest, StepNotAnObject) {
  json p = OneProblem(PlanOf(json::array({Step("a"), "b"})));
  EXPECT_TRUE(p["step"].is_null());
  EXPECT_EQ(p["message"], "steps[1]: must be an object with \"id\" and \"agent\"");
}

TEST(ParsePlanProblemsTest, StepIds) {
  json missing = OneProblem(PlanOf(json::array({{{"agent", "echo"}}})));
  EXPECT_EQ(missing, json({{"step", nullptr},
                           {"field", "id"},
                           {"message", "steps[0]: field 'id': is required (letters, digits, '_' and '-')"}}));
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a"), {{"id", 7}, {"agent", "e"}}})))["message"],
            "steps[1]: field 'id': must be a string");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("")})))["message"], "steps[0]: field 'id': must not be empty");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a b")})))["message"],
            "steps[0]: field 'id': 'a b' may only contain letters, digits, '_' and '-'");
  EXPECT_THAT(OneProblem(PlanOf(json::array({Step("a.b")})))["message"].get<std::string>(), HasSubstr("may only"));
  PlanLimits limits;
  limits.max_id_length = 4;
  MustParse(PlanOf(json::array({Step("abcd")})), limits);
  EXPECT_THAT(Messages(PlanOf(json::array({Step("abcde")})), limits),
              ElementsAre("steps[0]: field 'id': is longer than 4 characters"));
  json dup = OneProblem(PlanOf(json::array({Step("a"), Step("b"), Step("a")})));
  EXPECT_EQ(dup["step"], "a");
  EXPECT_EQ(dup["message"], "step 'a': field 'id': duplicate step id (steps[0] and steps[2] both use it)");
}

TEST(ParsePlanProblemsTest, Agent) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({{{"id", "a"}}}))),
            json({{"step", "a"},
                  {"field", "agent"},
                  {"message", "step 'a': field 'agent': is required (the name of a registered agent)"}}));
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"agent", ""}})})))["message"],
            "step 'a': field 'agent': must be a non-empty string");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"agent", json::object()}})})))["field"], "agent");
}

TEST(ParsePlanProblemsTest, UnknownStepField) {
  json p = OneProblem(PlanOf(json::array({Step("a", {{"inputs", json::object()}})})));
  EXPECT_EQ(p["field"], "inputs");
  EXPECT_THAT(p["message"].get<std::string>(), HasSubstr("step 'a': field 'inputs': unknown field"));
}

TEST(ParsePlanProblemsTest, InputMustBeAnObject) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"input", "text"}})})))["message"],
            "step 'a': field 'input': must be an object (a JSON template)");
}

TEST(ParsePlanProblemsTest, MalformedInputReference) {
  json p = OneProblem(PlanOf(json::array({Step("a", {{"input", {{"list", {"ok", "${input.x[}"}}}}})})));
  EXPECT_EQ(p["field"], "input.list[1]");
  EXPECT_THAT(p["message"].get<std::string>(), HasSubstr("step 'a': field 'input.list[1]': invalid reference"));
}

TEST(ParsePlanProblemsTest, DependsOn) {
  json shout = Step("shout", {{"depends_on", {"nope"}}});
  json p = OneProblem(PlanOf(json::array({Step("fetch"), shout})));
  EXPECT_EQ(p, json({{"step", "shout"},
                     {"field", "depends_on"},
                     {"message", "step 'shout': field 'depends_on': unknown step 'nope'"}}));
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"depends_on", "b"}}), Step("b")})))["message"],
            "step 'a': field 'depends_on': must be an array of step ids");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"depends_on", {1}}})})))["message"],
            "step 'a': field 'depends_on': entry 0 must be a string (a step id)");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"depends_on", {"a"}}})})))["message"],
            "step 'a': field 'depends_on': a step cannot depend on itself");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a"), Step("b", {{"depends_on", {"a", "a"}}})})))["message"],
            "step 'b': field 'depends_on': lists 'a' more than once");
}

TEST(ParsePlanProblemsTest, TwoStepCycle) {
  json p = OneProblem(PlanOf(json::array({Step("a", {{"depends_on", {"b"}}}), Step("b", {{"depends_on", {"a"}}})})));
  EXPECT_EQ(p["field"], "depends_on");
  EXPECT_EQ(p["step"], "a");
  EXPECT_THAT(p["message"].get<std::string>(),
              HasSubstr("step 'a': field 'depends_on': dependency cycle: a -> b -> a (each step depends on the next)"));
}

TEST(ParsePlanProblemsTest, LongerCycleReportsItsPath) {
  json steps =
      json::array({Step("root"), Step("x", {{"depends_on", {"root", "z"}}}), Step("y", {{"depends_on", {"x"}}}),
                   Step("z", {{"depends_on", {"y"}}}), Step("tail", {{"depends_on", {"z"}}})});
  EXPECT_THAT(Messages(PlanOf(steps)), ElementsAre(HasSubstr("dependency cycle: x -> z -> y -> x")));
}

TEST(ParsePlanProblemsTest, ForEach) {
  auto msg = [](json for_each) {
    return OneProblem(PlanOf(json::array({Step("a", {{"for_each", for_each}})})))["message"].get<std::string>();
  };
  EXPECT_EQ(msg(5),
            "step 'a': field 'for_each': must be exactly one reference to an array, like "
            "\"${steps.fetch.output.items}\"");
  EXPECT_THAT(msg("items"), HasSubstr("must be exactly one reference"));
  EXPECT_THAT(msg("${input.a} ${input.b}"), HasSubstr("must be exactly one reference"));
  EXPECT_THAT(msg("x${input.a}"), HasSubstr("must be exactly one reference"));
  EXPECT_THAT(msg("${input.a[}"), HasSubstr("field 'for_each': invalid reference '${input.a[}'"));
  EXPECT_THAT(msg("${item}"), HasSubstr("field 'for_each': ${item} cannot be iterated"));
  EXPECT_THAT(msg("${index}"), HasSubstr("cannot be iterated"));
  EXPECT_THAT(msg("${run.id}"), HasSubstr("cannot be iterated"));
}

TEST(ParsePlanProblemsTest, MaxParallel) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"for_each", "${input.x}"}, {"max_parallel", -1}})})))["message"],
            "step 'a': field 'max_parallel': must be an integer >= 0 (0 = no limit)");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"for_each", "${input.x}"}, {"max_parallel", 1.5}})})))["field"],
            "max_parallel");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"max_parallel", 2}})})))["message"],
            "step 'a': field 'max_parallel': is only valid together with for_each");
}

TEST(ParsePlanProblemsTest, When) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"when", true}})})))["message"],
            "step 'a': field 'when': must be a string (a condition such as \"${input.enabled} == true\")");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"when", "  "}})})))["message"],
            "step 'a': field 'when': must not be empty");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"when", "${input.x} = 1"}})})))["message"],
            "step 'a': field 'when': invalid condition at position 12: '=' is not an operator. Hint: use '==' to "
            "compare");
}

TEST(ParsePlanProblemsTest, Retry) {
  json p = OneProblem(PlanOf(json::array({Step("a", {{"retry", {{"max_attempts", 0}}}})})));
  EXPECT_EQ(p["field"], "retry.max_attempts");
  EXPECT_EQ(p["message"], "step 'a': field 'retry.max_attempts': must be an integer 1..100 (got 0)");
  EXPECT_THAT(Messages(PlanOf(json::array({Step("a", {{"retry", {{"foo", 1}, {"max_backoff_ms", 1}}}})}))),
              ElementsAre(HasSubstr("step 'a': field 'retry.foo': unknown field"),
                          HasSubstr("step 'a': field 'retry.max_backoff_ms': must be an integer >=")));
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"retry", 3}})})))["field"], "retry");
}

TEST(ParsePlanProblemsTest, Timeout) {
  MustParse(PlanOf(json::array({Step("a", {{"timeout_ms", 1}}), Step("b", {{"timeout_ms", 86400000}})})));
  for (json bad : {json(0), json(86400001), json(-5), json(1.5), json("100")}) {
    EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"timeout_ms", bad}})})))["message"],
              "step 'a': field 'timeout_ms': must be an integer 1..86400000 (milliseconds)")
        << bad;
  }
}

// ---- Reference placement ---------------------------------------------------

TEST(ParsePlanProblemsTest, SequentialForwardReference) {
  json p = OneProblem(PlanOf(json::array({Step("a", {{"input", {{"x", "${steps.b.output}"}}}}), Step("b")})));
  EXPECT_EQ(p["step"], "a");
  EXPECT_EQ(p["field"], "input.x");
  EXPECT_EQ(p["message"],
            "step 'a': field 'input.x': ${steps.b.output} refers to step 'b', which runs after 'a'. Hint: move it "
            "before 'a' in steps");
}

TEST(ParsePlanProblemsTest, DagReferenceToNonUpstream) {
  json steps = json::array({Step("a"), Step("b", {{"depends_on", {"a"}}}),
                            Step("c", {{"depends_on", {"a"}}, {"input", {{"x", "${steps.b.output.v}"}}}})});
  json p = OneProblem(PlanOf(steps));
  EXPECT_EQ(p["step"], "c");
  EXPECT_EQ(p["message"],
            "step 'c': field 'input.x': ${steps.b.output.v} refers to step 'b', which is not upstream of 'c'. Hint: "
            "add 'b' to depends_on (directly or through another step)");
}

TEST(ParsePlanProblemsTest, UnknownAndSelfReferences) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"input", {{"x", "${steps.ghost.output}"}}}})})))["message"],
            "step 'a': field 'input.x': ${steps.ghost.output} refers to unknown step 'ghost'");
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"input", {{"x", "v=${steps.a.output.y}"}}}})})))["message"],
            "step 'a': field 'input.x': ${steps.a.output.y} refers to the step's own output");
}

TEST(ParsePlanProblemsTest, WhenAndForEachMustReferenceUpstream) {
  json steps = json::array(
      {Step("a", {{"when", "${steps.b.output.ok}"}}), Step("b", {{"for_each", "${steps.c.output.items}"}}), Step("c")});
  std::vector<std::string> msgs = Messages(PlanOf(steps));
  EXPECT_THAT(msgs, ElementsAre(HasSubstr("step 'a': field 'when': ${steps.b.output.ok} refers to step 'b', which "
                                          "runs after 'a'"),
                                HasSubstr("step 'b': field 'for_each': ${steps.c.output.items} refers to step 'c', "
                                          "which runs after 'b'")));
}

TEST(ParsePlanProblemsTest, ItemAndIndexOutsideForEach) {
  EXPECT_EQ(OneProblem(PlanOf(json::array({Step("a", {{"input", {{"x", "${item.name}"}}}})})))["message"],
            "step 'a': field 'input.x': ${item.name} is only available in the input of a for_each step");
  EXPECT_THAT(
      OneProblem(PlanOf(json::array({Step("a", {{"input", {{"i", "#${index}"}}}})})))["message"].get<std::string>(),
      HasSubstr("${index} is only available in the input of a for_each step"));
  // In `when` they are wrong even on a for_each step: when runs before fan-out.
  json p = OneProblem(PlanOf(json::array({Step("a", {{"for_each", "${input.list}"}, {"when", "${item} != null"}})})));
  EXPECT_EQ(p["field"], "when");
  EXPECT_THAT(p["message"].get<std::string>(),
              HasSubstr("step 'a': field 'when': ${item} cannot be used in when: the condition is evaluated once per "
                        "step, before for_each fans out"));
  EXPECT_THAT(Messages(PlanOf(json::array({Step("a", {{"when", "${index} > 0"}})}))),
              ElementsAre(HasSubstr("${index} cannot be used in when")));
}

// ---- Collecting everything -------------------------------------------------

TEST(ParsePlanProblemsTest, CollectsEveryProblem) {
  json doc = {{"name", ""},
              {"extra", 1},
              {"steps", json::array({Step("a", {{"timeout_ms", 0}, {"bogus", true}}),
                                     {{"id", "a"}},
                                     Step("c", {{"depends_on", {"nope", "c"}}, {"input", {{"x", "${item}"}}}}),
                                     {{"agent", "x"}}})}};
  json problems = Problems(doc);
  std::vector<std::string> fields;
  for (const json& p : problems)
    fields.push_back(p["step"].is_null() ? "-:" + p["field"].get<std::string>()
                                         : p["step"].get<std::string>() + ":" + p["field"].get<std::string>());
  EXPECT_THAT(fields, ElementsAre("-:extra", "-:name", "a:bogus", "a:timeout_ms", "a:id", "a:agent", "-:id",
                                  "c:depends_on", "c:depends_on", "c:input.x"));
}

TEST(ParsePlanProblemsTest, ListIsCappedButAllAreCounted) {
  json steps = json::array();
  for (int i = 0; i < 150; ++i) steps.push_back({{"id", "s" + std::to_string(i)}});  // each lacks an agent
  Result<Plan> p = ParsePlan(PlanOf(steps));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "workflow plan is invalid: 150 problem(s)");
  EXPECT_EQ(p.status().details()["problems"].size(), 100u);
  EXPECT_EQ(p.status().details()["truncated"], true);
}

TEST(ParsePlanProblemsTest, HostileTemplateDepth) {
  // 1000 levels: ten times the limit. Deeper documents cannot reach
  // ParsePlan (every entry point refuses text nested over kMaxJsonDepth
  // before parsing it), and nlohmann copies recursively: building 5000
  // levels here overflowed the 8 MB stack in the ASan (-O0) build.
  json deep = "${input.x}";
  for (int i = 0; i < 1000; ++i) deep = json::array({std::move(deep)});
  json p = OneProblem(PlanOf(json::array({Step("a", {{"input", {{"x", deep}}}})})));
  EXPECT_THAT(p["message"].get<std::string>(), HasSubstr("nested deeper than 100 levels"));
}

}  // namespace
}  // namespace af
