#include "model/expr.h"

#include <cctype>
#include <exception>
#include <string_view>
#include <utility>

#include "common/json_text.h"

namespace af {
namespace {

// Hostile inputs must not exhaust the stack: templates and conditions are
// walked recursively, so their nesting is capped.
constexpr int kMaxTemplateDepth = 100;
constexpr int kMaxConditionDepth = 64;
constexpr size_t kMaxIndexDigits = 9;  // [n] stays well inside int
constexpr size_t kMaxQuoted = 80;      // how much of a bad string an error quotes

constexpr const char* kRootsHint = "expected input, steps.<id>.output, item, index or run.id";

bool IsIdChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsSpace(s[b])) ++b;
  while (e > b && IsSpace(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::string Quote(const std::string& s) {
  if (s.size() <= kMaxQuoted) return "'" + s + "'";
  return "'" + s.substr(0, kMaxQuoted) + "...'";
}

// "an object", "a string", ... for error messages.
std::string Described(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::binary:
      return "binary data";
    case json::value_t::discarded:
      return "nothing";
    default:
      return "a number";
  }
}

// A template string split into literal text and reference texts (between ${ }).
struct Segment {
  bool is_ref = false;
  std::string text;
};

Status SplitTemplate(const std::string& s, std::vector<Segment>* out) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t open = s.find("${", pos);
    if (open == std::string::npos) {
      out->push_back({false, s.substr(pos)});
      break;
    }
    if (open > pos) out->push_back({false, s.substr(pos, open - pos)});
    size_t close = s.find('}', open + 2);
    if (close == std::string::npos) {
      return Status::InvalidArgument("unterminated '${' in " + Quote(s) + ". Hint: close the reference with '}'");
    }
    out->push_back({true, s.substr(open + 2, close - open - 2)});
    pos = close + 1;
  }
  return Status::Ok();
}

// True if `s` is exactly one `${...}` and nothing else.
bool IsSingleReference(const std::string& s) {
  return s.size() >= 3 && s.compare(0, 2, "${") == 0 && s.find('}') == s.size() - 1;
}

Status CollectFromString(const std::string& s, std::vector<Reference>* out) {
  if (s.find("${") == std::string::npos) return Status::Ok();
  std::vector<Segment> segs;
  AF_RETURN_IF_ERROR(SplitTemplate(s, &segs));
  for (const Segment& seg : segs) {
    if (!seg.is_ref) continue;
    Result<Reference> r = ParseReference(seg.text);
    if (!r.ok()) return r.status();
    out->push_back(std::move(r).value());
  }
  return Status::Ok();
}

Status CollectWalk(const json& v, int depth, std::vector<Reference>* out) {
  if (depth > kMaxTemplateDepth) {
    return Status::InvalidArgument("template is nested deeper than " + std::to_string(kMaxTemplateDepth) + " levels");
  }
  if (v.is_string()) return CollectFromString(v.get_ref<const std::string&>(), out);
  if (v.is_object() || v.is_array()) {
    for (const json& child : v) AF_RETURN_IF_ERROR(CollectWalk(child, depth + 1, out));
  }
  return Status::Ok();
}

Result<json> ResolveString(const std::string& s, const Scope& scope) {
  if (s.find("${") == std::string::npos) return json(s);
  if (IsSingleReference(s)) {
    Result<Reference> r = ParseReference(s.substr(2, s.size() - 3));
    if (!r.ok()) return r.status();
    return Resolve(*r, scope);
  }
  std::vector<Segment> segs;
  AF_RETURN_IF_ERROR(SplitTemplate(s, &segs));
  std::string out;
  for (const Segment& seg : segs) {
    if (!seg.is_ref) {
      out += seg.text;
      continue;
    }
    Result<Reference> r = ParseReference(seg.text);
    if (!r.ok()) return r.status();
    Result<json> v = Resolve(*r, scope);
    if (!v.ok()) return v.status();
    if (v->is_string()) {
      out += v->get_ref<const std::string&>();
    } else {
      out += JsonText(*v);
    }
  }
  return json(std::move(out));
}

Result<json> ResolveWalk(const json& v, const Scope& scope, int depth) {
  if (depth > kMaxTemplateDepth) {
    return Status::InvalidArgument("template is nested deeper than " + std::to_string(kMaxTemplateDepth) + " levels");
  }
  if (v.is_string()) return ResolveString(v.get_ref<const std::string&>(), scope);
  if (v.is_object()) {
    json out = json::object();
    for (auto it = v.begin(); it != v.end(); ++it) {
      Result<json> child = ResolveWalk(it.value(), scope, depth + 1);
      if (!child.ok()) return child.status();
      out[it.key()] = std::move(child).value();
    }
    return out;
  }
  if (v.is_array()) {
    json out = json::array();
    for (const json& elem : v) {
      Result<json> child = ResolveWalk(elem, scope, depth + 1);
      if (!child.ok()) return child.status();
      out.push_back(std::move(child).value());
    }
    return out;
  }
  return v;
}

// ---- Conditions -----------------------------------------------------------

enum class Tok { kLParen, kRParen, kNot, kAnd, kOr, kEq, kNe, kLt, kLe, kGt, kGe, kValue, kRef, kEnd };

struct Token {
  Tok kind = Tok::kEnd;
  size_t pos = 0;  // 0-based offset in the text
  std::string text;
  json value;     // kValue
  Reference ref;  // kRef
};

Status ConditionError(size_t pos, const std::string& why) {
  return Status::InvalidArgument("invalid condition at position " + std::to_string(pos + 1) + ": " + why);
}

// Lexes the token starting at or after `i` (kEnd at the end of the text) and
// moves `i` past it. Lexing lazily lets the parser stop at the first error
// or at the nesting limit without tokenizing a huge hostile input.
Status NextToken(const std::string& s, size_t& i, Token* out) {
  while (i < s.size() && IsSpace(s[i])) ++i;
  if (i >= s.size()) {
    *out = Token();
    out->kind = Tok::kEnd;
    out->pos = s.size();
    return Status::Ok();
  }
  auto add = [&](Tok kind, size_t len) {
    Token t;
    t.kind = kind;
    t.pos = i;
    t.text = s.substr(i, len);
    *out = std::move(t);
    i += len;
  };
  char c = s[i];
  char n = i + 1 < s.size() ? s[i + 1] : '\0';
  if (c == '(') {
    add(Tok::kLParen, 1);
  } else if (c == ')') {
    add(Tok::kRParen, 1);
  } else if (c == '!' && n == '=') {
    add(Tok::kNe, 2);
  } else if (c == '!') {
    add(Tok::kNot, 1);
  } else if (c == '=' && n == '=') {
    add(Tok::kEq, 2);
  } else if (c == '=') {
    return ConditionError(i, "'=' is not an operator. Hint: use '==' to compare");
  } else if (c == '<' && n == '=') {
    add(Tok::kLe, 2);
  } else if (c == '<') {
    add(Tok::kLt, 1);
  } else if (c == '>' && n == '=') {
    add(Tok::kGe, 2);
  } else if (c == '>') {
    add(Tok::kGt, 1);
  } else if (c == '&' && n == '&') {
    add(Tok::kAnd, 2);
  } else if (c == '|' && n == '|') {
    add(Tok::kOr, 2);
  } else if (c == '&' || c == '|') {
    return ConditionError(i, std::string("'") + c + "' is not an operator. Hint: use '" + c + c + "'");
  } else if (c == '$' && n == '{') {
    size_t close = s.find('}', i + 2);
    if (close == std::string::npos) return ConditionError(i, "unterminated '${'. Hint: close the reference with '}'");
    Result<Reference> r = ParseReference(s.substr(i + 2, close - i - 2));
    if (!r.ok()) return ConditionError(i, r.status().message());
    Token t;
    t.kind = Tok::kRef;
    t.pos = i;
    t.text = s.substr(i, close + 1 - i);
    t.ref = std::move(r).value();
    *out = std::move(t);
    i = close + 1;
  } else if (c == '\'' || c == '"') {
    std::string val;
    size_t j = i + 1;
    bool closed = false;
    while (j < s.size()) {
      char d = s[j];
      if (d == c) {
        closed = true;
        break;
      }
      if (d == '\\' && j + 1 < s.size()) {
        char e = s[j + 1];
        val += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        j += 2;
        continue;
      }
      val += d;
      ++j;
    }
    if (!closed) return ConditionError(i, std::string("unterminated string (missing closing ") + c + ")");
    Token t;
    t.kind = Tok::kValue;
    t.pos = i;
    t.text = s.substr(i, j + 1 - i);
    t.value = std::move(val);
    *out = std::move(t);
    i = j + 1;
  } else if (std::isdigit(static_cast<unsigned char>(c)) || (c == '-' && std::isdigit(static_cast<unsigned char>(n))) ||
             (c == '.' && std::isdigit(static_cast<unsigned char>(n)))) {
    size_t j = i + 1;
    while (j < s.size()) {
      char d = s[j];
      bool exp_sign = (d == '+' || d == '-') && (s[j - 1] == 'e' || s[j - 1] == 'E');
      if (!(std::isdigit(static_cast<unsigned char>(d)) || d == '.' || d == 'e' || d == 'E' || exp_sign)) break;
      ++j;
    }
    std::string text = s.substr(i, j - i);
    json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded() || !v.is_number()) return ConditionError(i, "malformed number " + Quote(text));
    Token t;
    t.kind = Tok::kValue;
    t.pos = i;
    t.text = std::move(text);
    t.value = std::move(v);
    *out = std::move(t);
    i = j;
  } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
    size_t j = i;
    while (j < s.size() && IsIdChar(s[j])) ++j;
    std::string word = s.substr(i, j - i);
    Token t;
    t.kind = Tok::kValue;
    t.pos = i;
    t.text = word;
    if (word == "true") {
      t.value = true;
    } else if (word == "false") {
      t.value = false;
    } else if (word == "null") {
      t.value = nullptr;
    } else {
      return ConditionError(
          i, "unknown word " + Quote(word) + ". Hint: quote strings ('text') and write references as ${input.x}");
    }
    *out = std::move(t);
    i = j;
  } else {
    return ConditionError(i, std::string("unexpected character '") + c + "'");
  }
  return Status::Ok();
}

struct Node {
  enum class Kind { kValue, kRef, kNot, kAnd, kOr, kCmp };
  Kind kind = Kind::kValue;
  json value;
  Reference ref;
  Tok op = Tok::kEq;  // for kCmp
  std::string op_text;
  std::vector<std::unique_ptr<Node>> kids;  // kAnd/kOr: n-ary, so long chains stay shallow
};

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  Result<std::unique_ptr<Node>> Parse() {
    AF_RETURN_IF_ERROR(Next());
    Result<std::unique_ptr<Node>> root = ParseOr();
    if (!root.ok()) return root;
    if (Peek().kind != Tok::kEnd) return ConditionError(Peek().pos, "unexpected " + Quote(Peek().text));
    return root;
  }

  std::vector<Reference> TakeRefs() { return std::move(refs_); }

 private:
  const Token& Peek() const { return cur_; }
  Status Next() { return NextToken(text_, offset_, &cur_); }
  static bool IsComparison(Tok t) {
    return t == Tok::kEq || t == Tok::kNe || t == Tok::kLt || t == Tok::kLe || t == Tok::kGt || t == Tok::kGe;
  }

  Result<std::unique_ptr<Node>> ParseNary(Tok op, Node::Kind kind, bool lower) {
    auto sub = [&]() { return lower ? ParseAnd() : ParseComparison(); };
    Result<std::unique_ptr<Node>> first = sub();
    if (!first.ok() || Peek().kind != op) return first;
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->kids.push_back(std::move(first).value());
    while (Peek().kind == op) {
      AF_RETURN_IF_ERROR(Next());
      Result<std::unique_ptr<Node>> more = sub();
      if (!more.ok()) return more;
      node->kids.push_back(std::move(more).value());
    }
    return node;
  }

  Result<std::unique_ptr<Node>> ParseOr() { return ParseNary(Tok::kOr, Node::Kind::kOr, /*lower=*/true); }
  Result<std::unique_ptr<Node>> ParseAnd() { return ParseNary(Tok::kAnd, Node::Kind::kAnd, /*lower=*/false); }

  Result<std::unique_ptr<Node>> ParseComparison() {
    Result<std::unique_ptr<Node>> left = ParseUnary();
    if (!left.ok() || !IsComparison(Peek().kind)) return left;
    auto node = std::make_unique<Node>();
    node->kind = Node::Kind::kCmp;
    node->op = Peek().kind;
    node->op_text = Peek().text;
    AF_RETURN_IF_ERROR(Next());
    Result<std::unique_ptr<Node>> right = ParseUnary();
    if (!right.ok()) return right;
    if (IsComparison(Peek().kind)) {
      return ConditionError(Peek().pos, "comparisons cannot be chained. Hint: use && between them, or parentheses");
    }
    node->kids.push_back(std::move(left).value());
    node->kids.push_back(std::move(right).value());
    return node;
  }

  Result<std::unique_ptr<Node>> ParseUnary() {
    if (Peek().kind != Tok::kNot) return ParsePrimary();
    if (++depth_ > kMaxConditionDepth) return TooDeep();
    AF_RETURN_IF_ERROR(Next());
    Result<std::unique_ptr<Node>> operand = ParseUnary();
    --depth_;
    if (!operand.ok()) return operand;
    auto node = std::make_unique<Node>();
    node->kind = Node::Kind::kNot;
    node->kids.push_back(std::move(operand).value());
    return node;
  }

  Result<std::unique_ptr<Node>> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case Tok::kValue: {
        auto node = std::make_unique<Node>();
        node->kind = Node::Kind::kValue;
        node->value = t.value;
        AF_RETURN_IF_ERROR(Next());
        return node;
      }
      case Tok::kRef: {
        auto node = std::make_unique<Node>();
        node->kind = Node::Kind::kRef;
        node->ref = t.ref;
        refs_.push_back(t.ref);
        AF_RETURN_IF_ERROR(Next());
        return node;
      }
      case Tok::kLParen: {
        if (++depth_ > kMaxConditionDepth) return TooDeep();
        AF_RETURN_IF_ERROR(Next());
        Result<std::unique_ptr<Node>> inner = ParseOr();
        --depth_;
        if (!inner.ok()) return inner;
        if (Peek().kind != Tok::kRParen) {
          return ConditionError(Peek().pos,
                                Peek().kind == Tok::kEnd ? "missing ')'" : "expected ')' before " + Quote(Peek().text));
        }
        AF_RETURN_IF_ERROR(Next());
        return inner;
      }
      case Tok::kEnd:
        return ConditionError(t.pos, "unexpected end of condition (expected a value)");
      default:
        return ConditionError(t.pos, "expected a value, found " + Quote(t.text));
    }
  }

  Status TooDeep() const {
    return ConditionError(Peek().pos, "nested deeper than " + std::to_string(kMaxConditionDepth) + " levels");
  }

  const std::string& text_;
  size_t offset_ = 0;  // where the next token starts
  Token cur_;
  int depth_ = 0;
  std::vector<Reference> refs_;
};

Result<json> Compare(Tok op, const std::string& op_text, const json& a, const json& b) {
  if (op == Tok::kEq) return json(a == b);
  if (op == Tok::kNe) return json(a != b);
  bool both_numbers = a.is_number() && b.is_number();
  bool both_strings = a.is_string() && b.is_string();
  if (!both_numbers && !both_strings) {
    return Status::InvalidArgument("cannot compare " + Described(a) + " with " + Described(b) + " using '" + op_text +
                                   "'. Hint: <, <=, > and >= need two numbers or two strings");
  }
  switch (op) {
    case Tok::kLt:
      return json(a < b);
    case Tok::kLe:
      return json(a <= b);
    case Tok::kGt:
      return json(a > b);
    default:
      return json(a >= b);
  }
}

Result<json> Eval(const Node& n, const Scope& scope) {
  switch (n.kind) {
    case Node::Kind::kValue:
      return n.value;
    case Node::Kind::kRef:
      return Resolve(n.ref, scope);
    case Node::Kind::kNot: {
      Result<json> v = Eval(*n.kids[0], scope);
      if (!v.ok()) return v;
      return json(!Truthy(*v));
    }
    case Node::Kind::kAnd:
    case Node::Kind::kOr: {
      bool is_and = n.kind == Node::Kind::kAnd;
      for (const auto& kid : n.kids) {
        Result<json> v = Eval(*kid, scope);
        if (!v.ok()) return v;
        bool t = Truthy(*v);
        if (is_and && !t) return json(false);
        if (!is_and && t) return json(true);
      }
      return json(is_and);
    }
    case Node::Kind::kCmp: {
      Result<json> a = Eval(*n.kids[0], scope);
      if (!a.ok()) return a;
      Result<json> b = Eval(*n.kids[1], scope);
      if (!b.ok()) return b;
      return Compare(n.op, n.op_text, *a, *b);
    }
  }
  return Status::Internal("unknown condition node");
}

class ParsedCondition : public Condition {
 public:
  ParsedCondition(std::unique_ptr<Node> root, std::vector<Reference> refs)
      : root_(std::move(root)), refs_(std::move(refs)) {}

  Result<json> Evaluate(const Scope& scope) const override {
    try {
      return Eval(*root_, scope);
    } catch (const std::exception& e) {
      return Status::Internal(std::string("evaluating condition: ") + e.what());
    }
  }
  std::vector<Reference> References() const override { return refs_; }

 private:
  std::unique_ptr<Node> root_;
  std::vector<Reference> refs_;
};

}  // namespace

Result<Reference> ParseReference(const std::string& raw) {
  Reference ref;
  ref.text = Trim(raw);
  const std::string& t = ref.text;
  auto fail = [&](const std::string& why) {
    return Status::InvalidArgument("invalid reference '${" + t + "}': " + why);
  };
  size_t pos = 0;
  auto word = [&]() {
    size_t b = pos;
    while (pos < t.size() && IsIdChar(t[pos])) ++pos;
    return t.substr(b, pos - b);
  };
  auto at = [&]() { return " at position " + std::to_string(pos + 1); };

  if (t.empty()) return fail("empty reference; " + std::string(kRootsHint));
  std::string root = word();
  bool allow_path = true;
  if (root == "input") {
    ref.root = Reference::Root::kInput;
  } else if (root == "item") {
    ref.root = Reference::Root::kItem;
  } else if (root == "index") {
    ref.root = Reference::Root::kIndex;
    allow_path = false;
  } else if (root == "run") {
    if (t.compare(pos, 3, ".id") != 0 || (pos + 3 < t.size() && IsIdChar(t[pos + 3]))) {
      return fail("expected 'run.id'");
    }
    pos += 3;
    ref.root = Reference::Root::kRunId;
    allow_path = false;
  } else if (root == "steps") {
    if (pos >= t.size() || t[pos] != '.') return fail("expected '.<step id>.output' after 'steps'");
    ++pos;
    ref.step_id = word();
    if (ref.step_id.empty()) return fail("missing step id after 'steps.' (ids use letters, digits, '_' and '-')");
    if (t.compare(pos, 7, ".output") != 0 || (pos + 7 < t.size() && IsIdChar(t[pos + 7]))) {
      return fail("expected '.output' after 'steps." + ref.step_id + "'");
    }
    pos += 7;
    ref.root = Reference::Root::kStep;
  } else {
    return fail((root.empty() ? std::string("unexpected character") : "unknown root " + Quote(root)) + "; " +
                kRootsHint);
  }
  if (!allow_path && pos < t.size()) {
    return fail("'" + t.substr(0, pos) + "' takes no field or index");
  }
  while (pos < t.size()) {
    Reference::PathElem elem;
    if (t[pos] == '.') {
      ++pos;
      elem.field = word();
      if (elem.field.empty()) return fail("expected a field name after '.'" + at());
    } else if (t[pos] == '[') {
      ++pos;
      if (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) {
        size_t b = pos;
        while (pos < t.size() && std::isdigit(static_cast<unsigned char>(t[pos]))) ++pos;
        if (pos - b > kMaxIndexDigits) return fail("index too large" + at());
        elem.index = std::stoi(t.substr(b, pos - b));
      } else if (pos < t.size() && (t[pos] == '\'' || t[pos] == '"')) {
        char q = t[pos];
        size_t close = t.find(q, pos + 1);
        if (close == std::string::npos) return fail("unterminated quoted field" + at());
        elem.field = t.substr(pos + 1, close - pos - 1);
        pos = close + 1;
      } else {
        return fail("expected a non-negative index or a quoted field after '['" + at());
      }
      if (pos >= t.size() || t[pos] != ']') return fail("expected ']'" + at());
      ++pos;
    } else {
      return fail(std::string("unexpected character '") + t[pos] + "'" + at());
    }
    ref.path.push_back(std::move(elem));
  }
  return ref;
}

Result<std::vector<Reference>> CollectReferences(const json& tmpl) {
  try {
    std::vector<Reference> out;
    AF_RETURN_IF_ERROR(CollectWalk(tmpl, 0, &out));
    return out;
  } catch (const std::exception& e) {
    return Status::Internal(std::string("collecting references: ") + e.what());
  }
}

Result<json> Resolve(const Reference& ref, const Scope& scope) {
  try {
    auto fail = [&](const std::string& why) { return Status::InvalidArgument("${" + ref.text + "}: " + why); };
    const json* cur = nullptr;
    switch (ref.root) {
      case Reference::Root::kInput:
        if (!scope.input) return fail("the run input is not available here");
        cur = scope.input;
        break;
      case Reference::Root::kStep:
        cur = scope.step_output ? scope.step_output(ref.step_id) : nullptr;
        if (!cur) return fail("the output of step '" + ref.step_id + "' is not available (the step has not finished)");
        break;
      case Reference::Root::kItem:
        if (!scope.item) return fail("${item} is only available inside a for_each step");
        cur = scope.item;
        break;
      case Reference::Root::kIndex:
        if (!ref.path.empty()) return fail("${index} takes no field or index");
        if (!scope.index) return fail("${index} is only available inside a for_each step");
        return json(*scope.index);
      case Reference::Root::kRunId:
        if (!ref.path.empty()) return fail("${run.id} takes no field or index");
        return json(scope.run_id);
    }
    for (const Reference::PathElem& elem : ref.path) {
      if (elem.index >= 0) {
        if (!cur->is_array()) {
          return fail("cannot take index " + std::to_string(elem.index) + ": the value is " + Described(*cur) +
                      ", not an array");
        }
        if (static_cast<size_t>(elem.index) >= cur->size()) {
          return fail("index " + std::to_string(elem.index) + " out of range (array has " +
                      std::to_string(cur->size()) + " element" + (cur->size() == 1 ? "" : "s") + ")");
        }
        cur = &(*cur)[static_cast<size_t>(elem.index)];
      } else {
        if (!cur->is_object()) {
          return fail("field '" + elem.field + "' not found: the value is " + Described(*cur) + ", not an object");
        }
        auto it = cur->find(elem.field);
        if (it == cur->end()) return fail("field '" + elem.field + "' not found");
        cur = &*it;
      }
    }
    return *cur;
  } catch (const std::exception& e) {
    return Status::Internal("${" + ref.text + "}: " + e.what());
  }
}

Result<json> ResolveTemplate(const json& tmpl, const Scope& scope) {
  try {
    return ResolveWalk(tmpl, scope, 0);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("resolving template: ") + e.what());
  }
}

Result<std::shared_ptr<const Condition>> ParseCondition(const std::string& text) {
  try {
    Parser parser(text);
    Result<std::unique_ptr<Node>> root = parser.Parse();
    if (!root.ok()) return root.status();
    return std::shared_ptr<const Condition>(
        std::make_shared<ParsedCondition>(std::move(root).value(), parser.TakeRefs()));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("parsing condition: ") + e.what());
  }
}

Result<bool> EvaluateCondition(const Condition& cond, const Scope& scope) {
  Result<json> v = cond.Evaluate(scope);
  if (!v.ok()) return v.status();
  return Truthy(*v);
}

bool Truthy(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return false;
    case json::value_t::boolean:
      return v.get<bool>();
    case json::value_t::number_integer:
      return v.get<int64_t>() != 0;
    case json::value_t::number_unsigned:
      return v.get<uint64_t>() != 0;
    case json::value_t::number_float: {
      double d = v.get<double>();
      return d == d && d != 0.0;  // NaN is false
    }
    case json::value_t::string:
      return !v.get_ref<const std::string&>().empty();  // json::empty() is false for any string
    case json::value_t::binary:
      return !v.get_binary().empty();
    case json::value_t::array:
    case json::value_t::object:
      return !v.empty();
  }
  return false;
}

}  // namespace af
