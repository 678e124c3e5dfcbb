// AgentDirectory over the registry service's HTTP API, with a short cache.
#include <chrono>
#include <map>

#include <boost/asio/use_awaitable.hpp>

#include "agent/agent.h"
#include "common/log.h"
#include "http/http.h"

namespace af {

Result<AgentEndpoint> EndpointFromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("an agent record must be a JSON object");
  auto str = [&](const char* f) -> std::string {
    auto it = j.find(f);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  AgentEndpoint e;
  e.name = str("name");
  if (e.name.empty()) return Status::InvalidArgument("the agent record has no name");
  auto transport = ParseAgentTransport(str("transport").empty() ? "http" : str("transport"));
  if (!transport) return Status::InvalidArgument("agent '" + e.name + "' has an unknown transport");
  e.transport = *transport;
  e.url = str("url");
  e.topic = str("topic");
  if (e.transport == AgentTransport::kHttp && e.url.empty()) {
    return Status::InvalidArgument("http agent '" + e.name + "' has no url");
  }
  if (e.transport == AgentTransport::kKafka && e.topic.empty()) e.topic = DefaultAgentTopic(e.name);
  auto t = j.find("timeout_ms");
  if (t != j.end() && t->is_number_integer() && t->get<int64_t>() > 0) e.timeout_ms = t->get<int64_t>();
  auto c = j.find("max_concurrency");
  if (c != j.end() && c->is_number_integer() && c->get<int64_t>() >= 0 && c->get<int64_t>() <= 1000000) {
    e.max_concurrency = c->get<int>();
  }
  e.health = ParseAgentHealth(str("health")).value_or(AgentHealth::kUnknown);
  e.health_error = str("health_error");
  return e;
}

namespace {

using Clock = std::chrono::steady_clock;

// Used from one executor (the engine's), like the http::Client it holds.
class RegistryAgentDirectory final : public AgentDirectory {
 public:
  RegistryAgentDirectory(boost::asio::any_io_executor ex, RegistryDirectoryOptions o)
      : client_(http::NewClient(std::move(ex))), options_(std::move(o)) {
    while (!options_.registry_url.empty() && options_.registry_url.back() == '/') options_.registry_url.pop_back();
  }

  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    auto now = Clock::now();
    auto it = cache_.find(name);
    if (it != cache_.end() && now - it->second.fetched < options_.cache_ttl) co_return it->second.value;

    http::ClientRequest req;
    req.url = options_.registry_url + "/api/v1/agents/" + name;  // names are id-like: no escaping needed
    req.timeout = options_.request_timeout;
    if (!options_.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + options_.api_key);
    Result<http::ClientResponse> res = co_await client_->Send(std::move(req));
    Result<AgentEndpoint> value = Interpret(name, res);
    if (!value.ok() && value.status().code() == Code::kUnavailable) {
      // The registry is unreachable: keep using what it said last.
      if (it != cache_.end() && it->second.value.ok()) {
        log::Debug("agent registry unreachable; using the cached record of '" + name + "': " +
                   value.status().message());
        co_return it->second.value;
      }
      co_return value;
    }
    if (cache_.size() >= kMaxEntries && it == cache_.end()) cache_.clear();
    cache_.insert_or_assign(name, Entry{value, Clock::now()});
    co_return value;
  }

 private:
  static constexpr size_t kMaxEntries = 10000;
  struct Entry {
    Result<AgentEndpoint> value;
    Clock::time_point fetched;
  };

  Result<AgentEndpoint> Interpret(const std::string& name, const Result<http::ClientResponse>& res) const {
    const std::string& base = options_.registry_url;
    if (!res.ok()) {
      return Status::Unavailable("the agent registry at " + base + " is unreachable: " + res.status().message());
    }
    if (res->status == 404) {
      return Status::NotFound("agent '" + name + "' is not registered in the agent registry at " + base +
                              ". Hint: agentflow agent register --registry " + base + " --name " + name +
                              " --url URL");
    }
    if (res->status != 200) {
      return Status::Unavailable("the agent registry at " + base + " answered HTTP " + std::to_string(res->status) +
                                 " for agent '" + name + "'");
    }
    json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
    Result<AgentEndpoint> e = EndpointFromJson(body);
    if (!e.ok()) {
      return Status::Unavailable("the agent registry at " + base + " sent an unusable record for '" + name +
                                 "': " + e.status().message());
    }
    return e;
  }

  std::unique_ptr<http::Client> client_;
  RegistryDirectoryOptions options_;
  std::map<std::string, Entry> cache_;
};

}  // namespace

std::unique_ptr<AgentDirectory> NewRegistryAgentDirectory(boost::asio::any_io_executor executor,
                                                          RegistryDirectoryOptions options) {
  return std::make_unique<RegistryAgentDirectory>(std::move(executor), std::move(options));
}

}  // namespace af
