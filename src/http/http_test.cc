// Tests of the HTTP module over real loopback sockets. No Beast here: the
// raw-protocol tests speak HTTP through plain Asio sockets.
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <set>
#include <thread>

#include <boost/asio.hpp>
#include <gtest/gtest.h>

#include "http/http.h"
#include "http/sse.h"

namespace af::http {
namespace {

using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// ---------------------------------------------------------------- helpers

asio::awaitable<void> DoFetch(Client* c, ClientRequest req, CancelSignal* cancel, Result<ClientResponse>* out) {
  asio::awaitable<Result<ClientResponse>> call = c->Send(std::move(req), cancel);
  Result<ClientResponse> r = co_await std::move(call);
  *out = std::move(r);
}

// Runs one Send on `ioc` (in this thread) to completion.
Result<ClientResponse> Fetch(asio::io_context& ioc, Client& c, ClientRequest req, CancelSignal* cancel = nullptr) {
  Result<ClientResponse> out = Status::Internal("not run");
  asio::co_spawn(ioc, DoFetch(&c, std::move(req), cancel, &out), asio::detached);
  ioc.restart();
  ioc.run();
  return out;
}

ClientRequest Req(std::string method, std::string url, std::string body = "") {
  ClientRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.body = std::move(body);
  r.timeout = 20s;
  return r;
}

asio::awaitable<void> Sleep(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

asio::awaitable<void> CancelAfter(CancelSignal* s, std::chrono::milliseconds d) {
  co_await Sleep(d);
  s->Cancel("test cancel");
}

// A server around a Router; stops before the router goes away.
struct TestServer {
  Router router;
  std::unique_ptr<Server> server;
  std::string base;

  void Start(ServerOptions opts = {}) {
    opts.host = "127.0.0.1";
    auto r = StartServer(opts, router.AsHandler());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    server = std::move(*r);
    base = "http://127.0.0.1:" + std::to_string(server->port());
  }
  ~TestServer() {
    if (server) server->Stop();
  }
};

// Writes `data` on a fresh connection and reads until the server closes.
std::string RawExchange(uint16_t port, const std::string& data) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  timeval tv{10, 0};  // a broken server fails the test instead of hanging it
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  asio::write(s, asio::buffer(data));
  std::string out;
  char buf[4096];
  for (;;) {
    boost::system::error_code ec;
    size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

nlohmann::json BodyJson(const Result<ClientResponse>& r) { return nlohmann::json::parse(r->body, nullptr, false); }

// ---------------------------------------------------------------- pure helpers

TEST(HttpUtilTest, FindHeaderIsCaseInsensitive) {
  Headers h = {{"Content-Type", "text/plain"}, {"X-Thing", "1"}};
  EXPECT_EQ(FindHeader(h, "content-type"), "text/plain");
  EXPECT_EQ(FindHeader(h, "X-THING"), "1");
  EXPECT_EQ(FindHeader(h, "missing"), "");
}

TEST(HttpUtilTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%20b"), "a b");
  EXPECT_EQ(PercentDecode("a%2Fb%2fc"), "a/b/c");
  EXPECT_EQ(PercentDecode("plain+text"), "plain+text");  // '+' is literal outside queries
  EXPECT_EQ(PercentDecode("%E2%9C%93"), "\xE2\x9C\x93");
  EXPECT_EQ(PercentDecode(""), "");
  EXPECT_EQ(PercentDecode("%"), std::nullopt);
  EXPECT_EQ(PercentDecode("%4"), std::nullopt);
  EXPECT_EQ(PercentDecode("%G1"), std::nullopt);
  EXPECT_EQ(PercentDecode("ab%"), std::nullopt);
}

TEST(HttpUtilTest, ParseQuery) {
  auto q = ParseQuery("a=1&b=x%20y&c=a+b&flag&&=skipped&d=%ZZ&a=2");
  EXPECT_EQ(q["a"], "2");  // the last repeat wins
  EXPECT_EQ(q["b"], "x y");
  EXPECT_EQ(q["c"], "a b");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["d"], "%ZZ");  // malformed escapes are kept as sent
  EXPECT_EQ(q.count(""), 0u);
  EXPECT_EQ(q.size(), 5u);
  EXPECT_TRUE(ParseQuery("").empty());
  EXPECT_EQ(ParseQuery("?x=1")["x"], "1");
}

TEST(HttpUtilTest, ParseUrl) {
  auto u = ParseUrl("http://example.com/a/b?x=1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/a/b?x=1");

  u = ParseUrl("http://127.0.0.1:9000");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->target, "/");

  u = ParseUrl("HTTP://h:1?q=2#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->target, "/?q=2");

  u = ParseUrl("http://[::1]:8080/x");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8080);

  for (const char* bad : {"https://h/", "ftp://h", "h:80/x", "http://", "http://:80/", "http://h:0/", "http://h:65536/",
                          "http://h:8x/", "http://[::1/", "http://h/a b", "http://u@h/"}) {
    auto r = ParseUrl(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    }
  }
}

TEST(HttpUtilTest, JsonErrorShape) {
  Response r = JsonError(404, "NOT_FOUND", "no such run");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(r.body), (nlohmann::json{{"error", {{"code", "NOT_FOUND"}, {"message", "no such run"}}}}));
  r = JsonError(400, "INVALID_ARGUMENT", "bad", nlohmann::json::array({"x"}));
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["details"][0], "x");
}

// ---------------------------------------------------------------- router

Handler Tag(std::string tag) {
  return [tag](Request& req) -> asio::awaitable<Response> {
    nlohmann::json params = req.path_params;
    co_return JsonResponse(200, {{"tag", tag}, {"params", params}});
  };
}

Response DispatchNow(const Router& router, std::string method, std::string target) {
  Request req;
  req.method = std::move(method);
  req.target = target;
  req.path = target.substr(0, target.find('?'));
  Response out;
  asio::io_context ioc;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        Response r = co_await router.Dispatch(req);
        out = std::move(r);
      },
      asio::detached);
  ioc.run();
  return out;
}

TEST(RouterTest, MatchesSegmentsParamsAndPrefersLiterals) {
  Router router;
  router.Add("GET", "/runs/{id}", Tag("run"));
  router.Add("GET", "/runs/stats", Tag("stats"));
  router.Add("POST", "/runs/{id}/cancel", Tag("cancel"));
  router.Add("GET", "/runs", Tag("list"));

  auto body = [](const Response& r) { return nlohmann::json::parse(r.body); };
  Response r = DispatchNow(router, "GET", "/runs/r-1");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(body(r)["tag"], "run");
  EXPECT_EQ(body(r)["params"]["id"], "r-1");

  EXPECT_EQ(body(DispatchNow(router, "GET", "/runs/stats"))["tag"], "stats");
  EXPECT_EQ(body(DispatchNow(router, "GET", "/runs/"))["tag"], "list");  // trailing slash
  EXPECT_EQ(body(DispatchNow(router, "GET", "/runs?limit=5"))["tag"], "list");

  r = DispatchNow(router, "GET", "/runs/a%2Fb%20c");  // %2F stays inside the segment
  EXPECT_EQ(body(r)["params"]["id"], "a/b c");

  r = DispatchNow(router, "POST", "/runs/x/cancel/");
  EXPECT_EQ(body(r)["tag"], "cancel");
  EXPECT_EQ(body(r)["params"]["id"], "x");
}

TEST(RouterTest, NotFoundAndMethodNotAllowed) {
  Router router;
  router.Add("GET", "/a/{x}", Tag("get"));
  router.Add("DELETE", "/a/{x}", Tag("del"));

  Response r = DispatchNow(router, "GET", "/x");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(nlohmann::json::parse(r.body),
            (nlohmann::json{{"error", {{"code", "NOT_FOUND"}, {"message", "no route for GET /x"}}}}));

  r = DispatchNow(router, "POST", "/a/1");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["code"], "METHOD_NOT_ALLOWED");
  EXPECT_EQ(FindHeader(r.headers, "Allow"), "GET, DELETE");

  r = DispatchNow(router, "GET", "/a/%zz");
  EXPECT_EQ(r.status, 400);
}

// ---------------------------------------------------------------- server + client

// Each test runs twice: clients with exchanges on strands of their own, and
// with ClientOptions::one_thread (the io_context is run by one thread).
class HttpTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    ts_.router.Add("GET", "/hello/{name}", [](Request& req) -> asio::awaitable<Response> {
      nlohmann::json q = req.query;
      co_return JsonResponse(200, {{"hello", req.path_params["name"]}, {"query", q}, {"path", req.path}});
    });
    ts_.router.Add("POST", "/echo", [](Request& req) -> asio::awaitable<Response> {
      Response r;
      r.content_type = "text/plain";
      r.body = req.body;
      r.headers.emplace_back("X-Seen-Type", req.Header("content-type"));
      co_return r;
    });
    ts_.router.Add("GET", "/remote", [](Request& req) -> asio::awaitable<Response> {
      co_return JsonResponse(200, {{"remote", req.remote}});
    });
    ts_.router.Add("GET", "/throw", [](Request&) -> asio::awaitable<Response> {
      throw std::runtime_error("boom");
      co_return Response{};
    });
    ts_.router.Add("GET", "/sleep", [](Request& req) -> asio::awaitable<Response> {
      auto ms = std::chrono::milliseconds(std::stoi(req.query["ms"]));
      co_await Sleep(ms);
      co_return JsonResponse(200, {{"slept", ms.count()}});
    });
    ts_.router.Add("GET", "/big", [](Request& req) -> asio::awaitable<Response> {
      Response r;
      r.content_type = "text/plain";
      r.body.assign(static_cast<size_t>(std::stoi(req.query["n"])), 'x');
      co_return r;
    });
    ts_.router.Add("GET", "/nocontent", [](Request&) -> asio::awaitable<Response> {
      Response r;
      r.status = 204;
      r.body = "ignored";
      co_return r;
    });
  }

  void Start(ServerOptions opts = {}) { ts_.Start(opts); }
  std::string Url(const std::string& path) const { return ts_.base + path; }

  // Options for clients on ioc_ (run by this thread only).
  static ClientOptions Opts(ClientOptions o = {}) {
    o.one_thread = GetParam();
    return o;
  }

  TestServer ts_;
  asio::io_context ioc_;
};

INSTANTIATE_TEST_SUITE_P(Client, HttpTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "OneThread" : "Strands"; });

TEST_P(HttpTest, RoutesParamsQueryAndErrorsOverLoopback) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());

  auto r = Fetch(ioc_, *client, Req("GET", Url("/hello/w%C3%B6rld%2F1?x=1&y=a%20b")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-type"), "application/json");
  EXPECT_EQ(r->Header("content-length"), std::to_string(r->body.size()));
  auto j = BodyJson(r);
  EXPECT_EQ(j["hello"], "w\xC3\xB6rld/1");
  EXPECT_EQ(j["query"]["x"], "1");
  EXPECT_EQ(j["query"]["y"], "a b");
  EXPECT_EQ(j["path"], "/hello/w\xC3\xB6rld/1");

  r = Fetch(ioc_, *client, Req("GET", Url("/nope")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(BodyJson(r)["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(BodyJson(r)["error"]["message"], "no route for GET /nope");

  r = Fetch(ioc_, *client, Req("DELETE", Url("/echo")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->Header("Allow"), "POST");

  auto post = Req("POST", Url("/echo"), "some body");
  post.headers.emplace_back("Content-Type", "text/x-test");
  r = Fetch(ioc_, *client, post);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "some body");
  EXPECT_EQ(r->Header("X-Seen-Type"), "text/x-test");
  EXPECT_EQ(r->Header("Content-Type"), "text/plain");
}

TEST_P(HttpTest, OversizeBodyGets413AndServerKeepsServing) {
  ServerOptions opts;
  opts.max_body_bytes = 1024;
  Start(opts);
  auto client = NewClient(ioc_.get_executor(), Opts());

  auto r = Fetch(ioc_, *client, Req("POST", Url("/echo"), std::string(4096, 'a')));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(BodyJson(r)["error"]["code"], "TOO_LARGE");

  r = Fetch(ioc_, *client, Req("POST", Url("/echo"), std::string(1024, 'b')));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), 1024u);

  // Chunked bodies (no Content-Length up front) hit the same limit.
  std::string chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "200\r\n" + std::string(512, 'c') + "\r\n";
  chunked += "0\r\n\r\n";
  std::string raw = RawExchange(ts_.server->port(), chunked);
  EXPECT_EQ(raw.rfind("HTTP/1.1 413", 0), 0u) << raw;
}

// Sends `data`, waits `pause`, then (unless `keep_open`) half-closes, and
// reads until the server closes; the server must close by itself within
// the receive timeout (10 s), or the exchange returns what it got so far.
std::string RawExchangeSlowly(uint16_t port, const std::vector<std::string>& parts,
                              std::chrono::milliseconds pause, bool half_close) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  timeval tv{10, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  boost::system::error_code ec;
  for (const auto& p : parts) {
    asio::write(s, asio::buffer(p), ec);
    std::this_thread::sleep_for(pause);
  }
  if (half_close) s.shutdown(tcp::socket::shutdown_send, ec);
  std::string out;
  char buf[4096];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

TEST_P(HttpTest, SlowHeadersAndBodiesGet408WithinTheirDeadlines) {
  ServerOptions opts;
  opts.header_timeout = 300ms;
  opts.body_timeout = 300ms;
  opts.idle_timeout = 60s;
  Start(opts);
  // Headers that never end.
  auto t0 = std::chrono::steady_clock::now();
  std::string raw = RawExchangeSlowly(ts_.server->port(), {"GET /hello/x HTTP/1.1\r\nHost: x\r\n"}, 0ms, false);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(raw.rfind("HTTP/1.1 408", 0), 0u) << raw;
  EXPECT_NE(raw.find("\"DEADLINE_EXCEEDED\""), std::string::npos) << raw;
  EXPECT_NE(raw.find("headers did not arrive within 300 ms"), std::string::npos) << raw;
  EXPECT_LT(took, 5s);
  // A body shorter than its Content-Length.
  raw = RawExchangeSlowly(ts_.server->port(),
                          {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789"}, 0ms, false);
  EXPECT_EQ(raw.rfind("HTTP/1.1 408", 0), 0u) << raw;
  EXPECT_NE(raw.find("body did not arrive within 300 ms"), std::string::npos) << raw;
  // Headers trickled a byte at a time, each byte well within the deadline:
  // the deadline is for all of them.
  std::vector<std::string> bytes;
  for (char c : std::string("GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789\r\n\r\n")) bytes.emplace_back(1, c);
  raw = RawExchangeSlowly(ts_.server->port(), bytes, 20ms, false);
  EXPECT_EQ(raw.rfind("HTTP/1.1 408", 0), 0u) << raw;
  // An idle keep-alive connection is not a slow request: a request after a
  // pause longer than the header deadline is served.
  raw = RawExchangeSlowly(ts_.server->port(),
                          {"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n",
                           "GET /hello/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
                          500ms, false);
  EXPECT_NE(raw.find("\"hello\":\"a\""), std::string::npos) << raw;
  EXPECT_NE(raw.find("\"hello\":\"b\""), std::string::npos) << raw;
  // Still serving.
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", Url("/hello/y")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

// A request that arrived whole is parsed from the buffer; one that did not
// goes on through the reads. Both, and several requests in one segment,
// are served in order.
TEST_P(HttpTest, WholeSplitAndPipelinedRequestsAreServed) {
  Start();
  // Header and body in separate segments, the body in two.
  std::string raw = RawExchangeSlowly(
      ts_.server->port(),
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n", "\r\n01234", "56789"}, 20ms,
      false);
  EXPECT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw;
  EXPECT_NE(raw.find("\r\n\r\n0123456789"), std::string::npos) << raw;
  // Three requests in one write: the first two whole, the third's body cut
  // short until the next segment.
  raw = RawExchangeSlowly(ts_.server->port(),
                          {"GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n"
                           "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                           "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nde",
                           "fg"},
                          20ms, false);
  size_t a = raw.find("\"hello\":\"a\"");
  size_t abc = raw.find("\r\n\r\nabc");
  size_t defg = raw.find("\r\n\r\ndefg");
  ASSERT_NE(a, std::string::npos) << raw;
  ASSERT_NE(abc, std::string::npos) << raw;
  ASSERT_NE(defg, std::string::npos) << raw;
  EXPECT_LT(a, abc);
  EXPECT_LT(abc, defg);
}

TEST_P(HttpTest, TruncatedRequestsGet400) {
  Start();
  std::string raw = RawExchangeSlowly(
      ts_.server->port(), {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this"}, 0ms, true);
  EXPECT_EQ(raw.rfind("HTTP/1.1 400", 0), 0u) << raw;
  EXPECT_NE(raw.find("the request ended before its body did"), std::string::npos) << raw;
  raw = RawExchangeSlowly(ts_.server->port(), {"GET /hello/x HTTP/1.1\r\nHost: "}, 0ms, true);
  EXPECT_EQ(raw.rfind("HTTP/1.1 400", 0), 0u) << raw;
  EXPECT_NE(raw.find("the request ended before its headers did"), std::string::npos) << raw;
  // A connection closed before any byte needs no answer.
  raw = RawExchangeSlowly(ts_.server->port(), {}, 0ms, true);
  EXPECT_EQ(raw, "");
}

TEST_P(HttpTest, InvalidUtf8MissingHostAndOtherVersionsAreRefused) {
  ServerOptions opts;
  opts.max_body_bytes = 1024;
  Start(opts);
  struct Case {
    std::string request;
    std::string status_line;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"GET /hello/x HTTP/1.1\r\n\r\n", "HTTP/1.1 400", "must carry a Host header"},
      {"GET /hello/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400", "target is not valid UTF-8"},
      // Refused after parsing: the connection stays open unless the client closes it.
      {"GET /hello/%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400",
       "path is not valid UTF-8"},
      {"GET /hello/%ED%A0%80 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400",
       "path is not valid UTF-8"},
      {"GET /hello/x?q=%C0%AF HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400",
       "query parameter 'q' is not valid UTF-8"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}", "HTTP/1.1 400",
       "Transfer-Encoding 'gzip' is not supported"},
      {"GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9\r\n\r\n", "HTTP/1.1 400",
       "header 'X-Name' is not valid UTF-8"},
      {"GET /hello/x HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505", "HTTP/2.0 is not supported"},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505", "not supported"},
      {std::string("GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Nul: a") + '\0' + "b\r\n\r\n", "HTTP/1.1 400",
       "malformed HTTP request"},
      {"GET /hello/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
       "HTTP/1.1 400", "malformed"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n",
       "HTTP/1.1 413", "request body is 999999999 bytes, over the limit of 1024 bytes"},
      {"GET /" + std::string(70000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 431", "over the limit of 65536"},
  };
  for (const Case& c : cases) {
    std::string raw = RawExchange(ts_.server->port(), c.request);
    SCOPED_TRACE(c.request.substr(0, 60));
    EXPECT_EQ(raw.rfind(c.status_line, 0), 0u) << raw;
    EXPECT_NE(raw.find("application/json"), std::string::npos) << raw;
    EXPECT_NE(raw.find(c.says), std::string::npos) << raw;
    EXPECT_EQ(raw.find("100 Continue"), std::string::npos) << raw;
  }
  // Valid UTF-8 everywhere is fine; HTTP/1.0 needs no Host.
  std::string raw = RawExchange(ts_.server->port(),
                                "GET /hello/w%C3%B6rld?q=%E2%9C%93 HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n"
                                "Connection: close\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw;
  raw = RawExchange(ts_.server->port(), "GET /hello/x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.0 200", 0), 0u) << raw;
}

TEST(HttpUtilTest, IsValidUtf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // a continuation byte first
}

TEST_P(HttpTest, MalformedRequestGets400AndClose) {
  Start();
  std::string raw = RawExchange(ts_.server->port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.1 400", 0), 0u) << raw;
  EXPECT_NE(raw.find("\"INVALID_ARGUMENT\""), std::string::npos) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;

  raw = RawExchange(ts_.server->port(), "GET /hello/x HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.1 400", 0), 0u) << raw;

  // Still serving.
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", Url("/hello/x")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_P(HttpTest, HandlerThrowingGets500AndConnectionKeepsServing) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", Url("/remote")));
  ASSERT_TRUE(r.ok());
  std::string remote = BodyJson(r)["remote"];

  r = Fetch(ioc_, *client, Req("GET", Url("/throw")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(BodyJson(r)["error"]["code"], "INTERNAL");

  r = Fetch(ioc_, *client, Req("GET", Url("/remote")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(BodyJson(r)["remote"], remote) << "the connection survived the 500";
}

TEST_P(HttpTest, KeepAliveReusesOneConnection) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  std::set<std::string> remotes;
  for (int i = 0; i < 10; ++i) {
    auto r = Fetch(ioc_, *client, Req("GET", Url("/remote")));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    remotes.insert(BodyJson(r)["remote"].get<std::string>());
  }
  EXPECT_EQ(remotes.size(), 1u) << "sequential requests should share one kept-alive connection";

  // A second client has its own pool, hence another connection.
  auto other = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *other, Req("GET", Url("/remote")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(remotes.count(BodyJson(r)["remote"].get<std::string>()), 0u);
}

TEST_P(HttpTest, ConnectionCloseAndHttp10AreHonoured) {
  Start();
  // RawExchange returns only once the server closes the connection.
  std::string raw = RawExchange(ts_.server->port(), "GET /hello/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.1 200", 0), 0u) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;

  raw = RawExchange(ts_.server->port(), "GET /hello/b HTTP/1.0\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.0 200", 0), 0u) << raw;
  EXPECT_NE(raw.find("\"hello\":\"b\""), std::string::npos) << raw;

  // Two pipelined requests, the second closing.
  raw = RawExchange(ts_.server->port(),
                    "GET /hello/c HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(raw.find("\"hello\":\"c\""), std::string::npos) << raw;
  EXPECT_NE(raw.find("\"hello\":\"d\""), std::string::npos) << raw;
}

TEST_P(HttpTest, ExpectContinueGetsInterimResponse) {
  Start();
  std::string raw = RawExchange(
      ts_.server->port(),
      "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
  EXPECT_EQ(raw.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", 0), 0u) << raw;
  EXPECT_EQ(raw.substr(raw.size() - 2), "hi");
}

TEST_P(HttpTest, NoContentHasNoBody) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", Url("/nocontent")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->body, "");
  EXPECT_EQ(r->Header("Content-Length"), "");
  // The connection is still in sync.
  r = Fetch(ioc_, *client, Req("GET", Url("/hello/z")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_P(HttpTest, ClientTimeoutIsDeadlineExceeded) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto req = Req("GET", Url("/sleep?ms=10000"));
  req.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  auto r = Fetch(ioc_, *client, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
  EXPECT_NE(r.status().message().find("200 ms"), std::string::npos) << r.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s) << "the client must not wait for the handler";

  // The client is still usable afterwards.
  r = Fetch(ioc_, *client, Req("GET", Url("/hello/again")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
}

TEST_P(HttpTest, CancelIsCancelledPromptly) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  CancelSignal signal;
  asio::co_spawn(ioc_, CancelAfter(&signal, 100ms), asio::detached);
  auto start = std::chrono::steady_clock::now();
  auto r = Fetch(ioc_, *client, Req("GET", Url("/sleep?ms=10000")), &signal);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCancelled) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);

  // An already-cancelled signal fails at once.
  r = Fetch(ioc_, *client, Req("GET", Url("/hello/x")), &signal);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCancelled);
}

TEST_P(HttpTest, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    asio::io_context tmp;
    tcp::acceptor a(tmp, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port = a.local_endpoint().port();
  }  // closed: nothing listens there now
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", "http://127.0.0.1:" + std::to_string(port) + "/x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("Hint"), std::string::npos);
}

TEST_P(HttpTest, InvalidUrlIsInvalidArgument) {
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", "https://secure.example/x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_P(HttpTest, ResponseOverClientLimitIsTooLarge) {
  Start();
  ClientOptions opts;
  opts.max_body_bytes = 1000;
  auto client = NewClient(ioc_.get_executor(), Opts(opts));
  auto r = Fetch(ioc_, *client, Req("GET", Url("/big?n=1000")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body.size(), 1000u);
  r = Fetch(ioc_, *client, Req("GET", Url("/big?n=5000")));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge) << r.status().ToString();
  EXPECT_EQ(r.status().message(), "response is 5000 bytes, over the limit of 1000 bytes");
  EXPECT_EQ(r.status().details()["bytes"], 5000);
  EXPECT_EQ(r.status().details()["limit"], 1000);
}

// A response without Content-Length (chunked, here 64 MiB of it) is read up
// to the limit only: the client stops and closes, the sender sees the close.
TEST(HttpClientTest, ChunkedResponseOverTheLimitIsCutOffAtTheLimit) {
  asio::io_context sctx;
  tcp::acceptor acceptor(sctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  uint16_t port = acceptor.local_endpoint().port();
  std::atomic<size_t> sent{0};
  std::thread server([&] {
    tcp::socket c = acceptor.accept();
    asio::streambuf buf;
    boost::system::error_code ec;
    asio::read_until(c, buf, "\r\n\r\n", ec);
    asio::write(c, asio::buffer(std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")), ec);
    const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
    for (int i = 0; i < 1024 && !ec; ++i) {
      asio::write(c, asio::buffer(chunk), ec);
      if (!ec) sent += 0x10000;
    }
  });
  asio::io_context ioc;
  ClientOptions opts;
  opts.max_body_bytes = 100000;
  auto client = NewClient(ioc.get_executor(), opts);
  auto r = Fetch(ioc, *client, Req("GET", "http://127.0.0.1:" + std::to_string(port) + "/big"));
  server.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_EQ(r.status().message(), "response is larger, over the limit of 100000 bytes");
  EXPECT_TRUE(r.status().details()["bytes"].is_null());
  EXPECT_LT(sent.load(), size_t{64} << 20) << "the client read the whole response";
}

TEST_P(HttpTest, LocalhostAndFetchSync) {
  Start();
  auto r = FetchSync(Req("GET", "http://localhost:" + std::to_string(ts_.server->port()) + "/hello/sync"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(BodyJson(r)["hello"], "sync");
}

TEST_P(HttpTest, ManyConcurrentRequestsFromOneClientThread) {
  Start();  // one io thread on the server
  auto client = NewClient(ioc_.get_executor(), Opts());
  constexpr int kN = 200;
  std::vector<Result<ClientResponse>> results(kN, Result<ClientResponse>(Status::Internal("not run")));
  for (int i = 0; i < kN; ++i) {
    asio::co_spawn(ioc_, DoFetch(client.get(), Req("GET", Url("/sleep?ms=300")), nullptr, &results[i]), asio::detached);
  }
  ioc_.run();
  int ok = 0;
  for (auto& r : results) {
    if (r.ok() && r->status == 200) {
      ++ok;
    } else {
      ADD_FAILURE() << (r.ok() ? std::to_string(r->status) : r.status().ToString());
    }
  }
  EXPECT_EQ(ok, kN);

  // The pooled connections serve a second wave too.
  std::vector<Result<ClientResponse>> again(kN, Result<ClientResponse>(Status::Internal("not run")));
  for (int i = 0; i < kN; ++i) {
    asio::co_spawn(ioc_, DoFetch(client.get(), Req("GET", Url("/hello/" + std::to_string(i))), nullptr, &again[i]),
                   asio::detached);
  }
  ioc_.restart();
  ioc_.run();
  for (int i = 0; i < kN; ++i) {
    ASSERT_TRUE(again[i].ok()) << again[i].status().ToString();
    EXPECT_EQ(BodyJson(again[i])["hello"], std::to_string(i));
  }
}

TEST_P(HttpTest, MultiThreadedServerAndClientExecutor) {
  ServerOptions opts;
  opts.threads = 2;
  Start(opts);
  // The client executor has two threads as well: exchanges run on strands.
  asio::io_context cctx(2);
  auto client = NewClient(cctx.get_executor());
  constexpr int kN = 100;
  std::vector<Result<ClientResponse>> results(kN, Result<ClientResponse>(Status::Internal("not run")));
  for (int i = 0; i < kN; ++i) {
    auto req = Req("GET", Url("/sleep?ms=" + std::to_string(i % 5 * 10)));
    asio::co_spawn(cctx, DoFetch(client.get(), std::move(req), nullptr, &results[i]), asio::detached);
  }
  std::thread t([&] { cctx.run(); });
  cctx.run();
  t.join();
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
  }
}

TEST_P(HttpTest, StopWithSuspendedHandlerDoesNotHangAndDestroysIt) {
  std::atomic<bool> entered{false};
  std::atomic<int> destroyed{0};
  struct Probe {
    std::atomic<int>* destroyed;
    ~Probe() { destroyed->fetch_add(1); }
  };
  ts_.router.Add("GET", "/forever", [&](Request&) -> asio::awaitable<Response> {
    Probe probe{&destroyed};
    entered = true;
    co_await Sleep(30s);
    co_return JsonResponse(200, {{"done", true}});
  });
  Start();

  Result<ClientResponse> result = Status::Internal("not run");
  std::thread caller([&] {
    auto req = Req("GET", Url("/forever"));
    req.timeout = 60s;
    result = FetchSync(req);
  });
  for (int i = 0; i < 1000 && !entered; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(entered);

  ts_.server->Stop();  // must return although the handler waits 30 s
  EXPECT_EQ(destroyed.load(), 1) << "the abandoned handler frame is destroyed by Stop()";
  caller.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::kUnavailable) << result.status().ToString();
  ts_.server->Stop();  // idempotent
}

// ---------------------------------------------------------------- streamed bodies, SSE

TEST(SseTest, FormatsEventsAndSplitsMultilineData) {
  EXPECT_EQ(FormatSseEvent("step", R"({"a":1})", "7"), "id: 7\nevent: step\ndata: {\"a\":1}\n\n");
  EXPECT_EQ(FormatSseEvent("", "x"), "data: x\n\n");
  EXPECT_EQ(FormatSseEvent("m", "one\ntwo"), "event: m\ndata: one\ndata: two\n\n");
  EXPECT_EQ(FormatSseComment("keep-alive"), ": keep-alive\n\n");
}

TEST(SseTest, ParserJoinsDataAcrossFeedsAndLineEndings) {
  SseParser p;
  std::string wire = FormatSseEvent("run", "{\"s\":\"RUNNING\"}", "1") + FormatSseComment("keep-alive") +
                     "event: step\r\ndata: a\r\ndata: b\r\n\r\n" + "retry: 10\rdata:no-space\r\r" + "event: empty\n\n";
  std::vector<SseEvent> got;
  // One byte at a time: every split point of the stream.
  for (char c : wire) {
    for (auto& e : p.Feed(std::string_view(&c, 1))) got.push_back(e);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, "1");
  EXPECT_EQ(got[0].event, "run");
  EXPECT_EQ(got[0].data, "{\"s\":\"RUNNING\"}");
  EXPECT_EQ(got[1].event, "step");
  EXPECT_EQ(got[1].data, "a\nb");
  EXPECT_EQ(got[1].id, "1") << "the last event id carries over";
  EXPECT_EQ(got[2].event, "message");
  EXPECT_EQ(got[2].data, "no-space");
  // "event: empty" had no data: nothing dispatched.
  SseParser whole;
  EXPECT_EQ(whole.Feed(wire).size(), 3u);
}

class StreamTest : public HttpTest {
 protected:
  void SetUp() override {
    HttpTest::SetUp();
    // Three parts 20 ms apart; the producer records whether its writes
    // succeeded.
    Handler stream = [this](Request& req) -> asio::awaitable<Response> {
      Response r;
      r.content_type = "text/event-stream";
      r.headers.emplace_back("Cache-Control", "no-cache");
      const int n = req.query.count("n") ? std::stoi(req.query["n"]) : 3;
      r.stream = [this, n](StreamWriter& w) -> asio::awaitable<void> {
        for (int i = 0; i < n; ++i) {
          std::string part = FormatSseEvent("tick", std::to_string(i), std::to_string(i));
          bool ok = co_await w.Write(std::move(part));
          if (!ok) {
            write_failed_ = true;
            co_return;
          }
          co_await Sleep(20ms);
        }
        finished_ = true;
      };
      co_return r;
    };
    ts_.router.Add("GET", "/stream", stream);
    ts_.router.Add("HEAD", "/stream", stream);
  }
  std::atomic<bool> write_failed_{false};
  std::atomic<bool> finished_{false};
};

INSTANTIATE_TEST_SUITE_P(Client, StreamTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "OneThread" : "Strands"; });

TEST_P(StreamTest, ChunksArriveInOrderAndTheConnectionIsKeptAlive) {
  Start();
  auto client = NewClient(ioc_.get_executor(), Opts());
  auto r = Fetch(ioc_, *client, Req("GET", Url("/stream")));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("Content-Type"), "text/event-stream");
  EXPECT_EQ(r->Header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(r->Header("Cache-Control"), "no-cache");
  SseParser p;
  auto events = p.Feed(r->body);
  ASSERT_EQ(events.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(events[i].data, std::to_string(i));
  EXPECT_TRUE(finished_);
  // The same connection serves the next request.
  std::string raw = RawExchange(ts_.server->port(),
                                "GET /stream?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                "GET /hello/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(raw.find("data: 0"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\r\n0\r\n\r\n"), std::string::npos) << "the last chunk ends the body: " << raw;
  EXPECT_NE(raw.find("\"hello\":\"again\""), std::string::npos) << raw;
}

TEST_P(StreamTest, StreamSyncHandsDataOverAsItArrives) {
  Start();
  SseParser p;
  std::vector<SseEvent> events;
  auto req = Req("GET", Url("/stream?n=3"));
  req.timeout = 5s;
  auto r = StreamSync(req, [&](std::string_view data) {
    for (auto& e : p.Feed(data)) events.push_back(e);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].id, "2");

  // The caller may stop early: the producer's next write then fails.
  events.clear();
  write_failed_ = false;
  r = StreamSync(Req("GET", Url("/stream?n=50")), [&](std::string_view data) {
    for (auto& e : p.Feed(data)) events.push_back(e);
    return events.empty();
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (int i = 0; i < 500 && !write_failed_; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(write_failed_) << "a write to a client that left reports failure";

  // A refusal is returned whole, not streamed.
  bool called = false;
  r = StreamSync(Req("GET", Url("/nope")), [&](std::string_view) { return called = true; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_FALSE(called);
  EXPECT_NE(r->body.find("NOT_FOUND"), std::string::npos);

  // No data within the timeout: DeadlineExceeded.
  auto slow = Req("GET", Url("/sleep?ms=2000"));
  slow.timeout = 100ms;
  r = StreamSync(slow, [](std::string_view) { return true; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
}

TEST_P(StreamTest, Http10GetsTheBodyUntilCloseAndHeadGetsNoBody) {
  Start();
  std::string raw = RawExchange(ts_.server->port(), "GET /stream?n=2 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(raw.find("Transfer-Encoding"), std::string::npos) << raw;
  EXPECT_NE(raw.find("id: 0\nevent: tick\ndata: 0\n\nid: 1\nevent: tick\ndata: 1\n\n"), std::string::npos) << raw;
  raw = RawExchange(ts_.server->port(), "HEAD /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(raw.find("200 OK"), std::string::npos) << raw;
  EXPECT_EQ(raw.find("data:"), std::string::npos) << raw;
}

TEST_P(StreamTest, StopEndsASuspendedStream) {
  std::atomic<bool> entered{false};
  ts_.router.Add("GET", "/endless", [&](Request&) -> asio::awaitable<Response> {
    Response r;
    r.content_type = "text/event-stream";
    r.stream = [&](StreamWriter& w) -> asio::awaitable<void> {
      std::string first = FormatSseComment("hello");
      co_await w.Write(std::move(first));
      entered = true;
      co_await Sleep(30s);
    };
    co_return r;
  });
  Start();
  Result<ClientResponse> result = Status::Internal("not run");
  std::string seen;
  std::thread caller([&] {
    auto req = Req("GET", Url("/endless"));
    req.timeout = 60s;
    result = StreamSync(req, [&](std::string_view d) {
      seen.append(d);
      return true;
    });
  });
  for (int i = 0; i < 1000 && !entered; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(entered);
  ts_.server->Stop();  // returns although the stream waits 30 s
  caller.join();
  EXPECT_EQ(seen, ": hello\n\n");
  EXPECT_FALSE(result.ok()) << "the body was cut off, not ended";
}

// A hand-written server: answers the first request on a kept-alive
// connection, then reads the second request and closes without answering,
// the way a server closes an idle connection just as a request arrives.
TEST(HttpClientTest, ReusedDeadConnectionIsRetriedOnceOnANewOne) {
  asio::io_context sctx;
  tcp::acceptor acceptor(sctx, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  uint16_t port = acceptor.local_endpoint().port();
  std::atomic<int> accepted{0};
  std::thread server([&] {
    auto read_request = [](tcp::socket& s) {
      asio::streambuf buf;
      boost::system::error_code ec;
      asio::read_until(s, buf, "\r\n\r\n", ec);
    };
    tcp::socket c1 = acceptor.accept();
    ++accepted;
    read_request(c1);
    asio::write(c1, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")));
    read_request(c1);
    c1.close();
    tcp::socket c2 = acceptor.accept();
    ++accepted;
    read_request(c2);
    asio::write(c2, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecond")));
    c2.shutdown(tcp::socket::shutdown_send);
    // A fresh connection that dies is not retried.
    tcp::socket c3 = acceptor.accept();
    ++accepted;
    read_request(c3);
    c3.close();
  });

  asio::io_context ioc;
  auto client = NewClient(ioc.get_executor());
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/x";
  auto r = Fetch(ioc, *client, Req("POST", url, "{}"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "first");
  r = Fetch(ioc, *client, Req("POST", url, "{}"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "second");
  r = Fetch(ioc, *client, Req("POST", url, "{}"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  server.join();
  EXPECT_EQ(accepted.load(), 3);
}

TEST(HttpServerTest, StartFailsCleanlyOnBadHostOrBusyPort) {
  Router router;
  ServerOptions opts;
  opts.host = "not an ip";
  auto r = StartServer(opts, router.AsHandler());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);

  opts.host = "127.0.0.1";
  auto first = StartServer(opts, router.AsHandler());
  ASSERT_TRUE(first.ok());
  opts.port = (*first)->port();
  auto second = StartServer(opts, router.AsHandler());
  EXPECT_FALSE(second.ok());
  (*first)->Stop();
}

}  // namespace
}  // namespace af::http
