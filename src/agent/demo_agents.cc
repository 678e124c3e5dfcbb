// Sample agents on one http::Server (one io thread). Each is a plain
// coroutine handler speaking the agent protocol (see agent.h).
#include "agent/demo_agents.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <unordered_map>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/json_limits.h"
#include "http/http.h"

namespace af {

namespace {

namespace asio = boost::asio;
using http::JsonError;
using http::JsonResponse;
using http::Request;
using http::Response;

constexpr int64_t kMaxSleepMs = 10 * 60 * 1000;  // sleep's cap on input.ms
constexpr size_t kMaxFlakyKeys = 100000;         // bound on flaky's memory

// Agent input from a protocol body, or the 400 to send.
bool ParseInput(const Request& req, json& input, Response& error) {
  json body = JsonNestingDepth(req.body) > kMaxJsonDepth ? json(json::value_t::discarded)
                                                          : json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    error = JsonError(400, "INVALID_ARGUMENT",
                      "request body is not a JSON object. Hint: send the agent protocol body "
                      "{\"run_id\": ..., \"step_id\": ..., \"attempt\": ..., \"input\": ...}");
    return false;
  }
  auto it = body.find("input");
  input = it == body.end() ? json() : *it;
  return true;
}

// input[name] when input is an object holding it, else null.
const json& Field(const json& input, const char* name) {
  static const json kNull;
  if (!input.is_object()) return kNull;
  auto it = input.find(name);
  return it == input.end() ? kNull : *it;
}

std::string UrlHost(const std::string& host) {
  if (host.empty() || host == "0.0.0.0" || host == "*") return "127.0.0.1";
  if (host == "::") return "[::1]";
  if (host.find(':') != std::string::npos) return "[" + host + "]";
  return host;
}

// Thread-safety: Start/Stop/Records from one thread; handlers run on the
// server's io thread, flaky's counters are behind a mutex.
class DemoAgentsImpl final : public DemoAgents {
 public:
  Status Start(const std::string& host, uint16_t port) {
    AddRoutes();
    http::ServerOptions opts;
    opts.host = host;
    opts.port = port;
    opts.threads = 1;
    auto server = http::StartServer(opts, router_.AsHandler());
    if (!server.ok()) return server.status();
    server_ = std::move(*server);
    port_ = server_->port();
    base_url_ = "http://" + UrlHost(host) + ":" + std::to_string(port_);
    return Status::Ok();
  }

  ~DemoAgentsImpl() override { Stop(); }

  uint16_t port() const override { return port_; }
  std::string base_url() const override { return base_url_; }

  std::vector<Agent> Records() const override {
    struct Spec {
      const char* name;
      const char* description;
      int64_t timeout_ms;
    };
    static constexpr Spec kSpecs[] = {
        {"echo", "returns {\"echo\": input}; with input.echo_headers (a list of names) also those request headers",
         30000},
        {"upper", "returns {\"text\": input.text in upper case}", 30000},
        {"sleep",
         "waits input.ms milliseconds (no thread held), then returns {\"slept_ms\": ms}; with input.count_calls "
         "also the Idempotency-Key and how many calls carried it",
         600000},
        {"fail", "always fails: HTTP 500, or 400 when input.permanent is true", 30000},
        {"flaky", "fails with 503 the first input.failures attempts per Idempotency-Key, then succeeds", 30000},
    };
    std::vector<Agent> out;
    for (const Spec& s : kSpecs) {
      Agent a;
      a.name = s.name;
      a.url = base_url_ + "/agents/" + s.name;
      a.health_url = base_url_ + "/healthz";
      a.timeout_ms = s.timeout_ms;
      a.max_concurrency = 0;
      a.metadata = {{"demo", true}, {"description", s.description}};
      out.push_back(std::move(a));
    }
    return out;
  }

  void Stop() override {
    if (server_) server_->Stop();
  }

 private:
  void AddRoutes() {
    router_.Add("GET", "/healthz", [](Request&) -> asio::awaitable<Response> {
      co_return JsonResponse(200, {{"status", "ok"}});
    });

    router_.Add("POST", "/agents/echo", [](Request& req) -> asio::awaitable<Response> {
      json input;
      Response error;
      if (!ParseInput(req, input, error)) co_return error;
      json out = {{"echo", input}};
      // input.echo_headers: ["traceparent", ...] also returns those request
      // headers (null when absent), so a test can see what the agent got.
      const json& names = Field(input, "echo_headers");
      if (names.is_array()) {
        json headers = json::object();
        for (const json& n : names) {
          if (!n.is_string()) continue;
          std::string v = req.Header(n.get<std::string>());
          headers[n.get<std::string>()] = v.empty() ? json(nullptr) : json(v);
        }
        out["headers"] = headers;
      }
      co_return JsonResponse(200, out);
    });

    router_.Add("POST", "/agents/upper", [](Request& req) -> asio::awaitable<Response> {
      json input;
      Response error;
      if (!ParseInput(req, input, error)) co_return error;
      const json& text = Field(input, "text");
      if (!text.is_string()) {
        co_return JsonError(400, "INVALID_ARGUMENT", "upper needs input.text, a string. Hint: {\"text\": \"hello\"}");
      }
      std::string s = text.get<std::string>();
      for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));  // ASCII only: UTF-8 safe
      co_return JsonResponse(200, {{"text", s}});
    });

    router_.Add("POST", "/agents/sleep", [this](Request& req) -> asio::awaitable<Response> {
      json input;
      Response error;
      if (!ParseInput(req, input, error)) co_return error;
      const json& ms_field = Field(input, "ms");
      if (!ms_field.is_null() && !ms_field.is_number()) {
        co_return JsonError(400, "INVALID_ARGUMENT", "sleep needs input.ms, a number of milliseconds");
      }
      double requested = ms_field.is_number() ? ms_field.get<double>() : 0.0;
      auto ms = static_cast<int64_t>(std::clamp(requested, 0.0, static_cast<double>(kMaxSleepMs)));
      // A timer, not a thread: thousands of sleeps cost nothing.
      asio::steady_timer timer(co_await asio::this_coro::executor);
      timer.expires_after(std::chrono::milliseconds(ms));
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      json out = {{"slept_ms", ms}};
      const json& count = Field(input, "count_calls");
      if (count.is_boolean() && count.get<bool>()) {
        // Lets a test see that a call cut off by a crash is made again with the same key.
        std::string key = req.Header("Idempotency-Key");
        out["idempotency_key"] = key;
        out["calls"] = NextAttempt("sleep:" + key);
      }
      co_return JsonResponse(200, out);
    });

    router_.Add("POST", "/agents/fail", [](Request& req) -> asio::awaitable<Response> {
      json input;
      Response error;
      if (!ParseInput(req, input, error)) co_return error;
      const json& permanent = Field(input, "permanent");
      const json& message = Field(input, "message");
      std::string text = message.is_string() ? message.get<std::string>() : "demo agent 'fail' failed on purpose";
      int status = permanent.is_boolean() && permanent.get<bool>() ? 400 : 500;
      co_return JsonResponse(status, {{"error", text}});
    });

    router_.Add("POST", "/agents/flaky", [this](Request& req) -> asio::awaitable<Response> {
      json input;
      Response error;
      if (!ParseInput(req, input, error)) co_return error;
      const json& f = Field(input, "failures");
      int64_t failures = f.is_number_integer() && f.get<int64_t>() >= 0 ? f.get<int64_t>() : 1;
      std::string key = req.Header("Idempotency-Key");
      int64_t attempt = NextAttempt(key);
      if (attempt <= failures) {
        co_return JsonResponse(503, {{"error", "flaky failure " + std::to_string(attempt) + " of " +
                                                   std::to_string(failures) + " for key '" + key + "'"},
                                     {"attempts", attempt}});
      }
      co_return JsonResponse(200, {{"attempts", attempt}, {"input", input}});
    });
  }

  int64_t NextAttempt(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    if (attempts_.size() >= kMaxFlakyKeys && attempts_.find(key) == attempts_.end()) attempts_.clear();
    return ++attempts_[key];
  }

  http::Router router_;  // declared before server_: the server stops first
  std::unique_ptr<http::Server> server_;
  uint16_t port_ = 0;
  std::string base_url_;

  std::mutex mu_;  // guards attempts_
  std::unordered_map<std::string, int64_t> attempts_;
};

}  // namespace

Result<std::unique_ptr<DemoAgents>> StartDemoAgents(const std::string& host, uint16_t port) {
  auto agents = std::make_unique<DemoAgentsImpl>();
  AF_RETURN_IF_ERROR(agents->Start(host, port));
  return std::unique_ptr<DemoAgents>(std::move(agents));
}

}  // namespace af
