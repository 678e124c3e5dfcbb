// Malformed requests of every kind, sent over raw sockets (where a client
// library would refuse to send them) to `agentflow serve`: each gets a JSON
// error with the right status, and the server answers a normal request
// afterwards. Timeouts are shortened with --header-timeout/--body-timeout so
// the slow-client cases take a second, not the default 10 and 60.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "e2e/harness.h"

namespace af::e2e {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct RawReply {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
  json body_json = json(json::value_t::discarded);
  std::string Header(const std::string& name) const {
    std::string lower_head = head;
    for (char& c : lower_head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string key = "\r\n" + name + ":";
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t at = lower_head.find(key);
    if (at == std::string::npos) return "";
    size_t start = at + key.size();
    size_t end = head.find("\r\n", start);
    std::string v = head.substr(start, end == std::string::npos ? std::string::npos : end - start);
    v.erase(0, v.find_first_not_of(' '));
    return v;
  }
};

// Splits what the server sent into responses (by Content-Length).
std::vector<RawReply> ParseReplies(const std::string& raw) {
  std::vector<RawReply> out;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t end = raw.find("\r\n\r\n", pos);
    if (end == std::string::npos) break;
    RawReply r;
    r.head = raw.substr(pos, end - pos);
    if (r.head.rfind("HTTP/1.", 0) == 0 && r.head.size() > 12) r.status = std::atoi(r.head.c_str() + 9);
    size_t length = 0;
    std::string cl = r.Header("Content-Length");
    if (!cl.empty()) length = std::stoul(cl);
    r.body = raw.substr(end + 4, length);
    r.body_json = json::parse(r.body, nullptr, false);
    pos = end + 4 + length;
    if (r.status != 100) out.push_back(std::move(r));  // an interim 100 Continue is not an answer
  }
  return out;
}

// How many complete responses (status line, headers and Content-Length
// body; interim 100s not counted) `raw` holds.
size_t CompleteReplies(const std::string& raw) {
  size_t count = 0, pos = 0;
  while (true) {
    size_t end = raw.find("\r\n\r\n", pos);
    if (end == std::string::npos) return count;
    RawReply r;
    r.head = raw.substr(pos, end - pos);
    std::string cl = r.Header("Content-Length");
    size_t length = cl.empty() ? 0 : std::stoul(cl);
    if (raw.size() < end + 4 + length) return count;
    if (r.head.rfind("HTTP/1.1 100", 0) != 0) ++count;
    pos = end + 4 + length;
  }
}

// Writes `parts` on one connection (pausing `pause` after each), half-closes
// if asked, and reads until the server closes, or until `replies` complete
// responses arrived when it is not 0 (at most `limit`).
std::string RawExchange(uint16_t port, const std::vector<std::string>& parts, std::chrono::milliseconds pause = 0ms,
                        bool half_close = false, std::chrono::seconds limit = 15s, size_t replies = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  Require(fd >= 0, "socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  Require(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect failed");
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  for (const std::string& p : parts) {
    size_t off = 0;
    while (off < p.size()) {
      ssize_t n = ::send(fd, p.data() + off, p.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may refuse before reading everything
      off += static_cast<size_t>(n);
    }
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  char buf[16384];
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
    if (replies > 0 && CompleteReplies(out) >= replies) break;
  }
  ::close(fd);
  return out;
}

struct Case {
  std::string name;
  std::vector<std::string> parts;  // written in order on one connection
  int status;
  std::string code;  // expected error.code ("" = any)
  std::string says;  // a substring of error.message ("" = any)
  bool half_close = false;
};

class BadInputE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Server::Options o;
    o.data_dir = dir_.File("data");
    o.log_dir = dir_.path().string();
    o.command = {"serve", "--data-dir", o.data_dir, "--header-timeout", "1", "--body-timeout", "1"};
    server_ = std::make_unique<Server>(o);
    server_->Start();
  }
  void TearDown() override {
    if (HasFailure() && server_) {
      std::fprintf(stderr, "---- serve log\n%s\n", Tail(server_->stderr_path()).c_str());
    }
    if (server_) server_->Stop();
  }
  // Sends one case and checks: the status, a JSON error body with code and
  // message, Content-Type application/json.
  void Check(const Case& c) {
    SCOPED_TRACE("case: " + c.name);
    // Refusals after routing keep the connection open: stop at the first answer.
    std::string raw = RawExchange(server_->port(), c.parts, 0ms, c.half_close, 15s, 1);
    std::vector<RawReply> replies = ParseReplies(raw);
    ASSERT_FALSE(replies.empty()) << c.name << ": no HTTP response; got '" << raw.substr(0, 300) << "'";
    const RawReply& r = replies.front();
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.head << "\n" << r.body;
    EXPECT_THAT(r.Header("Content-Type"), HasSubstr("application/json")) << c.name << ": " << r.head;
    ASSERT_TRUE(r.body_json.is_object() && r.body_json.contains("error")) << c.name << ": " << r.body;
    const json& e = r.body_json["error"];
    ASSERT_TRUE(e["code"].is_string() && e["message"].is_string()) << c.name << ": " << r.body;
    if (!c.code.empty()) {
      EXPECT_EQ(e["code"], c.code) << c.name << ": " << r.body;
    }
    if (!c.says.empty()) {
      EXPECT_THAT(e["message"].get<std::string>(), HasSubstr(c.says)) << c.name;
    }
    if (c.status == 405) {
      EXPECT_FALSE(r.Header("Allow").empty()) << c.name << ": " << r.head;
    }
    std::printf("  %-44s -> %d %s\n", c.name.c_str(), r.status, e["code"].get<std::string>().c_str());
  }
  void ExpectServing() {
    HttpResponse h = Fetch("GET", server_->api() + "/runs?limit=1");
    EXPECT_EQ(h.status, 200) << h.Describe();
    EXPECT_TRUE(server_->Alive());
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
};

std::string Post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}
std::string Get(const std::string& target, const std::string& extra_headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra_headers + "\r\n";
}

TEST_F(BadInputE2E, EveryMalformedRequestGetsAJsonErrorAndServeKeepsServing) {
  const std::string wf = "/api/v1/workflows";
  const std::string big(2 << 20, 'x');
  const std::vector<Case> cases = {
      // Bodies.
      {"bad JSON", {Post(wf, R"({"name": "x", "steps": [)")}, 400, "INVALID_ARGUMENT", "not valid JSON"},
      {"JSON that is not an object", {Post(wf, "[1, 2]")}, 400, "INVALID_ARGUMENT", "must be a JSON object"},
      {"wrong types in a plan", {Post(wf, R"({"name": 5, "steps": "all of them"})")}, 400, "INVALID_ARGUMENT", ""},
      {"wrong type in an agent",
       {Post("/api/v1/agents", R"({"name": "a", "url": 7, "timeout_ms": "soon"})")},
       400,
       "INVALID_ARGUMENT",
       ""},
      {"empty body where one is required", {Post(wf, "")}, 400, "INVALID_ARGUMENT", "body is required"},
      {"invalid UTF-8 in a body", {Post(wf, "{\"name\": \"a\xff\", \"steps\": []}")}, 400, "INVALID_ARGUMENT", ""},
      {"JSON nested 10000 deep",
       {Post(wf, std::string(10000, '[') + std::string(10000, ']'))},
       400,
       "INVALID_ARGUMENT",
       "nested"},
      {"wrong Content-Type",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"},
       415,
       "UNSUPPORTED_MEDIA_TYPE",
       "text/plain"},
      {"body over the limit", {Post(wf, big)}, 413, "TOO_LARGE", "over the limit of 1048576 bytes"},
      {"Content-Length over the limit, no body",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n"},
       413,
       "TOO_LARGE",
       "request body is 1000000000 bytes, over the limit of 1048576 bytes"},
      {"oversized body announced with Expect: 100-continue",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n"},
       413,
       "TOO_LARGE",
       ""},
      {"chunked body over the limit",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n" +
        std::string(0x200000, 'x') + "\r\n0\r\n\r\n"},
       413,
       "TOO_LARGE",
       "over the limit"},
      {"body cut short (client half-closed)",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{\"name\":"},
       400,
       "INVALID_ARGUMENT",
       "ended before its body",
       true},
      // Routes and methods.
      {"unknown route", {Get("/api/v1/nothing")}, 404, "NOT_FOUND", "no route"},
      {"unknown API version", {Get("/api/v2/runs")}, 404, "NOT_FOUND", ""},
      {"wrong method", {"DELETE /api/v1/runs HTTP/1.1\r\nHost: t\r\n\r\n"}, 405, "METHOD_NOT_ALLOWED", "allowed: GET"},
      {"unknown method", {"BREW /api/v1/runs HTTP/1.1\r\nHost: t\r\n\r\n"}, 405, "METHOD_NOT_ALLOWED", ""},
      {"OPTIONS *", {"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"}, 404, "NOT_FOUND", ""},
      // Paths and ids.
      {"path traversal ../", {Get("/api/v1/runs/../../etc/passwd")}, 404, "NOT_FOUND", ""},
      {"encoded traversal ..%2F",
       {Get("/api/v1/runs/..%2F..%2Fetc%2Fpasswd")},
       400,
       "INVALID_ARGUMENT",
       "invalid run id"},
      {"encoded %2e%2e", {Get("/api/v1/workflows/%2e%2e%2f%2e%2e")}, 400, "INVALID_ARGUMENT", ""},
      {"NUL in an id", {Get("/api/v1/runs/run%00x")}, 400, "INVALID_ARGUMENT", ""},
      {"NUL byte in the request line",
       {std::string("GET /api/v1/runs/a") + '\0' + "b HTTP/1.1\r\nHost: t\r\n\r\n"},
       400,
       "INVALID_ARGUMENT",
       ""},
      {"id of 200 characters", {Get("/api/v1/runs/" + std::string(200, 'a'))}, 400, "INVALID_ARGUMENT", ""},
      {"bad percent-encoding", {Get("/api/v1/runs/%zz")}, 400, "INVALID_ARGUMENT", "percent-encoding"},
      {"invalid UTF-8 in the path (raw)", {Get("/api/v1/runs/\xc3\x28")}, 400, "INVALID_ARGUMENT", "UTF-8"},
      {"invalid UTF-8 in the path (encoded)", {Get("/api/v1/runs/%FF%FE")}, 400, "INVALID_ARGUMENT", "UTF-8"},
      {"invalid UTF-8 in a query value", {Get("/api/v1/runs?status=%E9t%E9")}, 400, "INVALID_ARGUMENT", "UTF-8"},
      {"URL of 70 KB", {Get("/api/v1/runs/" + std::string(70000, 'a'))}, 431, "TOO_LARGE", "65536"},
      // Headers and framing.
      {"invalid UTF-8 in a header",
       {Get("/api/v1/runs", "X-Note: caf\xe9\r\n")},
       400,
       "INVALID_ARGUMENT",
       "header 'X-Note' is not valid UTF-8"},
      {"invalid UTF-8 in Idempotency-Key",
       {Post("/api/v1/workflows/none/runs", "{}", "Idempotency-Key: k\xff\r\n")},
       400,
       "INVALID_ARGUMENT",
       "UTF-8"},
      {"HTTP/1.1 without Host", {"GET /api/v1/runs HTTP/1.1\r\n\r\n"}, 400, "INVALID_ARGUMENT", "Host"},
      {"headers of 70 KB", {Get("/api/v1/runs", "X-Big: " + std::string(70000, 'h') + "\r\n")}, 431, "TOO_LARGE", ""},
      {"header line without a colon",
       {"GET /api/v1/runs HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n"},
       400,
       "INVALID_ARGUMENT",
       "malformed HTTP"},
      {"Content-Length not a number",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nContent-Length: ten\r\n\r\n"},
       400,
       "INVALID_ARGUMENT",
       "malformed HTTP"},
      {"Transfer-Encoding other than chunked",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n{}"}, 400, "INVALID_ARGUMENT",
       "Transfer-Encoding 'gzip' is not supported"},
      {"two different Content-Lengths",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}}"},
       400,
       "INVALID_ARGUMENT",
       "malformed HTTP"},
      {"bad chunk size",
       {"POST " + wf + " HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"},
       400,
       "INVALID_ARGUMENT",
       "malformed HTTP"},
      {"not HTTP at all", {"HELLO THERE\r\n\r\n"}, 400, "INVALID_ARGUMENT", "malformed HTTP"},
      {"binary garbage",
       {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n"},
       400,
       "INVALID_ARGUMENT",
       ""},
      {"HTTP/2 preface", {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}, 505, "INVALID_ARGUMENT", "not supported"},
      {"HTTP/3.0 request line", {"GET /api/v1/runs HTTP/3.0\r\nHost: t\r\n\r\n"}, 505, "", "HTTP/3.0"},
      {"headers cut short (client half-closed)",
       {"GET /api/v1/runs HTTP/1.1\r\nHost: t\r\nX-A"},
       400,
       "INVALID_ARGUMENT",
       "ended before its headers",
       true},
  };
  std::printf("%zu malformed requests to agentflow serve on port %u:\n", cases.size(), server_->port());
  for (const Case& c : cases) {
    Check(c);
    ExpectServing();
  }
  // A normal request and a run afterwards.
  HttpResponse created =
      Fetch("POST", server_->api() + "/workflows", R"({"name": "after", "steps": [{"id": "a", "agent": "nobody"}]})");
  EXPECT_EQ(created.status, 201) << created.Describe();
  HttpResponse h = Fetch("GET", server_->url() + "/healthz");
  EXPECT_EQ(h.status, 200) << h.Describe();
}

TEST_F(BadInputE2E, PipelinedKeepAliveAndHttp10RequestsAreAllAnswered) {
  // Three requests in one write, the last closing: three answers, in order.
  std::string raw = RawExchange(server_->port(), {Get("/api/v1/runs?limit=1") + Get("/api/v1/nothing") +
                                                  Get("/healthz", "Connection: close\r\n")});
  std::vector<RawReply> replies = ParseReplies(raw);
  ASSERT_EQ(replies.size(), 3u) << raw;
  EXPECT_EQ(replies[0].status, 200);
  EXPECT_EQ(replies[1].status, 404);
  EXPECT_EQ(replies[1].body_json["error"]["code"], "NOT_FOUND");
  EXPECT_EQ(replies[2].status, 200);
  // A malformed request in a pipeline ends it: earlier ones are answered,
  // then the error, then the connection closes.
  raw = RawExchange(server_->port(), {Get("/api/v1/runs?limit=1") + "NOT HTTP\r\n\r\n" + Get("/healthz")});
  replies = ParseReplies(raw);
  ASSERT_EQ(replies.size(), 2u) << raw;
  EXPECT_EQ(replies[0].status, 200);
  EXPECT_EQ(replies[1].status, 400);
  // HTTP/1.0: no Host needed, the connection closes after the answer.
  raw = RawExchange(server_->port(), {"GET /api/v1/runs/run-nosuch HTTP/1.0\r\n\r\n"});
  replies = ParseReplies(raw);
  ASSERT_EQ(replies.size(), 1u) << raw;
  EXPECT_EQ(replies[0].head.rfind("HTTP/1.0 404", 0), 0u) << replies[0].head;
  EXPECT_EQ(replies[0].body_json["error"]["code"], "NOT_FOUND");
  ExpectServing();
}

TEST_F(BadInputE2E, SlowOrStalledClientsGet408AndDoNotHoldTheConnection) {
  // serve runs with --header-timeout 1 --body-timeout 1.
  struct Slow {
    std::string name;
    std::vector<std::string> parts;
    std::chrono::milliseconds pause;
    std::string says;
  };
  std::vector<std::string> trickle;
  for (char c : Get("/api/v1/runs", "X-Slow: 0123456789012345678901234567890123456789\r\n")) trickle.emplace_back(1, c);
  const std::vector<Slow> cases = {
      {"headers never finished",
       {"GET /api/v1/runs HTTP/1.1\r\nHost: t\r\n"},
       0ms,
       "headers did not arrive within 1000 ms"},
      {"headers trickled a byte every 30 ms", trickle, 30ms, "headers did not arrive"},
      {"body stalls",
       {"POST /api/v1/workflows HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{\"name\""},
       0ms,
       "body did not arrive within 1000 ms"},
  };
  for (const Slow& c : cases) {
    SCOPED_TRACE(c.name);
    auto t0 = Clock::now();
    std::string raw = RawExchange(server_->port(), c.parts, c.pause, false, 10s);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    std::vector<RawReply> replies = ParseReplies(raw);
    ASSERT_EQ(replies.size(), 1u) << c.name << ": " << raw;
    EXPECT_EQ(replies[0].status, 408) << raw;
    EXPECT_EQ(replies[0].body_json["error"]["code"], "DEADLINE_EXCEEDED") << raw;
    EXPECT_THAT(replies[0].body_json["error"]["message"].get<std::string>(), HasSubstr(c.says));
    EXPECT_LT(took, 6s) << "the server held the connection for " << took.count() << " ms";
    std::printf("  %-36s -> 408 after %lld ms, connection closed\n", c.name.c_str(),
                static_cast<long long>(took.count()));
    ExpectServing();
  }
  // Many stalled connections at once do not stop the server from serving.
  std::vector<std::thread> stalled;
  for (int i = 0; i < 20; ++i) {
    stalled.emplace_back(
        [port = server_->port()] { RawExchange(port, {"GET /api/v1/runs HTTP/1.1\r\n"}, 0ms, false, 10s); });
  }
  std::this_thread::sleep_for(200ms);
  ExpectServing();
  for (auto& t : stalled) t.join();
  ExpectServing();
}

}  // namespace
}  // namespace af::e2e
