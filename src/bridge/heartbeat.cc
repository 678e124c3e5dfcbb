#include "bridge/heartbeat.h"

#include <map>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log.h"
#include "http/http.h"

namespace af {

namespace asio = boost::asio;

Result<std::string> AgentBaseUrl(const std::string& url) {
  auto parsed = http::ParseUrl(url);
  if (!parsed.ok()) return parsed.status();
  return "http://" + parsed->host + ":" + std::to_string(parsed->port) + "/";
}

json RegistrationBody(const BridgedAgent& agent, int64_t timeout_ms) {
  return json{{"name", agent.name},
              {"transport", "kafka"},
              {"topic", agent.topic.empty() ? DefaultAgentTopic(agent.name) : agent.topic},
              {"timeout_ms", timeout_ms}};
}

RegistryHeartbeat::RegistryHeartbeat(asio::any_io_executor executor, std::vector<BridgedAgent> agents,
                                     HeartbeatOptions options)
    : executor_(std::move(executor)), agents_(std::move(agents)), options_(std::move(options)) {
  while (!options_.registry_url.empty() && options_.registry_url.back() == '/') options_.registry_url.pop_back();
}

RegistryHeartbeat::~RegistryHeartbeat() { Stop(); }

void RegistryHeartbeat::Start() {
  if (started_) return;
  started_ = true;
  asio::co_spawn(executor_, Loop(), [this](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::Error(std::string("bridge: the registry heartbeat loop failed: ") + ex.what());
      }
    }
    done_.set_value();
  });
}

void RegistryHeartbeat::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  asio::post(executor_, [this] { stop_signal_.Cancel("stopping"); });
  done_.get_future().wait_for(std::chrono::seconds(10));
}

HeartbeatStats RegistryHeartbeat::stats() const {
  HeartbeatStats s;
  s.registrations = registrations_.load();
  s.heartbeats = heartbeats_.load();
  s.probe_failures = probe_failures_.load();
  s.registry_errors = registry_errors_.load();
  return s;
}

asio::awaitable<void> RegistryHeartbeat::Loop() {
  http::ClientOptions co;
  co.max_body_bytes = 1 << 20;
  std::unique_ptr<http::Client> client = http::NewClient(executor_, co);
  std::map<std::string, bool> registered;  // by agent name
  std::map<std::string, std::string> last_problem;  // logged once until it changes
  auto report = [&](const std::string& agent, const std::string& problem) {
    if (last_problem[agent] == problem) return;
    last_problem[agent] = problem;
    if (!problem.empty()) log::Warn("bridge: " + problem, {"", "", agent});
  };
  const std::string api = options_.registry_url + "/api/v1/agents/";

  while (!stop_signal_.cancelled()) {
    for (const BridgedAgent& agent : agents_) {
      if (stop_signal_.cancelled()) break;
      if (options_.register_agents && !registered[agent.name]) {
        http::ClientRequest put;
        put.method = "PUT";
        put.url = api + agent.name;
        put.headers.emplace_back("Content-Type", "application/json");
        if (!options_.api_key.empty()) put.headers.emplace_back("Authorization", "Bearer " + options_.api_key);
        put.body = RegistrationBody(agent, options_.timeout_ms).dump();
        put.timeout = options_.probe_timeout;
        // Built in its own statement: g++ 12 destroys by-value arguments twice when
      // they are created in the same full-expression as co_await (PLATFORM-NOTES).
      asio::awaitable<Result<http::ClientResponse>> put_sent = client->Send(std::move(put), &stop_signal_);
      Result<http::ClientResponse> res = co_await std::move(put_sent);
        if (res.ok() && res->status >= 200 && res->status < 300) {
          registered[agent.name] = true;
          ++registrations_;
          log::Info("bridge: registered agent '" + agent.name + "' (kafka, topic " +
                        RegistrationBody(agent, 0)["topic"].get<std::string>() + ") with " + options_.registry_url,
                    {"", "", agent.name});
        } else {
          ++registry_errors_;
          report(agent.name, "registering agent '" + agent.name + "' with " + options_.registry_url + " failed: " +
                                 (res.ok() ? "HTTP " + std::to_string(res->status) + ": " + res->body
                                           : res.status().message()) +
                                 "; trying again every " + std::to_string(options_.interval.count()) + " ms");
          continue;
        }
      }

      // Is the HTTP agent's service up?
      Result<std::string> base = AgentBaseUrl(agent.url);
      if (!base.ok()) {
        report(agent.name, "agent '" + agent.name + "' has an unusable URL: " + base.status().message());
        continue;
      }
      http::ClientRequest probe;
      probe.method = "GET";
      probe.url = *base;
      probe.timeout = options_.probe_timeout;
      asio::awaitable<Result<http::ClientResponse>> probe_sent = client->Send(std::move(probe), &stop_signal_);
      Result<http::ClientResponse> alive = co_await std::move(probe_sent);
      if (stop_signal_.cancelled()) break;
      if (!alive.ok()) {
        ++probe_failures_;
        report(agent.name, "agent '" + agent.name + "' at " + *base + " does not answer (" + alive.status().message() +
                               "); no heartbeat is sent for it");
        continue;
      }

      http::ClientRequest beat;
      beat.method = "POST";
      beat.url = api + agent.name + "/heartbeat";
      beat.headers.emplace_back("Content-Type", "application/json");
      if (!options_.api_key.empty()) beat.headers.emplace_back("Authorization", "Bearer " + options_.api_key);
      beat.body = "{}";
      beat.timeout = options_.probe_timeout;
      asio::awaitable<Result<http::ClientResponse>> beat_sent = client->Send(std::move(beat), &stop_signal_);
      Result<http::ClientResponse> res = co_await std::move(beat_sent);
      if (res.ok() && res->status >= 200 && res->status < 300) {
        ++heartbeats_;
        report(agent.name, "");
      } else if (res.ok() && res->status == 404) {
        ++registry_errors_;
        registered[agent.name] = false;  // registered again next round, with --register
        report(agent.name, "the registry " + options_.registry_url + " does not know agent '" + agent.name + "'" +
                               (options_.register_agents ? "; registering it again"
                                                         : ". Hint: pass --register, or register it as a kafka agent"));
      } else {
        ++registry_errors_;
        report(agent.name, "heartbeat for agent '" + agent.name + "' to " + options_.registry_url + " failed: " +
                               (res.ok() ? "HTTP " + std::to_string(res->status) : res.status().message()));
      }
    }
    if (stop_signal_.cancelled()) break;
    asio::steady_timer timer(executor_);
    timer.expires_after(options_.interval);
    CancelRegistration wake(&stop_signal_, [&timer] { timer.cancel(); });
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace af
