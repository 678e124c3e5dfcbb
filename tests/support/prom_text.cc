#include "support/prom_text.h"

#include <cmath>
#include <cstdlib>
#include <set>

namespace af::test {
namespace {

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool ValidName(std::string_view s, bool colon) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (!(IsAlpha(c) || c == '_' || (colon && c == ':') || (i > 0 && IsDigit(c)))) return false;
  }
  return true;
}

// Go's ParseFloat as Prometheus uses it, restricted to what exporters write:
// decimal or exponent notation, or +Inf/-Inf/Inf/NaN.
std::optional<double> ParseValue(std::string_view s) {
  if (s == "+Inf" || s == "Inf") return INFINITY;
  if (s == "-Inf") return -INFINITY;
  if (s == "NaN") return NAN;
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (!(IsDigit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return std::nullopt;
  }
  std::string tmp(s);
  char* end = nullptr;
  double v = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size()) return std::nullopt;
  return v;
}

class Parser {
 public:
  Result<PromText> Run(std::string_view text) {
    if (!text.empty() && text.back() != '\n') return Fail(0, "the text does not end with a newline");
    size_t lineno = 0;
    while (!text.empty()) {
      size_t nl = text.find('\n');
      std::string_view line = text.substr(0, nl);
      text.remove_prefix(nl + 1);
      ++lineno;
      std::string err = Line(line);
      if (!err.empty()) return Fail(lineno, err + ": " + std::string(line));
    }
    std::string err = CheckHistograms();
    if (!err.empty()) return Fail(0, err);
    return out_;
  }

 private:
  Status Fail(size_t lineno, const std::string& msg) {
    return Status::InvalidArgument(lineno > 0 ? "line " + std::to_string(lineno) + ": " + msg : msg);
  }

  std::string Line(std::string_view line) {
    if (line.empty()) return "";
    if (line.front() == '#') return Comment(line);
    return Sample(line);
  }

  // Enters family `name`; its lines must be contiguous.
  std::string Enter(const std::string& name) {
    if (name == current_) return "";
    if (done_.count(name)) return "lines of family " + name + " are not contiguous";
    if (!current_.empty()) done_.insert(current_);
    current_ = name;
    return "";
  }

  std::string Comment(std::string_view line) {
    // "# HELP name text" / "# TYPE name type"; other comments are ignored.
    if (line.size() < 2 || line[1] != ' ') return "";
    std::string_view rest = line.substr(2);
    bool help = rest.starts_with("HELP ");
    bool type = rest.starts_with("TYPE ");
    if (!help && !type) return "";
    rest.remove_prefix(5);
    size_t sp = rest.find(' ');
    std::string name(rest.substr(0, sp));
    std::string_view arg = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    if (!ValidName(name, true)) return "invalid metric name '" + name + "'";
    if (std::string e = Enter(name); !e.empty()) return e;
    PromFamily& f = out_.families[name];
    f.name = name;
    if (help) {
      if (seen_help_.count(name)) return "second HELP for " + name;
      seen_help_.insert(name);
      std::string doc;
      for (size_t i = 0; i < arg.size(); ++i) {
        if (arg[i] != '\\') {
          doc += arg[i];
          continue;
        }
        if (i + 1 >= arg.size()) return "HELP ends in a lone backslash";
        char n = arg[++i];
        if (n == '\\') {
          doc += '\\';
        } else if (n == 'n') {
          doc += '\n';
        } else {
          return std::string("invalid escape \\") + n + " in HELP";
        }
      }
      f.help = doc;
      return "";
    }
    if (!f.type.empty()) return "second TYPE for " + name;
    if (!f.samples.empty()) return "TYPE for " + name + " after its samples";
    std::string t(arg);
    if (t != "counter" && t != "gauge" && t != "histogram" && t != "summary" && t != "untyped") {
      return "unknown type '" + t + "'";
    }
    f.type = t;
    return "";
  }

  std::string Sample(std::string_view line) {
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    PromSample s;
    s.name = std::string(line.substr(0, i));
    if (!ValidName(s.name, true)) return "invalid metric name '" + s.name + "'";
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i >= line.size()) return "unterminated label set";
        if (line[i] == '}') {
          ++i;
          break;
        }
        size_t start = i;
        while (i < line.size() && line[i] != '=') ++i;
        std::string lname(line.substr(start, i - start));
        if (!ValidName(lname, false)) return "invalid label name '" + lname + "'";
        if (i + 1 >= line.size() || line[i + 1] != '"') return "label " + lname + " has no quoted value";
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c != '\\') {
            value += c;
            continue;
          }
          if (i >= line.size()) return "label value ends in a lone backslash";
          char n = line[i++];
          if (n == '\\') {
            value += '\\';
          } else if (n == '"') {
            value += '"';
          } else if (n == 'n') {
            value += '\n';
          } else {
            return std::string("invalid escape \\") + n + " in a label value";
          }
        }
        if (!closed) return "unterminated label value";
        if (!s.labels.emplace(lname, value).second) return "label " + lname + " appears twice";
        if (i < line.size() && line[i] == ',') {
          ++i;
        } else if (i < line.size() && line[i] != '}') {
          return "expected ',' or '}' after a label";
        }
      }
    }
    if (i >= line.size() || line[i] != ' ') return "no value";
    while (i < line.size() && line[i] == ' ') ++i;
    std::string_view rest = line.substr(i);
    size_t sp = rest.find(' ');
    auto value = ParseValue(rest.substr(0, sp));
    if (!value) return "invalid value '" + std::string(rest.substr(0, sp)) + "'";
    if (sp != std::string_view::npos) {
      std::string_view ts = rest.substr(sp + 1);
      if (ts.empty()) return "trailing space";
      size_t k = ts.front() == '-' ? 1 : 0;
      if (k == ts.size()) return "invalid timestamp";
      for (; k < ts.size(); ++k) {
        if (!IsDigit(ts[k])) return "invalid timestamp '" + std::string(ts) + "'";
      }
    }
    s.value = *value;

    std::string family = FamilyName(s.name);
    if (family.empty()) return "sample " + s.name + " has no # TYPE before it";
    if (std::string e = Enter(family); !e.empty()) return e;
    PromFamily& f = out_.families[family];
    if (f.type == "counter" && !(s.value >= 0)) return "counter " + s.name + " is negative or NaN";
    if (f.type == "histogram") {
      bool bucket = s.name == family + "_bucket";
      if (bucket != (s.labels.count("le") == 1)) return "histogram " + s.name + ": `le` only on _bucket, always there";
      if (s.name == family) return "histogram " + family + " has a sample without suffix";
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) key += "\x01" + k + "\x02" + v;
    if (!series_.insert(key).second) return "series appears twice";
    f.samples.push_back(std::move(s));
    return "";
  }

  std::string FamilyName(const std::string& sample) const {
    auto declared = [&](const std::string& n) {
      auto it = out_.families.find(n);
      return it != out_.families.end() && !it->second.type.empty() ? &it->second : nullptr;
    };
    if (declared(sample)) return sample;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string sfx = suffix;
      if (sample.size() > sfx.size() && sample.ends_with(sfx)) {
        std::string base = sample.substr(0, sample.size() - sfx.size());
        const PromFamily* f = declared(base);
        if (f != nullptr && (f->type == "histogram" || (f->type == "summary" && sfx != "_bucket"))) return base;
      }
    }
    return "";
  }

  std::string CheckHistograms() const {
    for (const auto& [name, f] : out_.families) {
      if (f.type != "histogram") continue;
      struct Series {
        std::vector<std::pair<double, double>> buckets;  // (le, count) in order
        std::optional<double> sum, count;
      };
      std::map<PromLabels, Series> by;
      for (const PromSample& s : f.samples) {
        PromLabels base = s.labels;
        base.erase("le");
        Series& ser = by[base];
        if (s.name == name + "_bucket") {
          auto le = ParseValue(s.labels.at("le"));
          if (!le || std::isnan(*le)) return name + ": invalid le '" + s.labels.at("le") + "'";
          ser.buckets.emplace_back(*le, s.value);
        } else if (s.name == name + "_sum") {
          ser.sum = s.value;
        } else if (s.name == name + "_count") {
          ser.count = s.value;
        }
      }
      for (const auto& [labels, ser] : by) {
        std::string where = name;
        for (const auto& [k, v] : labels) where += " " + k + "=" + v;
        if (ser.buckets.empty()) return where + ": no buckets";
        for (size_t i = 1; i < ser.buckets.size(); ++i) {
          if (!(ser.buckets[i].first > ser.buckets[i - 1].first)) return where + ": le not strictly increasing";
          if (ser.buckets[i].second < ser.buckets[i - 1].second) return where + ": bucket counts decrease";
        }
        if (!std::isinf(ser.buckets.back().first) || ser.buckets.back().first < 0) {
          return where + ": the last bucket is not le=\"+Inf\"";
        }
        if (!ser.count) return where + ": no _count";
        if (!ser.sum) return where + ": no _sum";
        if (*ser.count != ser.buckets.back().second) return where + ": _count differs from the +Inf bucket";
      }
    }
    return "";
  }

  PromText out_;
  std::string current_;
  std::set<std::string> done_, seen_help_, series_;
};

bool Includes(const PromLabels& labels, const PromLabels& match) {
  for (const auto& [k, v] : match) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

const PromFamily* PromText::FamilyOf(const std::string& sample_name) const {
  for (const auto& [name, f] : families) {
    if (sample_name == name) return &f;
    if (f.type == "histogram" || f.type == "summary") {
      for (const char* sfx : {"_bucket", "_sum", "_count"}) {
        if (sample_name == name + sfx) return &f;
      }
    }
  }
  return nullptr;
}

std::optional<double> PromText::Value(const std::string& name, const PromLabels& labels) const {
  const PromFamily* f = FamilyOf(name);
  if (f == nullptr) return std::nullopt;
  for (const PromSample& s : f->samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

double PromText::Sum(const std::string& name, const PromLabels& match) const {
  const PromFamily* f = FamilyOf(name);
  if (f == nullptr) return 0;
  double total = 0;
  for (const PromSample& s : f->samples) {
    if (s.name == name && Includes(s.labels, match)) total += s.value;
  }
  return total;
}

Result<PromText> ParsePromText(std::string_view text) { return Parser().Run(text); }

}  // namespace af::test
