#include "ui/console.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

namespace af::ui {
namespace {

// FNV-1a: a content hash for the ETag, not for security.
std::string ETagOf(std::string_view body) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : body) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
  return buf;
}

struct Served {
  const Asset* asset;
  std::string etag;
};

const std::map<std::string, Served, std::less<>>& Index() {
  static const std::map<std::string, Served, std::less<>> index = [] {
    std::map<std::string, Served, std::less<>> m;
    for (const Asset& a : Assets()) m.emplace(std::string(a.name), Served{&a, ETagOf(a.body)});
    return m;
  }();
  return index;
}

http::Response Serve(const http::Request& req, std::string_view name) {
  const auto& index = Index();
  auto it = index.find(name);
  if (it == index.end()) {
    return http::JsonError(404, "NOT_FOUND", "no console file " + std::string(name));
  }
  const Served& s = it->second;
  http::Response res;
  res.headers.emplace_back("ETag", s.etag);
  res.headers.emplace_back("Cache-Control", "no-cache");
  res.headers.emplace_back("X-Content-Type-Options", "nosniff");
  res.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
  if (req.Header("If-None-Match") == s.etag) {
    res.status = 304;
    return res;
  }
  res.content_type = std::string(s.asset->content_type);
  res.body = std::string(s.asset->body);
  return res;
}

}  // namespace

void RegisterConsole(http::Router& router) {
  router.Add("GET", "/",
             [](http::Request& req) -> boost::asio::awaitable<http::Response> { co_return Serve(req, "index.html"); });
  router.Add("GET", "/ui/{file}", [](http::Request& req) -> boost::asio::awaitable<http::Response> {
    co_return Serve(req, req.path_params["file"]);
  });
}

}  // namespace af::ui
