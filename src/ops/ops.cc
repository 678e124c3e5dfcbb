#include "ops/ops.h"

#include <atomic>
#include <chrono>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log.h"

namespace af::ops {

namespace asio = boost::asio;

namespace {

// How often a waiting /readyz looks whether its round of checks is done, and
// the longest it waits (every probe bounds its own wait well below this).
constexpr auto kReadyPoll = std::chrono::milliseconds(5);
constexpr auto kReadyCap = std::chrono::seconds(15);

}  // namespace

bool Readiness::ready() const {
  for (const auto& [name, s] : results) {
    if (!s.ok()) return false;
  }
  return true;
}

nlohmann::json Readiness::ToJson() const {
  nlohmann::json checks = nlohmann::json::object();
  nlohmann::json down = nlohmann::json::array();
  for (const auto& [name, s] : results) {
    checks[name] = s.ok() ? std::string("ok") : s.message();
    if (!s.ok()) down.push_back(name);
  }
  return {{"status", ready() ? "ok" : "unavailable"}, {"checks", checks}, {"down", down}};
}

Readiness RunChecks(const std::vector<Check>& checks) {
  Readiness r;
  for (const Check& c : checks) {
    Status s;
    try {
      s = c.probe ? c.probe() : Status::Internal("no probe");
    } catch (const std::exception& e) {
      s = Status::Internal(std::string("the check threw: ") + e.what());
    } catch (...) {
      s = Status::Internal("the check threw");
    }
    r.results.emplace_back(c.name, std::move(s));
  }
  return r;
}

Check HttpCheck(std::string name, std::string url, std::chrono::milliseconds timeout) {
  std::string what = name;
  return Check{std::move(name), [url = std::move(url), timeout, what]() -> Status {
                 http::ClientRequest req;
                 req.url = url;
                 req.timeout = timeout;
                 auto res = http::FetchSync(req);
                 if (!res.ok()) return Status::Unavailable(what + " at " + url + ": " + res.status().message());
                 if (res->status < 200 || res->status >= 300) {
                   return Status::Unavailable(what + " at " + url + " answered HTTP " + std::to_string(res->status));
                 }
                 return Status::Ok();
               }};
}

struct Endpoints::Round {
  std::atomic<bool> done{false};
  Readiness result;  // written before done is set
};

Endpoints::Endpoints(metrics::Registry* registry, EndpointsOptions options)
    : registry_(registry), options_(std::move(options)), http_metrics_(*registry) {
  checker_ = std::thread([this] { CheckLoop(); });
}

Endpoints::~Endpoints() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (checker_.joinable()) checker_.join();
}

std::shared_ptr<Endpoints::Round> Endpoints::StartRound() {
  std::shared_ptr<Round> round;
  {
    std::lock_guard lock(mu_);
    // Join the round that has not started yet, so its results are fresh for
    // every request waiting on it; never one already under way.
    if (!next_) next_ = std::make_shared<Round>();
    round = next_;
  }
  cv_.notify_all();
  return round;
}

void Endpoints::CheckLoop() {
  while (true) {
    std::shared_ptr<Round> round;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || next_ != nullptr; });
      if (stop_) return;
      round = std::move(next_);
    }
    round->result = RunChecks(options_.checks);
    round->done.store(true, std::memory_order_release);
    if (!round->result.ready()) {
      log::Debug("readiness: " + round->result.ToJson().dump());
    }
  }
}

asio::awaitable<http::Response> Endpoints::Ready() {
  std::shared_ptr<Round> round = StartRound();
  // The checker thread only writes `round`; this coroutine looks at it on a
  // timer. Nothing is posted to the server's io_context from another thread,
  // so stopping the server while a check runs is safe.
  asio::steady_timer timer(co_await asio::this_coro::executor);
  auto deadline = std::chrono::steady_clock::now() + kReadyCap;
  while (!round->done.load(std::memory_order_acquire)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return http::JsonResponse(503, {{"status", "unavailable"},
                                         {"checks", nlohmann::json::object()},
                                         {"down", nlohmann::json::array()},
                                         {"error", "the readiness checks did not finish in time"}});
    }
    timer.expires_after(kReadyPoll);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return http::JsonResponse(round->result.http_status(), round->result.ToJson());
}

void Endpoints::Register(http::Router& router) {
  router.Add("GET", "/healthz", [this](http::Request&) -> asio::awaitable<http::Response> {
    nlohmann::json body = {{"status", "ok"}};
    if (options_.health_details) {
      nlohmann::json extra = options_.health_details();
      if (extra.is_object()) {
        for (auto& [k, v] : extra.items()) {
          if (k != "status") body[k] = v;
        }
      }
    }
    co_return http::JsonResponse(200, body);
  });
  router.Add("GET", "/readyz", [this](http::Request&) -> asio::awaitable<http::Response> { return Ready(); });
  router.Add("GET", "/metrics", [this](http::Request&) -> asio::awaitable<http::Response> {
    http::Response res;
    res.status = 200;
    res.content_type = metrics::kContentType;
    res.body = registry_->Render();
    co_return res;
  });
}

http::Handler Endpoints::Instrument(http::Handler inner) {
  return [this, inner = std::move(inner)](http::Request& req) -> asio::awaitable<http::Response> {
    auto start = std::chrono::steady_clock::now();
    std::exception_ptr failure;
    http::Response res;
    try {
      asio::awaitable<http::Response> call = inner(req);
      http::Response out = co_await std::move(call);
      res = std::move(out);
    } catch (...) {
      failure = std::current_exception();  // the server answers 500 and logs it
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    http_metrics_.Observe(req.method, req.route, failure ? 500 : res.status, seconds);
    if (failure) std::rethrow_exception(failure);
    co_return res;
  };
}

}  // namespace af::ops
