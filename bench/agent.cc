// af-bench-agent: the agents the benchmarks call, on the project's own HTTP
// server library (src/http, Boost.Beast, one io thread, keep-alive).
//
//   POST /noop           answers {"ok":true} at once (the body is not parsed)
//   POST /sleep?ms=N     answers {"slept_ms":N} after N ms (a timer; no thread held)
//   GET  /healthz        200
//
// Usage: af-bench-agent --port P [--threads 1]
// Binds 127.0.0.1 only; prints "af-bench-agent listening on PORT" and runs
// until SIGTERM/SIGINT.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/http.h"

namespace {

namespace asio = boost::asio;
using af::http::Request;
using af::http::Response;

Response Ok(std::string body) {
  Response r;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
    else if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: af-bench-agent --port P [--threads N]\n");
      return 2;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // the io threads inherit the mask

  af::http::Router router;
  router.Add("GET", "/healthz", [](Request&) -> asio::awaitable<Response> { co_return Ok("{\"status\":\"ok\"}"); });
  router.Add("POST", "/noop", [](Request&) -> asio::awaitable<Response> { co_return Ok("{\"ok\":true}"); });
  router.Add("POST", "/sleep", [](Request& req) -> asio::awaitable<Response> {
    long ms = 2000;
    auto it = req.query.find("ms");
    if (it != req.query.end()) ms = std::strtol(it->second.c_str(), nullptr, 10);
    if (ms < 0 || ms > 600000) ms = 2000;
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(ms));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::string body = "{\"slept_ms\":" + std::to_string(ms) + "}";
    co_return Ok(std::move(body));
  });

  af::http::ServerOptions opts;
  opts.host = "127.0.0.1";
  opts.port = static_cast<uint16_t>(port);
  opts.threads = threads;
  auto server = af::http::StartServer(opts, router.AsHandler());
  if (!server.ok()) {
    std::fprintf(stderr, "af-bench-agent: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("af-bench-agent listening on %u\n", static_cast<unsigned>((*server)->port()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  (*server)->Stop();
  return 0;
}
