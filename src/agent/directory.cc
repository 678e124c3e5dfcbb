// AgentDirectory implementations: the store's `agents` table (embedded
// registry) and a fixed map (standalone executor).
#include <map>

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

// Thread-safe as far as the Store is (every Store is).
class StoreAgentDirectory final : public AgentDirectory {
 public:
  explicit StoreAgentDirectory(Store* store) : store_(store) {}

  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    co_return Lookup(name);
  }

 private:
  Result<AgentEndpoint> Lookup(const std::string& name) {
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

  Store* store_;
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

std::unique_ptr<AgentDirectory> NewStoreAgentDirectory(Store* store) {
  return std::make_unique<StoreAgentDirectory>(store);
}

std::unique_ptr<AgentDirectory> NewStaticAgentDirectory(std::vector<AgentEndpoint> agents) {
  return std::make_unique<StaticAgentDirectory>(std::move(agents));
}

}  // namespace af
