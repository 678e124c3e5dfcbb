// Segment-wise routing. Paths are split on '/', empty segments (doubled or
// trailing slashes) are ignored, and each segment is percent-decoded on its
// own so that an encoded "%2F" stays inside one parameter.
#include <algorithm>

#include "http/http.h"

namespace af::http {

namespace {

std::vector<std::string_view> SplitRaw(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view seg = path.substr(0, slash);
    if (!seg.empty()) out.push_back(seg);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool IsParam(const std::string& seg) { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }

// The raw path of a request: from the target when there is one (so that each
// segment is decoded separately), else the already-decoded path.
std::string_view RawPath(const Request& req) {
  if (req.target.empty() || req.target.front() != '/') return req.path;
  std::string_view t = req.target;
  return t.substr(0, t.find('?'));
}

}  // namespace

void Router::Add(std::string method, std::string pattern, Handler handler) {
  Route r;
  r.method = std::move(method);
  for (auto seg : SplitRaw(pattern)) r.segments.emplace_back(seg);
  r.pattern = std::move(pattern);
  r.handler = std::move(handler);
  routes_.push_back(std::move(r));
}

asio::awaitable<Response> Router::Dispatch(Request& req) const {
  std::vector<std::string> segs;
  for (auto raw : SplitRaw(RawPath(req))) {
    auto decoded = PercentDecode(raw);
    if (!decoded) {
      co_return JsonError(400, "INVALID_ARGUMENT", "invalid percent-encoding in path '" + std::string(RawPath(req)) + "'");
    }
    segs.push_back(std::move(*decoded));
  }

  // Among the routes whose pattern matches, a literal segment beats a
  // parameter at the first position where two candidates differ
  // ("/runs/stats" wins over "/runs/{id}"), whatever the order of Add.
  const Route* best = nullptr;
  std::vector<bool> best_shape;
  std::vector<std::string> allowed;
  for (const Route& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    std::vector<bool> shape;  // true = literal
    bool match = true;
    for (size_t i = 0; i < segs.size() && match; ++i) {
      bool param = IsParam(r.segments[i]);
      shape.push_back(!param);
      if (!param && r.segments[i] != segs[i]) match = false;
    }
    if (!match) continue;
    if (std::find(allowed.begin(), allowed.end(), r.method) == allowed.end()) allowed.push_back(r.method);
    if (r.method != req.method) continue;
    if (best == nullptr || shape > best_shape) {
      best = &r;
      best_shape = std::move(shape);
    }
  }

  if (best == nullptr) {
    if (allowed.empty()) {
      co_return JsonError(404, "NOT_FOUND", "no route for " + req.method + " " + req.path);
    }
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    Response res = JsonError(405, "METHOD_NOT_ALLOWED",
                             "method " + req.method + " is not allowed for " + req.path + "; allowed: " + allow);
    res.headers.emplace_back("Allow", allow);
    co_return res;
  }

  req.route = best->pattern;
  req.path_params.clear();
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string& p = best->segments[i];
    if (IsParam(p)) req.path_params[p.substr(1, p.size() - 2)] = segs[i];
  }
  if (guard_) {
    asio::awaitable<std::optional<Response>> check = guard_(req);
    std::optional<Response> refused = co_await std::move(check);
    if (refused) co_return std::move(*refused);
  }
  // Named first: g++ 12 miscompiles temporaries in a co_await full-expression.
  asio::awaitable<Response> call = best->handler(req);
  Response res = co_await std::move(call);
  co_return res;
}

Handler Router::AsHandler() const {
  // The router must outlive the server that calls it.
  return [this](Request& req) { return Dispatch(req); };
}

}  // namespace af::http
