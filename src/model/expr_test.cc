#include "model/expr.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace af {
namespace {

using ::testing::HasSubstr;

// A scope over fixed values; `outputs` are the finished steps.
struct TestScope {
  json input = {{"topic", "cats"}, {"n", 3},      {"a", {{"b", json::array({10, 20})}}}, {"flag", true},
                {"name", "Ann"},   {"empty", ""}, {"nested", {{"x", {{"y", "deep"}}}}}};
  std::map<std::string, json> outputs = {
      {"fetch", {{"items", json::array({"a", "b"})}, {"echo", {{"text", "hi"}}}, {"count", 2}}}, {"skipped", nullptr}};
  json item = {{"x", 7}, {"tags", json::array({"t0"})}};
  Scope scope;

  TestScope() {
    scope.input = &input;
    scope.run_id = "run-123";
    scope.step_output = [this](const std::string& id) -> const json* {
      auto it = outputs.find(id);
      return it == outputs.end() ? nullptr : &it->second;
    };
  }
  Scope WithItem(int index) {
    Scope s = scope;
    s.item = &item;
    s.index = index;
    return s;
  }
};

Reference Ref(const std::string& text) {
  Result<Reference> r = ParseReference(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : Reference{};
}

std::string ParseError(const std::string& text) {
  Result<Reference> r = ParseReference(text);
  EXPECT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  return r.status().message();
}

// ---- ParseReference ---------------------------------------------------------

TEST(ParseReferenceTest, InputPathWithFieldsAndIndexes) {
  Reference r = Ref("input.a.b[0]");
  EXPECT_EQ(r.root, Reference::Root::kInput);
  ASSERT_EQ(r.path.size(), 3u);
  EXPECT_EQ(r.path[0].field, "a");
  EXPECT_EQ(r.path[1].field, "b");
  EXPECT_EQ(r.path[2].index, 0);
  EXPECT_TRUE(r.path[2].field.empty());
  EXPECT_EQ(r.text, "input.a.b[0]");
}

TEST(ParseReferenceTest, WholeInput) {
  Reference r = Ref("input");
  EXPECT_EQ(r.root, Reference::Root::kInput);
  EXPECT_TRUE(r.path.empty());
}

TEST(ParseReferenceTest, StepOutput) {
  Reference r = Ref("steps.fetch-1_x.output.items[12].name");
  EXPECT_EQ(r.root, Reference::Root::kStep);
  EXPECT_EQ(r.step_id, "fetch-1_x");
  ASSERT_EQ(r.path.size(), 3u);
  EXPECT_EQ(r.path[0].field, "items");
  EXPECT_EQ(r.path[1].index, 12);
  EXPECT_EQ(r.path[2].field, "name");

  Reference whole = Ref("steps.a.output");
  EXPECT_EQ(whole.step_id, "a");
  EXPECT_TRUE(whole.path.empty());
}

TEST(ParseReferenceTest, ItemIndexRunId) {
  EXPECT_EQ(Ref("item").root, Reference::Root::kItem);
  Reference ix = Ref("item.x[1]");
  EXPECT_EQ(ix.root, Reference::Root::kItem);
  ASSERT_EQ(ix.path.size(), 2u);
  EXPECT_EQ(ix.path[0].field, "x");
  EXPECT_EQ(ix.path[1].index, 1);
  EXPECT_EQ(Ref("index").root, Reference::Root::kIndex);
  EXPECT_EQ(Ref("run.id").root, Reference::Root::kRunId);
}

TEST(ParseReferenceTest, TrimsWhitespace) {
  Reference r = Ref("  input.topic \t");
  EXPECT_EQ(r.text, "input.topic");
  EXPECT_EQ(r.path[0].field, "topic");
}

TEST(ParseReferenceTest, QuotedFields) {
  Reference r = Ref("input['content type'][\"a.b\"]");
  ASSERT_EQ(r.path.size(), 2u);
  EXPECT_EQ(r.path[0].field, "content type");
  EXPECT_EQ(r.path[1].field, "a.b");
}

TEST(ParseReferenceTest, Malformed) {
  EXPECT_THAT(ParseError(""), HasSubstr("empty reference"));
  EXPECT_THAT(ParseError("foo.bar"), HasSubstr("unknown root 'foo'"));
  EXPECT_THAT(ParseError("foo.bar"), HasSubstr("'${foo.bar}'"));
  EXPECT_THAT(ParseError("steps"), HasSubstr("expected '.<step id>.output'"));
  EXPECT_THAT(ParseError("steps..output"), HasSubstr("missing step id"));
  EXPECT_THAT(ParseError("steps.a"), HasSubstr("expected '.output' after 'steps.a'"));
  EXPECT_THAT(ParseError("steps.a.out"), HasSubstr("expected '.output'"));
  EXPECT_THAT(ParseError("steps.a.outputs"), HasSubstr("expected '.output'"));
  EXPECT_THAT(ParseError("steps.a b.output"), HasSubstr("expected '.output'"));
  EXPECT_THAT(ParseError("input."), HasSubstr("expected a field name"));
  EXPECT_THAT(ParseError("input.a..b"), HasSubstr("expected a field name"));
  EXPECT_THAT(ParseError("input[x]"), HasSubstr("non-negative index"));
  EXPECT_THAT(ParseError("input[-1]"), HasSubstr("non-negative index"));
  EXPECT_THAT(ParseError("input[1"), HasSubstr("expected ']'"));
  EXPECT_THAT(ParseError("input[12345678901]"), HasSubstr("index too large"));
  EXPECT_THAT(ParseError("input['a]"), HasSubstr("unterminated quoted field"));
  EXPECT_THAT(ParseError("input.a b"), HasSubstr("unexpected character ' '"));
  EXPECT_THAT(ParseError("index.x"), HasSubstr("takes no field"));
  EXPECT_THAT(ParseError("run.id.x"), HasSubstr("takes no field"));
  EXPECT_THAT(ParseError("run"), HasSubstr("expected 'run.id'"));
  EXPECT_THAT(ParseError("run.name"), HasSubstr("expected 'run.id'"));
  EXPECT_THAT(ParseError("inputs"), HasSubstr("unknown root 'inputs'"));
  EXPECT_THAT(ParseError(".input"), HasSubstr("unexpected character"));
}

// ---- CollectReferences ------------------------------------------------------

TEST(CollectReferencesTest, FindsAllInOrderAtAnyDepth) {
  json tmpl = {{"a", "${input.x}"},
               {"b", json::array({"pre ${steps.s1.output.y} mid ${item} post", 5, nullptr})},
               {"c", {{"d", "${run.id}"}}},
               {"e", "no refs $ here {}"}};
  Result<std::vector<Reference>> refs = CollectReferences(tmpl);
  ASSERT_TRUE(refs.ok()) << refs.status().ToString();
  ASSERT_EQ(refs->size(), 4u);
  EXPECT_EQ((*refs)[0].text, "input.x");
  EXPECT_EQ((*refs)[1].step_id, "s1");
  EXPECT_EQ((*refs)[2].root, Reference::Root::kItem);
  EXPECT_EQ((*refs)[3].root, Reference::Root::kRunId);
}

TEST(CollectReferencesTest, ObjectKeysAreNotTemplates) {
  Result<std::vector<Reference>> refs = CollectReferences(json{{"${input.x}", 1}});
  ASSERT_TRUE(refs.ok());
  EXPECT_TRUE(refs->empty());
}

TEST(CollectReferencesTest, FailsOnMalformedNamingIt) {
  Result<std::vector<Reference>> refs = CollectReferences(json{{"a", "${input.ok} and ${bogus.x}"}});
  ASSERT_FALSE(refs.ok());
  EXPECT_THAT(refs.status().message(), HasSubstr("${bogus.x}"));
  Result<std::vector<Reference>> open = CollectReferences(json("text ${input.x"));
  ASSERT_FALSE(open.ok());
  EXPECT_THAT(open.status().message(), HasSubstr("unterminated '${'"));
}

TEST(CollectReferencesTest, DepthLimit) {
  json deep = "${input.x}";
  for (int i = 0; i < 150; ++i) deep = json::array({deep});
  Result<std::vector<Reference>> refs = CollectReferences(deep);
  ASSERT_FALSE(refs.ok());
  EXPECT_THAT(refs.status().message(), HasSubstr("nested deeper than 100"));

  json ok = "${input.x}";
  for (int i = 0; i < 90; ++i) ok = json{{"k", ok}};
  EXPECT_TRUE(CollectReferences(ok).ok());
}

// ---- Resolve ----------------------------------------------------------------

TEST(ResolveTest, InputPaths) {
  TestScope t;
  EXPECT_EQ(*Resolve(Ref("input.topic"), t.scope), "cats");
  EXPECT_EQ(*Resolve(Ref("input.a.b[1]"), t.scope), 20);
  EXPECT_EQ(*Resolve(Ref("input.nested.x.y"), t.scope), "deep");
  EXPECT_EQ(*Resolve(Ref("input"), t.scope), t.input);
}

TEST(ResolveTest, StepOutputs) {
  TestScope t;
  EXPECT_EQ(*Resolve(Ref("steps.fetch.output.items[0]"), t.scope), "a");
  EXPECT_EQ(*Resolve(Ref("steps.fetch.output.echo.text"), t.scope), "hi");
  EXPECT_EQ(*Resolve(Ref("steps.fetch.output"), t.scope), t.outputs["fetch"]);
  // A skipped step's output is null.
  EXPECT_EQ(*Resolve(Ref("steps.skipped.output"), t.scope), nullptr);
}

TEST(ResolveTest, ItemIndexRunId) {
  TestScope t;
  Scope s = t.WithItem(4);
  EXPECT_EQ(*Resolve(Ref("item"), s), t.item);
  EXPECT_EQ(*Resolve(Ref("item.x"), s), 7);
  EXPECT_EQ(*Resolve(Ref("item.tags[0]"), s), "t0");
  Result<json> idx = Resolve(Ref("index"), s);
  ASSERT_TRUE(idx.ok());
  EXPECT_TRUE(idx->is_number_integer());
  EXPECT_EQ(*idx, 4);
  EXPECT_EQ(*Resolve(Ref("run.id"), s), "run-123");
}

std::string ResolveError(const std::string& text, const Scope& scope) {
  Result<json> r = Resolve(Ref(text), scope);
  EXPECT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << text;
  return r.status().message();
}

TEST(ResolveTest, ErrorsNameTheFullReference) {
  TestScope t;
  EXPECT_EQ(ResolveError("steps.fetch.output.items[3]", t.scope),
            "${steps.fetch.output.items[3]}: index 3 out of range (array has 2 elements)");
  EXPECT_EQ(ResolveError("input.missing", t.scope), "${input.missing}: field 'missing' not found");
  EXPECT_EQ(ResolveError("input.nested.x.z", t.scope), "${input.nested.x.z}: field 'z' not found");
  EXPECT_EQ(ResolveError("input.topic.len", t.scope),
            "${input.topic.len}: field 'len' not found: the value is a string, not an object");
  EXPECT_EQ(ResolveError("input.a[0]", t.scope),
            "${input.a[0]}: cannot take index 0: the value is an object, not an array");
  EXPECT_THAT(ResolveError("steps.skipped.output.x", t.scope), HasSubstr("the value is null"));
  EXPECT_THAT(ResolveError("item", t.scope), HasSubstr("only available inside a for_each step"));
  EXPECT_THAT(ResolveError("index", t.scope), HasSubstr("only available inside a for_each step"));
}

TEST(ResolveTest, OneElementArrayMessageIsSingular) {
  TestScope t;
  EXPECT_EQ(ResolveError("item.tags[1]", t.WithItem(0)), "${item.tags[1]}: index 1 out of range (array has 1 element)");
}

TEST(ResolveTest, StepWithoutOutputNamesTheStep) {
  TestScope t;
  std::string msg = ResolveError("steps.later.output.x", t.scope);
  EXPECT_THAT(msg, HasSubstr("${steps.later.output.x}"));
  EXPECT_THAT(msg, HasSubstr("step 'later'"));
  // A scope without a lookup function behaves the same.
  Scope bare;
  EXPECT_THAT(ResolveError("steps.a.output", bare), HasSubstr("step 'a'"));
  EXPECT_THAT(ResolveError("input.x", bare), HasSubstr("${input.x}"));
}

// ---- ResolveTemplate --------------------------------------------------------

TEST(ResolveTemplateTest, SingleReferenceKeepsType) {
  TestScope t;
  EXPECT_EQ(*ResolveTemplate(json("${input.n}"), t.scope), 3);
  EXPECT_TRUE(ResolveTemplate(json("${input.n}"), t.scope)->is_number_integer());
  EXPECT_EQ(*ResolveTemplate(json("${input.flag}"), t.scope), true);
  EXPECT_EQ(*ResolveTemplate(json("${input.a}"), t.scope), t.input["a"]);
  EXPECT_EQ(*ResolveTemplate(json("${steps.fetch.output.items}"), t.scope), json::array({"a", "b"}));
  EXPECT_EQ(*ResolveTemplate(json("${steps.skipped.output}"), t.scope), nullptr);
  EXPECT_EQ(*ResolveTemplate(json("${ input.n }"), t.scope), 3);  // trimmed
}

TEST(ResolveTemplateTest, InterpolatesStringsRawOthersCompact) {
  TestScope t;
  EXPECT_EQ(*ResolveTemplate(json("about ${input.topic}!"), t.scope), "about cats!");
  EXPECT_EQ(*ResolveTemplate(json("n=${input.n} f=${input.flag}"), t.scope), "n=3 f=true");
  EXPECT_EQ(*ResolveTemplate(json("a=${input.a}"), t.scope), "a={\"b\":[10,20]}");
  EXPECT_EQ(*ResolveTemplate(json("s=${steps.skipped.output}"), t.scope), "s=null");
  EXPECT_EQ(*ResolveTemplate(json("${input.topic}${input.name}"), t.scope), "catsAnn");
  EXPECT_EQ(*ResolveTemplate(json(" ${input.n}"), t.scope), " 3");  // not exactly one reference: a string
  EXPECT_EQ(*ResolveTemplate(json("${input.empty}x"), t.scope), "x");
}

TEST(ResolveTemplateTest, LiteralTextUnchanged) {
  TestScope t;
  EXPECT_EQ(*ResolveTemplate(json("plain"), t.scope), "plain");
  EXPECT_EQ(*ResolveTemplate(json("costs $5 {ok}"), t.scope), "costs $5 {ok}");
  EXPECT_EQ(*ResolveTemplate(json("$$ ${input.n} $"), t.scope), "$$ 3 $");
  EXPECT_EQ(*ResolveTemplate(json(""), t.scope), "");
  EXPECT_EQ(*ResolveTemplate(json(42), t.scope), 42);
  EXPECT_EQ(*ResolveTemplate(json(nullptr), t.scope), nullptr);
}

TEST(ResolveTemplateTest, WalksObjectsAndArrays) {
  TestScope t;
  json tmpl = {{"text", "${input.topic}"},
               {"list", json::array({"${input.n}", "x${index}", 1.5, {{"deep", "${item.x}"}}})},
               {"keep", false}};
  Result<json> out = ResolveTemplate(tmpl, t.WithItem(2));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  json want = {{"text", "cats"}, {"list", json::array({3, "x2", 1.5, {{"deep", 7}}})}, {"keep", false}};
  EXPECT_EQ(*out, want);
}

TEST(ResolveTemplateTest, ErrorsPropagate) {
  TestScope t;
  Result<json> missing = ResolveTemplate(json{{"a", json::array({"x ${input.nope} y"})}}, t.scope);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "${input.nope}: field 'nope' not found");
  Result<json> bad = ResolveTemplate(json("${nope}"), t.scope);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown root 'nope'"));
  Result<json> open = ResolveTemplate(json("a ${input.x"), t.scope);
  ASSERT_FALSE(open.ok());
  EXPECT_THAT(open.status().message(), HasSubstr("unterminated"));
}

TEST(ResolveTemplateTest, DepthLimitDoesNotOverflow) {
  TestScope t;
  json deep = "x";
  for (int i = 0; i < 10000; ++i) deep = json::array({std::move(deep)});
  Result<json> r = ResolveTemplate(deep, t.scope);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper than 100"));
}

TEST(ResolveTemplateTest, InvalidUtf8DoesNotThrow) {
  TestScope t;
  json in = {{"bad", std::string("\xff\xfe")}};
  t.scope.input = &in;
  Result<json> r = ResolveTemplate(json("v=${input}"), t.scope);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->get<std::string>(), HasSubstr("v={\"bad\":"));
}

// ---- Conditions -------------------------------------------------------------

// Evaluates `text` (which must parse) to its raw value.
json Eval(const std::string& text, const Scope& scope) {
  Result<std::shared_ptr<const Condition>> c = ParseCondition(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status().ToString();
  if (!c.ok()) return "PARSE ERROR";
  Result<json> v = (*c)->Evaluate(scope);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status().ToString();
  return v.ok() ? *v : json("EVAL ERROR");
}

bool When(const std::string& text, const Scope& scope) {
  Result<std::shared_ptr<const Condition>> c = ParseCondition(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status().ToString();
  if (!c.ok()) return false;
  Result<bool> v = EvaluateCondition(**c, scope);
  EXPECT_TRUE(v.ok()) << text << ": " << v.status().ToString();
  return v.ok() && *v;
}

std::string ConditionParseError(const std::string& text) {
  Result<std::shared_ptr<const Condition>> c = ParseCondition(text);
  EXPECT_FALSE(c.ok()) << text;
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  return c.status().message();
}

std::string ConditionEvalError(const std::string& text, const Scope& scope) {
  Result<std::shared_ptr<const Condition>> c = ParseCondition(text);
  EXPECT_TRUE(c.ok()) << text << ": " << c.status().ToString();
  if (!c.ok()) return "";
  Result<bool> v = EvaluateCondition(**c, scope);
  EXPECT_FALSE(v.ok()) << text;
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  return v.status().message();
}

TEST(TruthyTest, Table) {
  EXPECT_FALSE(Truthy(json(nullptr)));
  EXPECT_FALSE(Truthy(json(false)));
  EXPECT_TRUE(Truthy(json(true)));
  EXPECT_FALSE(Truthy(json(0)));
  EXPECT_FALSE(Truthy(json(0u)));
  EXPECT_FALSE(Truthy(json(0.0)));
  EXPECT_FALSE(Truthy(json(-0.0)));
  EXPECT_TRUE(Truthy(json(1)));
  EXPECT_TRUE(Truthy(json(-1)));
  EXPECT_TRUE(Truthy(json(7u)));
  EXPECT_TRUE(Truthy(json(0.5)));
  EXPECT_FALSE(Truthy(json("")));
  EXPECT_TRUE(Truthy(json("false")));  // a non-empty string
  EXPECT_TRUE(Truthy(json("0")));
  EXPECT_FALSE(Truthy(json::array()));
  EXPECT_TRUE(Truthy(json::array({0})));
  EXPECT_FALSE(Truthy(json::object()));
  EXPECT_TRUE(Truthy(json{{"a", nullptr}}));
}

TEST(ConditionTest, Literals) {
  TestScope t;
  EXPECT_EQ(Eval("true", t.scope), true);
  EXPECT_EQ(Eval("false", t.scope), false);
  EXPECT_EQ(Eval("null", t.scope), nullptr);
  EXPECT_EQ(Eval("42", t.scope), 42);
  EXPECT_EQ(Eval("-3", t.scope), -3);
  EXPECT_EQ(Eval("2.5", t.scope), 2.5);
  EXPECT_EQ(Eval("1e3", t.scope), 1000.0);
  EXPECT_EQ(Eval("'single'", t.scope), "single");
  EXPECT_EQ(Eval("\"double\"", t.scope), "double");
  EXPECT_EQ(Eval("'it\\'s'", t.scope), "it's");
  EXPECT_EQ(Eval("\"a \\\"q\\\" \\\\ \\n\"", t.scope), "a \"q\" \\ \n");
  EXPECT_EQ(Eval("'has \"double\" inside'", t.scope), "has \"double\" inside");
  EXPECT_EQ(Eval("${input.n}", t.scope), 3);
  EXPECT_EQ(Eval("  ( ${input.topic} )  ", t.scope), "cats");
}

TEST(ConditionTest, Equality) {
  TestScope t;
  EXPECT_TRUE(When("${input.topic} == 'cats'", t.scope));
  EXPECT_FALSE(When("${input.topic} == 'dogs'", t.scope));
  EXPECT_TRUE(When("${input.topic} != 'dogs'", t.scope));
  EXPECT_FALSE(When("${input.topic} != \"cats\"", t.scope));
  EXPECT_TRUE(When("${input.n} == 3", t.scope));
  EXPECT_TRUE(When("${input.n} == 3.0", t.scope));   // JSON number equality
  EXPECT_FALSE(When("${input.n} == '3'", t.scope));  // no type coercion
  EXPECT_TRUE(When("${input.flag} == true", t.scope));
  EXPECT_TRUE(When("${steps.skipped.output} == null", t.scope));
  EXPECT_TRUE(When("${input.a} == ${input.a}", t.scope));  // structural
  EXPECT_TRUE(When("${input.a.b} != ${steps.fetch.output.items}", t.scope));
  EXPECT_TRUE(When("null == null", t.scope));
  EXPECT_FALSE(When("0 == false", t.scope));
  EXPECT_FALSE(When("'' == null", t.scope));
}

TEST(ConditionTest, Ordering) {
  TestScope t;
  EXPECT_TRUE(When("${input.n} < 4", t.scope));
  EXPECT_FALSE(When("${input.n} < 3", t.scope));
  EXPECT_TRUE(When("${input.n} <= 3", t.scope));
  EXPECT_FALSE(When("${input.n} <= 2.9", t.scope));
  EXPECT_TRUE(When("${input.n} > 2.5", t.scope));
  EXPECT_FALSE(When("${input.n} > 3", t.scope));
  EXPECT_TRUE(When("${input.n} >= 3", t.scope));
  EXPECT_FALSE(When("${input.n} >= 4", t.scope));
  EXPECT_TRUE(When("-1 < 0", t.scope));
  EXPECT_TRUE(When("'apple' < 'banana'", t.scope));
  EXPECT_TRUE(When("'b' > 'a'", t.scope));
  EXPECT_TRUE(When("'abc' >= 'abc'", t.scope));
  EXPECT_FALSE(When("'Z' > 'a'", t.scope));  // byte order
}

TEST(ConditionTest, OrderingNeedsTwoNumbersOrTwoStrings) {
  TestScope t;
  EXPECT_EQ(ConditionEvalError("${input.topic} < 3", t.scope),
            "cannot compare a string with a number using '<'. Hint: <, <=, > and >= need two numbers or two strings");
  EXPECT_THAT(ConditionEvalError("null >= 1", t.scope), HasSubstr("cannot compare null with a number using '>='"));
  EXPECT_THAT(ConditionEvalError("true > false", t.scope), HasSubstr("a boolean with a boolean"));
  EXPECT_THAT(ConditionEvalError("${input.a} <= ${input.a}", t.scope), HasSubstr("an object with an object"));
}

TEST(ConditionTest, LogicalOperatorsYieldBooleans) {
  TestScope t;
  EXPECT_EQ(Eval("${input.n} && ${input.topic}", t.scope), true);
  EXPECT_EQ(Eval("${input.n} && ${input.empty}", t.scope), false);
  EXPECT_EQ(Eval("0 || ''", t.scope), false);
  EXPECT_EQ(Eval("0 || 'x'", t.scope), true);
  EXPECT_EQ(Eval("!${input.empty}", t.scope), true);
  EXPECT_EQ(Eval("!${input.n}", t.scope), false);
  EXPECT_EQ(Eval("!!${input.n}", t.scope), true);
  EXPECT_EQ(Eval("true && true && false", t.scope), false);
  EXPECT_EQ(Eval("false || false || true", t.scope), true);
}

TEST(ConditionTest, TruthTables) {
  TestScope t;
  for (bool a : {false, true}) {
    for (bool b : {false, true}) {
      std::string sa = a ? "true" : "false", sb = b ? "true" : "false";
      EXPECT_EQ(When(sa + " && " + sb, t.scope), a && b);
      EXPECT_EQ(When(sa + " || " + sb, t.scope), a || b);
      EXPECT_EQ(When(sa + " == " + sb, t.scope), a == b);
      EXPECT_EQ(When(sa + " != " + sb, t.scope), a != b);
    }
  }
}

TEST(ConditionTest, Precedence) {
  TestScope t;
  // && binds tighter than ||.
  EXPECT_TRUE(When("true || false && false", t.scope));
  EXPECT_FALSE(When("(true || false) && false", t.scope));
  EXPECT_TRUE(When("false && false || true", t.scope));
  // Comparisons bind tighter than && and ||.
  EXPECT_TRUE(When("${input.n} == 3 && ${input.topic} == 'cats'", t.scope));
  EXPECT_TRUE(When("${input.n} == 4 || ${input.topic} == 'cats'", t.scope));
  // ! binds tighter than comparisons: (!3) == false.
  EXPECT_TRUE(When("!${input.n} == false", t.scope));
  EXPECT_FALSE(When("!(${input.n} == 3)", t.scope));
  EXPECT_TRUE(When("!false && true", t.scope));
  EXPECT_FALSE(When("!(false || true)", t.scope));
  EXPECT_TRUE(When("((((true))))", t.scope));
}

TEST(ConditionTest, ShortCircuit) {
  TestScope t;
  // The right side would fail (missing field / bad comparison) if evaluated.
  EXPECT_FALSE(When("false && ${input.nope} == 1", t.scope));
  EXPECT_TRUE(When("true || ${input.nope} == 1", t.scope));
  EXPECT_FALSE(When("${input.empty} && ${input.topic} < 1", t.scope));
  EXPECT_TRUE(When("${input.flag} || ${steps.later.output.x}", t.scope));
  // ...and does fail when it is evaluated.
  EXPECT_EQ(ConditionEvalError("true && ${input.nope} == 1", t.scope), "${input.nope}: field 'nope' not found");
  EXPECT_THAT(ConditionEvalError("false || ${steps.later.output}", t.scope), HasSubstr("step 'later'"));
}

TEST(ConditionTest, ReferencesAreReported) {
  Result<std::shared_ptr<const Condition>> c =
      ParseCondition("${input.a} == 1 && (${steps.x.output.y} || !${item.z}) && ${index} > 0");
  ASSERT_TRUE(c.ok());
  std::vector<Reference> refs = (*c)->References();
  ASSERT_EQ(refs.size(), 4u);
  EXPECT_EQ(refs[0].root, Reference::Root::kInput);
  EXPECT_EQ(refs[1].step_id, "x");
  EXPECT_EQ(refs[2].root, Reference::Root::kItem);
  EXPECT_EQ(refs[3].root, Reference::Root::kIndex);
}

TEST(ConditionTest, ParseErrorsGivePosition) {
  EXPECT_EQ(ConditionParseError(""), "invalid condition at position 1: unexpected end of condition (expected a value)");
  EXPECT_EQ(ConditionParseError("1 = 1"),
            "invalid condition at position 3: '=' is not an operator. Hint: use '==' to compare");
  EXPECT_THAT(ConditionParseError("true & false"), HasSubstr("use '&&'"));
  EXPECT_THAT(ConditionParseError("true | false"), HasSubstr("use '||'"));
  EXPECT_THAT(ConditionParseError("(true"), HasSubstr("missing ')'"));
  EXPECT_THAT(ConditionParseError("true)"), HasSubstr("position 5: unexpected ')'"));
  EXPECT_THAT(ConditionParseError("true &&"), HasSubstr("unexpected end"));
  EXPECT_THAT(ConditionParseError("== 1"), HasSubstr("position 1: expected a value"));
  EXPECT_THAT(ConditionParseError("'open"), HasSubstr("unterminated string"));
  EXPECT_THAT(ConditionParseError("yes == 1"), HasSubstr("unknown word 'yes'"));
  EXPECT_THAT(ConditionParseError("1 == 1 == 1"), HasSubstr("cannot be chained"));
  EXPECT_THAT(ConditionParseError("${input.x"), HasSubstr("unterminated '${'"));
  EXPECT_THAT(ConditionParseError("${input.x} == ${wat}"), HasSubstr("position 15: invalid reference '${wat}'"));
  EXPECT_THAT(ConditionParseError("1.2.3 > 0"), HasSubstr("malformed number"));
  EXPECT_THAT(ConditionParseError("1 # 2"), HasSubstr("unexpected character '#'"));
  EXPECT_THAT(ConditionParseError("1 2"), HasSubstr("unexpected '2'"));
  EXPECT_THAT(ConditionParseError("()"), HasSubstr("expected a value"));
}

TEST(ConditionTest, NestingLimit) {
  std::string ok = std::string(64, '(') + "true" + std::string(64, ')');
  EXPECT_TRUE(ParseCondition(ok).ok());
  std::string deep = std::string(65, '(') + "true" + std::string(65, ')');
  EXPECT_THAT(ConditionParseError(deep), HasSubstr("nested deeper than 64"));
  EXPECT_THAT(ConditionParseError(std::string(100000, '(')), HasSubstr("nested deeper than 64"));
  EXPECT_THAT(ConditionParseError(std::string(100000, '!') + "true"), HasSubstr("nested deeper than 64"));
}

TEST(ConditionTest, LongFlatChainsAreFine) {
  TestScope t;
  std::string chain = "true";
  for (int i = 0; i < 20000; ++i) chain += " && true";
  EXPECT_TRUE(When(chain, t.scope));
  std::string ors = "false";
  for (int i = 0; i < 20000; ++i) ors += " || false";
  EXPECT_FALSE(When(ors, t.scope));
}

}  // namespace
}  // namespace af
