#include "api/request_util.h"

#include <set>

#include "common/ids.h"
#include "common/json_limits.h"

namespace af::api {

using http::Request;

// "application/json" or any "<type>/<subtype>+json", parameters ignored,
// case-insensitive (RFC 9110 8.3.1).
bool IsJsonMediaType(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  size_t start = t.find_first_not_of(" \t");
  t = start == std::string::npos ? "" : t.substr(start);
  for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t == "application/json") return true;
  return t.size() > 5 && t.compare(t.size() - 5, 5, "+json") == 0 && t.find('/') != std::string::npos;
}

// Parses a JSON request body. Empty bodies are `empty_default` (null: a
// body is required).
Result<json> ParseBody(const Request& req, const json& empty_default) {
  std::string ct = req.Header("Content-Type");
  if (!ct.empty() && !IsJsonMediaType(ct)) {
    return Status(Code::kUnsupportedMediaType, "Content-Type must be application/json, got '" + ct + "'");
  }
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (empty_default.is_null()) return Status::InvalidArgument("a JSON request body is required");
    return empty_default;
  }
  AF_RETURN_IF_ERROR(CheckJsonDepth(req.body, "request body"));
  json j;
  try {
    j = json::parse(req.body);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument("request body must be a JSON object");
  return j;
}

// Rejects fields outside `allowed`.
Status CheckFields(const json& body, std::initializer_list<const char*> allowed) {
  std::set<std::string> ok(allowed.begin(), allowed.end());
  json problems = json::array();
  for (auto it = body.begin(); it != body.end(); ++it) {
    if (!ok.count(it.key())) {
      problems.push_back({{"field", it.key()}, {"message", "unknown field '" + it.key() + "'"}});
    }
  }
  if (problems.empty()) return Status::Ok();
  return Status::InvalidArgument(problems[0]["message"].get<std::string>(), {{"problems", problems}});
}

Result<int> ParseLimit(const Request& req, int def) {
  auto it = req.query.find("limit");
  if (it == req.query.end() || it->second.empty()) return def;
  try {
    size_t pos = 0;
    int v = std::stoi(it->second, &pos);
    if (pos != it->second.size() || v < 1 || v > 1000) throw std::out_of_range("limit");
    return v;
  } catch (...) {
    return Status::InvalidArgument("limit must be an integer from 1 to 1000");
  }
}

// ?wait=<seconds> (decimal allowed); 0 when absent.
Result<double> ParseWait(const Request& req, int max_seconds) {
  auto it = req.query.find("wait");
  if (it == req.query.end() || it->second.empty()) return 0.0;
  try {
    size_t pos = 0;
    double v = std::stod(it->second, &pos);
    if (pos != it->second.size() || !(v >= 0)) throw std::out_of_range("wait");
    return std::min<double>(v, max_seconds);
  } catch (...) {
    return Status::InvalidArgument("wait must be a number of seconds >= 0");
  }
}

std::string OptString(const json& body, const char* field, Status* err) {
  if (!body.contains(field) || body[field].is_null()) return "";
  if (!body[field].is_string()) {
    *err = Status::InvalidArgument(std::string("field '") + field + "' must be a string");
    return "";
  }
  return body[field].get<std::string>();
}

Status CheckId(const std::string& id, const char* what) {
  if (IsValidId(id)) return Status::Ok();
  return Status::InvalidArgument(std::string("invalid ") + what +
                                 ": ids are 1-128 characters of letters, digits, '.', '_', ':' and '-'");
}

}  // namespace af::api
