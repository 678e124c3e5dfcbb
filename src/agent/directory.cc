// AgentDirectory implementations: the store's `agents` table (embedded
// registry) and a fixed map (standalone executor).
#include <map>
#include <mutex>

#include "agent/agent.h"
#include "storage/store.h"

namespace af {

AgentEndpoint ToEndpoint(const Agent& a) {
  AgentEndpoint e;
  e.name = a.name;
  e.transport = a.transport;
  e.url = a.url;
  e.topic = a.topic;
  e.timeout_ms = a.timeout_ms;
  e.max_concurrency = a.max_concurrency;
  e.health = a.health;
  e.health_error = a.health_error;
  return e;
}

namespace {

// Thread-safe: the cache is behind a mutex (held for a map lookup, never
// across the store call); the Store is thread-safe.
class StoreAgentDirectory final : public AgentDirectory {
 public:
  StoreAgentDirectory(Store* store, StoreDirectoryOptions options) : store_(store), options_(std::move(options)) {}

  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    co_return Lookup(name);
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Cached {
    AgentEndpoint endpoint;
    Clock::time_point expires;
  };

  Result<AgentEndpoint> Lookup(const std::string& name) {
    const bool caching = options_.cache_ttl.count() > 0;
    Clock::time_point now{};
    if (caching) {
      now = options_.now();
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(name);
      if (it != cache_.end() && now < it->second.expires) return it->second.endpoint;
    }
    Result<AgentEndpoint> found = Read(name);
    if (caching && found.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cache_.size() >= kMaxCached) cache_.clear();  // bounded; names are few in practice
      cache_.insert_or_assign(name, Cached{*found, now + options_.cache_ttl});
    }
    return found;
  }

  Result<AgentEndpoint> Read(const std::string& name) {
    Result<Agent> agent = store_->GetAgent(name);
    if (!agent.ok()) {
      if (agent.status().code() == Code::kNotFound) {
        return Status::NotFound("agent '" + name +
                                "' is not registered. Hint: register it with POST /api/v1/agents or "
                                "'agentflow agent register --name " +
                                name + " --url URL'");
      }
      return agent.status();
    }
    return ToEndpoint(*agent);
  }

  static constexpr size_t kMaxCached = 10000;
  Store* store_;
  const StoreDirectoryOptions options_;
  std::mutex mu_;
  std::map<std::string, Cached> cache_;  // guarded by mu_
};

// Immutable after construction, hence thread-safe.
class StaticAgentDirectory final : public AgentDirectory {
 public:
  explicit StaticAgentDirectory(std::vector<AgentEndpoint> agents) {
    for (auto& a : agents) {
      std::string name = a.name;
      agents_.insert_or_assign(std::move(name), std::move(a));  // a later duplicate wins
    }
  }

  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    co_return Lookup(name);
  }

 private:
  Result<AgentEndpoint> Lookup(const std::string& name) const {
    auto it = agents_.find(name);
    if (it == agents_.end()) {
      std::string known;
      for (const auto& [n, a] : agents_) known += (known.empty() ? "" : ", ") + n;
      return Status::NotFound("agent '" + name + "' is not configured" +
                              (known.empty() ? std::string() : " (known: " + known + ")") +
                              ". Hint: pass --agent " + name + "=URL to the executor");
    }
    return it->second;
  }

  std::map<std::string, AgentEndpoint> agents_;
};

class LayeredAgentDirectory final : public AgentDirectory {
 public:
  LayeredAgentDirectory(std::unique_ptr<AgentDirectory> first, std::unique_ptr<AgentDirectory> second)
      : first_(std::move(first)), second_(std::move(second)) {}
  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    Result<AgentEndpoint> r = co_await first_->Resolve(name);
    if (r.ok() || r.status().code() != Code::kNotFound) co_return r;
    Result<AgentEndpoint> second = co_await second_->Resolve(name);
    co_return second;
  }

 private:
  std::unique_ptr<AgentDirectory> first_, second_;
};

}  // namespace

std::unique_ptr<AgentDirectory> NewLayeredAgentDirectory(std::unique_ptr<AgentDirectory> first,
                                                         std::unique_ptr<AgentDirectory> second) {
  return std::make_unique<LayeredAgentDirectory>(std::move(first), std::move(second));
}

std::unique_ptr<AgentDirectory> NewStoreAgentDirectory(Store* store, StoreDirectoryOptions options) {
  return std::make_unique<StoreAgentDirectory>(store, std::move(options));
}

std::unique_ptr<AgentDirectory> NewStaticAgentDirectory(std::vector<AgentEndpoint> agents) {
  return std::make_unique<StaticAgentDirectory>(std::move(agents));
}

}  // namespace af
