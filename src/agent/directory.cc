// AgentDirectory implementations: the store's `agents` table (embedded
// registry) and a fixed map (standalone executor).
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

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
  StoreAgentDirectory(Store* store, StoreDirectoryOptions options) : store_(store), options_(std::move(options)) {
    if (options_.read_off_thread) reader_ = std::make_unique<boost::asio::thread_pool>(1);
  }
  ~StoreAgentDirectory() override {
    if (reader_) reader_->join();  // a read in progress still resumes its callers
  }

  boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) override {
    if (!reader_) co_return Lookup(name);
    if (std::optional<AgentEndpoint> hit = CachedEndpoint(name)) co_return std::move(*hit);
    // A miss: join the read in flight for this name, or start one.
    auto ex = co_await boost::asio::this_coro::executor;
    std::shared_ptr<Flight> flight;
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::shared_ptr<Flight>& f = flights_[name];
      if (!f) {
        f = std::make_shared<Flight>();
        first = true;
      }
      flight = f;
    }
    auto wait = [&](auto handler) {
      auto h = std::make_shared<decltype(handler)>(std::move(handler));
      // Tracked: the caller's loop does not run out of work (and its owner
      // may not destroy it) until the reader thread is done posting.
      auto tracked = boost::asio::prefer(ex, boost::asio::execution::outstanding_work.tracked);
      std::function<void()> resume = [tracked, h] { boost::asio::post(tracked, [h] { std::move (*h)(); }); };
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (!flight->result) {
          flight->waiters.push_back(std::move(resume));
          resume = nullptr;
        }
      }
      if (resume) resume();  // the read ended meanwhile
      if (first) boost::asio::post(*reader_, [this, name, flight] { Fill(name, flight); });
    };
    co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(wait,
                                                                                        boost::asio::use_awaitable);
    Result<AgentEndpoint> out = *flight->result;  // set before any waiter was resumed
    co_return out;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Cached {
    AgentEndpoint endpoint;
    Clock::time_point expires;
  };
  // One read of a name's record and the callers waiting for it.
  struct Flight {
    std::optional<Result<AgentEndpoint>> result;  // guarded by mu_
    std::vector<std::function<void()>> waiters;   // guarded by mu_
  };

  bool Caching() const { return options_.cache_ttl.count() > 0; }

  std::optional<AgentEndpoint> CachedEndpoint(const std::string& name) {
    if (!Caching()) return std::nullopt;
    const Clock::time_point now = options_.now();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(name);
    if (it != cache_.end() && now < it->second.expires) return it->second.endpoint;
    return std::nullopt;
  }

  // Caches what was found (the caller holds mu_).
  void Remember(const std::string& name, const Result<AgentEndpoint>& found, Clock::time_point now) {
    if (!Caching() || !found.ok()) return;
    if (cache_.size() >= kMaxCached) cache_.clear();  // bounded; names are few in practice
    cache_.insert_or_assign(name, Cached{*found, now + options_.cache_ttl});
  }

  Result<AgentEndpoint> Lookup(const std::string& name) {
    if (std::optional<AgentEndpoint> hit = CachedEndpoint(name)) return std::move(*hit);
    const Clock::time_point now = Caching() ? options_.now() : Clock::time_point{};
    Result<AgentEndpoint> found = Read(name);
    std::lock_guard<std::mutex> lock(mu_);
    Remember(name, found, now);
    return found;
  }

  // On the reader thread: reads `name`, caches it, resumes every waiter.
  void Fill(const std::string& name, const std::shared_ptr<Flight>& flight) {
    const Clock::time_point now = Caching() ? options_.now() : Clock::time_point{};
    Result<AgentEndpoint> found = Read(name);
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Remember(name, found, now);
      flight->result = std::move(found);
      waiters.swap(flight->waiters);
      auto it = flights_.find(name);
      if (it != flights_.end() && it->second == flight) flights_.erase(it);
    }
    for (auto& resume : waiters) resume();
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
  std::map<std::string, Cached> cache_;                     // guarded by mu_
  std::map<std::string, std::shared_ptr<Flight>> flights_;  // guarded by mu_: reads in progress
  std::unique_ptr<boost::asio::thread_pool> reader_;        // read_off_thread: the one reader thread
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
