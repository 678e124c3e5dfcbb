// The embedded console: every file the page loads is embedded, and the
// routes serve them with their type, ETag and security headers.
#include "http/testing.h"
#include "ui/console.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <regex>
#include <set>

namespace af::ui {
namespace {

http::Response Get(http::Router& router, const std::string& path, http::Headers headers = {}) {
  http::Request req;
  req.method = "GET";
  req.target = req.path = path;
  req.headers = std::move(headers);
  return http::DispatchSync(router, req);
}

std::set<std::string> Names() {
  std::set<std::string> names;
  for (const Asset& a : Assets()) names.insert(std::string(a.name));
  return names;
}

TEST(ConsoleTest, EveryFileThePageLoadsIsEmbedded) {
  const std::set<std::string> names = Names();
  ASSERT_TRUE(names.count("index.html"));
  // <script src="/ui/x"> and <link href="/ui/x"> in the page, and
  // `from './x.js'` in the modules.
  std::regex page_ref(R"re((?:src|href)="/ui/([^"]+)")re");
  std::regex import_ref(R"re(from '\./([^']+)')re");
  int refs = 0;
  for (const Asset& a : Assets()) {
    std::string body(a.body);
    const std::regex& re = a.name == "index.html" ? page_ref : import_ref;
    for (auto it = std::sregex_iterator(body.begin(), body.end(), re); it != std::sregex_iterator(); ++it) {
      ++refs;
      EXPECT_TRUE(names.count((*it)[1].str())) << a.name << " loads " << (*it)[1].str() << ", which is not embedded";
    }
    EXPECT_FALSE(a.body.empty()) << a.name;
  }
  EXPECT_GE(refs, 5) << "the page loads its style and app, and the app its modules";
}

TEST(ConsoleTest, RoutesServeThePageAndItsFilesWithCachingAndPolicyHeaders) {
  http::Router router;
  RegisterConsole(router);
  http::Response page = Get(router, "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("<script type=\"module\" src=\"/ui/app.js\">"), std::string::npos);
  EXPECT_NE(http::FindHeader(page.headers, "Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(http::FindHeader(page.headers, "X-Content-Type-Options"), "nosniff");

  http::Response js = Get(router, "/ui/dag.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(js.body.find("export function layoutDag"), std::string::npos);
  const std::string etag = http::FindHeader(js.headers, "ETag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(http::FindHeader(js.headers, "Cache-Control"), "no-cache");

  http::Response again = Get(router, "/ui/dag.js", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_NE(http::FindHeader(Get(router, "/ui/app.js").headers, "ETag"), etag) << "each file its own tag";

  http::Response missing = Get(router, "/ui/nope.js");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("NOT_FOUND"), std::string::npos);
}

}  // namespace
}  // namespace af::ui
