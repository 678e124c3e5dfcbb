#include "registry/health_checker.h"

#include <atomic>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "common/log.h"
#include "common/time.h"
#include "http/http.h"

namespace af {
namespace {

namespace asio = boost::asio;

// What one GET of a health_url says.
AgentHealthUpdate Observe(const Agent& a, const Result<http::ClientResponse>& res, TimeMs at) {
  AgentHealthUpdate u;
  u.name = a.name;
  u.at = at;
  if (!res.ok()) {
    u.health = AgentHealth::kUnhealthy;
    u.error = "GET " + a.health_url + ": " + res.status().message();
  } else if (res->status < 200 || res->status > 299) {
    u.health = AgentHealth::kUnhealthy;
    u.error = "GET " + a.health_url + ": HTTP " + std::to_string(res->status);
  } else {
    u.health = AgentHealth::kHealthy;
  }
  return u;
}

class Checker final : public HealthChecker {
 public:
  Checker(Store* store, HealthCheckOptions o) : store_(store), options_(o) {
    if (options_.heartbeat_ttl.count() <= 0) options_.heartbeat_ttl = 3 * options_.interval;
  }
  ~Checker() override { Stop(); }

  void Start() override {
    if (thread_.joinable()) return;
    ioc_.restart();
    stopping_ = false;
    timer_ = std::make_unique<asio::steady_timer>(ioc_);
    asio::co_spawn(ioc_, Loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }

  void Stop() override {
    if (!thread_.joinable()) return;
    asio::post(ioc_, [this] {
      stopping_ = true;
      timer_->cancel();
    });
    thread_.join();
  }

  Status CheckOnce() override {
    asio::io_context ioc;
    Status out;
    asio::co_spawn(ioc, Round(ioc.get_executor()), [&](std::exception_ptr e, Status s) {
      out = e ? Status::Internal("health check round threw") : s;
    });
    ioc.run();
    return out;
  }

 private:
  asio::awaitable<void> Loop() {
    while (!stopping_) {
      Status s = co_await Round(ioc_.get_executor());
      if (!s.ok()) log::Warn("agent health check: " + s.message());
      if (stopping_) break;
      timer_->expires_after(options_.interval);
      boost::system::error_code ec;
      co_await timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  // Checks every agent concurrently; returns once all are recorded.
  asio::awaitable<Status> Round(asio::any_io_executor ex) {
    Result<std::vector<Agent>> agents = store_->ListAgents();
    if (!agents.ok()) co_return agents.status();
    auto pending = std::make_shared<int>(0);
    auto done = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
    auto first_error = std::make_shared<Status>();
    for (const Agent& a : *agents) {
      if (!a.health_url.empty()) {
        ++*pending;
        asio::co_spawn(ex, CheckUrl(ex, a), [this, pending, done, first_error](std::exception_ptr, Status s) {
          if (!s.ok() && first_error->ok()) *first_error = s;
          if (--*pending == 0) done->cancel();
        });
      } else {
        Status s = CheckHeartbeat(a);
        if (!s.ok() && first_error->ok()) *first_error = s;
      }
    }
    if (*pending > 0) {
      boost::system::error_code ec;
      co_await done->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return *first_error;
  }

  asio::awaitable<Status> CheckUrl(asio::any_io_executor ex, Agent a) {
    auto client = http::NewClient(ex);  // one connection per check: a health check also tests connecting
    http::ClientRequest req;
    req.url = a.health_url;
    req.timeout = options_.timeout;
    Result<http::ClientResponse> res = co_await client->Send(std::move(req));
    AgentHealthUpdate u = Observe(a, res, NowMs());
    if (u.health != a.health) {
      log::Info("agent '" + a.name + "' is " + ToString(u.health) + (u.error.empty() ? "" : ": " + u.error));
    }
    Status s = store_->RecordAgentHealth(u);
    if (s.code() == Code::kNotFound) s = Status::Ok();  // deleted meanwhile
    co_return s;
  }

  // A heartbeat-only agent that went quiet turns unhealthy.
  Status CheckHeartbeat(const Agent& a) {
    if (a.health != AgentHealth::kHealthy || !a.last_seen_at) return Status::Ok();
    TimeMs now = NowMs();
    if (now - *a.last_seen_at <= options_.heartbeat_ttl.count()) return Status::Ok();
    AgentHealthUpdate u;
    u.name = a.name;
    u.health = AgentHealth::kUnhealthy;
    u.at = now;
    u.error = "no heartbeat for " + std::to_string((now - *a.last_seen_at) / 1000) + " s (last at " +
              FormatIso8601(*a.last_seen_at) + ")";
    log::Info("agent '" + a.name + "' is unhealthy: " + u.error);
    Status s = store_->RecordAgentHealth(u);
    return s.code() == Code::kNotFound ? Status::Ok() : s;
  }

  Store* store_;
  HealthCheckOptions options_;
  asio::io_context ioc_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::thread thread_;
  bool stopping_ = false;  // on ioc_'s thread only
};

}  // namespace

std::unique_ptr<HealthChecker> NewHealthChecker(Store* store, HealthCheckOptions options) {
  return std::make_unique<Checker>(store, options);
}

}  // namespace af
