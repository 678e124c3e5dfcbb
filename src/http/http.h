// HTTP/1.1 server and client on Boost.Beast (async, C++20 coroutines).
// Beast itself is included only by server.cc and client.cc: this header
// exposes plain request/response values and Asio awaitables.
//
// Why Beast: measured here it serves 60–90k small JSON requests/s on
// loopback with one thread and no thread per connection or per call, which
// the executor needs for agent calls that may take minutes (see
// docs/architecture.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/cancel.h"
#include <nlohmann/json.hpp>

#include "common/status.h"

namespace af::http {

namespace asio = boost::asio;

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive lookup; "" if absent.
std::string FindHeader(const Headers& headers, std::string_view name);

struct Request {
  std::string method;  // "GET", "POST", ... as sent
  std::string target;  // raw request target, e.g. "/api/v1/runs?limit=5"
  std::string path;    // percent-decoded path without the query
  std::map<std::string, std::string> query;        // percent-decoded
  std::map<std::string, std::string> path_params;  // filled by Router
  // The pattern of the route that matched ("/api/v1/runs/{run_id}"), set by
  // Router::Dispatch; "" when none did. Points into the router, which
  // outlives its requests.
  std::string_view route;
  Headers headers;
  std::string body;
  std::string remote;  // peer address, for logs

  std::string Header(std::string_view name) const { return FindHeader(headers, name); }
};

// Sends the parts of a streamed response body as they are produced.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // Sends `data` now (one chunk). False once the client is gone or the
  // server is stopping: the producer should return.
  virtual asio::awaitable<bool> Write(std::string data) = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;
  std::string body;
  // A streamed body (server-sent events): when set, `body` is ignored. The
  // server sends the status and headers (chunked framing on HTTP/1.1; on
  // HTTP/1.0 the end of the body is the connection's close), then runs
  // `stream` until it returns, then ends the body. A HEAD request gets the
  // headers only. Writes have the server's idle timeout, so a client that
  // stops reading fails them.
  std::function<asio::awaitable<void>(StreamWriter&)> stream;
};

// {"error": {"code": code, "message": message, "details": details?}}
Response JsonError(int status, std::string_view code, std::string_view message,
                   const nlohmann::json& details = nullptr);
Response JsonResponse(int status, const nlohmann::json& body);
// A body that is JSON text already (its own name: a std::string passed to
// JsonResponse would otherwise stop meaning a JSON string value).
Response JsonTextResponse(int status, std::string json_text);

using Handler = std::function<asio::awaitable<Response>(Request&)>;

// Maps "METHOD /path/{param}/..." to handlers. Unknown paths get a JSON 404,
// known paths with another method a JSON 405 with an Allow header.
// Not thread-safe to modify; safe to Dispatch concurrently once built.
class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler);
  asio::awaitable<Response> Dispatch(Request& req) const;
  // As a Handler for Server. The router must outlive the server.
  Handler AsHandler() const;

  // Runs for every request that matched a route (req.route and path_params
  // are set), before its handler; a response it returns is sent instead of
  // calling the handler. Access control installs itself here
  // (api/auth_guard.h), so no handler checks permissions. Like a handler it
  // may co_await; it must not block the io thread (the auth guard reads the
  // request's key off it). Set during setup only.
  using Guard = std::function<asio::awaitable<std::optional<Response>>(const Request&)>;
  void SetGuard(Guard guard) { guard_ = std::move(guard); }

 private:
  struct Route {
    std::string method;
    std::string pattern;                // as given to Add
    std::vector<std::string> segments;  // "{name}" marks a parameter
    Handler handler;
  };
  std::vector<Route> routes_;
  Guard guard_;
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // bind address
  uint16_t port = 0;               // 0: pick a free port
  int threads = 1;                 // io threads; 1 is fastest on 2 cores
  size_t max_body_bytes = 1 << 20; // larger bodies get a JSON 413
  std::chrono::seconds idle_timeout{60};  // keep-alive connections idle this long are closed
  // From the first byte of a request to the end of its headers, and then to
  // the end of its body; past either the client gets a JSON 408 and the
  // connection is closed, so a slow or stalled client cannot hold a
  // connection. Headers come in one packet from any real client; 60 s lets a
  // 1 MiB body through a 150 kbit/s link.
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
};

// Serves `handler` until Stop() or destruction. Each connection is served
// by one coroutine on its own strand; handlers may co_await (e.g. long-poll).
// Bad requests never reach the handler; they get a JSON error and the
// connection is closed: malformed HTTP, a request cut short, an HTTP/1.1
// request without Host, invalid UTF-8 in the target, a decoded path or query
// value, or a header value: 400; header or body timeout: 408; body over
// max_body_bytes: 413; headers over 64 KiB: 431; an HTTP version other than
// 1.0 and 1.1: 505. A handler that throws gets a JSON 500 and the server
// keeps serving. Thread-safety: Start/Stop from one thread, not
// from an io thread (a handler).
// Stop() does not wait for handlers: one still suspended (long-poll, timer)
// is destroyed without being resumed, so what handlers reference must outlive
// Stop().
class Server {
 public:
  virtual ~Server() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting, closes connections and joins the io threads.
  virtual void Stop() = 0;
  // The io_context executor (for timers in handlers, co_spawn). Valid until
  // Stop(); empty afterwards.
  virtual asio::any_io_executor executor() = 0;
};

Result<std::unique_ptr<Server>> StartServer(const ServerOptions& options, Handler handler);

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // "http://host:port/path?query" (http only)
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{30000};  // whole exchange incl. connect
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
  std::string Header(std::string_view name) const { return FindHeader(headers, name); }
};

struct ClientOptions {
  size_t max_body_bytes = 16 << 20;   // larger responses fail with TooLarge
  size_t max_idle_per_host = 256;     // keep-alive connections kept per host:port
  // The executor runs one handler at a time (an io_context run by one
  // thread) and Send is awaited on it: each exchange then runs in the
  // caller's coroutine instead of on a strand of its own, two trips through
  // the scheduler fewer per request (docs/benchmarks.md item 42).
  bool one_thread = false;
};

// An async client with keep-alive connection reuse per host:port.
// Errors: Unavailable (connect refused/reset, malformed response, server
// closed the connection), DeadlineExceeded (timeout), Cancelled (the signal
// fired), TooLarge (body over max_body_bytes), InvalidArgument (bad URL).
// Not thread-safe: use one Client from its executor only.
class Client {
 public:
  virtual ~Client() = default;
  // `cancel` (optional) aborts the exchange by closing its connection.
  virtual asio::awaitable<Result<ClientResponse>> Send(ClientRequest req, CancelSignal* cancel = nullptr) = 0;
};

std::unique_ptr<Client> NewClient(asio::any_io_executor executor, const ClientOptions& options = {});

// Blocking convenience for the CLI and tests (runs a private io_context).
Result<ClientResponse> FetchSync(const ClientRequest& req);

// Blocking, for a streamed response (server-sent events): hands the body to
// `on_data` as it arrives until the body ends or on_data returns false.
// `req.timeout` bounds each wait for data (connect, headers, every read), not
// the whole exchange. Returns the status and headers; for a non-2xx status
// the body (up to 1 MiB) is in `body` and on_data is not called.
Result<ClientResponse> StreamSync(const ClientRequest& req, const std::function<bool(std::string_view)>& on_data);

// Splits "http://host:port/path?q" into parts; InvalidArgument otherwise.
struct Url {
  std::string host;
  uint16_t port = 80;
  std::string target = "/";  // path and query
};
Result<Url> ParseUrl(const std::string& url);

// Percent-decoding and query-string parsing used by the server (exposed for tests).
std::optional<std::string> PercentDecode(std::string_view s);
// Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points
// above U+10FFFF).
bool IsValidUtf8(std::string_view s);
std::map<std::string, std::string> ParseQuery(std::string_view query);

}  // namespace af::http
