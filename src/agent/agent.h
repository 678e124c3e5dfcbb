// Calling agents. An agent is a service registered by name; the executor
// resolves the name through an AgentDirectory and calls it through an
// AgentCaller. HTTP is the transport here; other transports (Kafka) slot in
// behind AgentCaller without touching the executor.
//
// HTTP protocol (docs/agents.md): POST <url>, body
//   {"run_id", "step_id", "attempt", "input"} (+ "item_index" inside for_each)
// headers Content-Type: application/json,
//   Idempotency-Key: <run_id>/<step_id>[/<index>] and, when the call has one,
//   traceparent: 00-<the run's trace id>-<a new span id per call>-<flags>.
// A 2xx JSON body is the step's output. 408, 429, 5xx, connection errors and
// timeouts are retryable (Retry-After honoured); other 4xx and a non-JSON 2xx
// body fail the step at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "common/cancel.h"
#include "common/status.h"
#include "model/types.h"

namespace af {

namespace http {
struct ClientResponse;
}

// An agent as the executor needs it: how to reach it and whether the
// registry currently considers it usable.
struct AgentEndpoint {
  std::string name;
  AgentTransport transport = AgentTransport::kHttp;
  std::string url;             // http
  std::string topic;           // kafka: request topic
  int64_t timeout_ms = 30000;  // default per call when the step sets none
  int max_concurrency = 0;     // 0 = unlimited
  AgentHealth health = AgentHealth::kUnknown;  // kUnhealthy: attempts fail (retryable) without a call
  std::string health_error;                    // why kUnhealthy
};

AgentEndpoint ToEndpoint(const Agent& a);

// Resolves agent names. Implementations: store-backed (embedded registry and
// consumers sharing the registry's database), the registry service over HTTP
// with a short cache, a fixed map (standalone executor).
// Errors: NotFound (with a hint) when the agent is not registered, which
// fails the step; anything else (Unavailable: store or registry unreachable)
// makes the executor retry the run later without using up retries.
// Thread-safety: Resolve is called from the engine's executor only; the
// returned coroutine runs there.
class AgentDirectory {
 public:
  virtual ~AgentDirectory() = default;
  virtual boost::asio::awaitable<Result<AgentEndpoint>> Resolve(const std::string& name) = 0;
};

class Store;
struct StoreDirectoryOptions {
  // How long a record read from the `agents` table is used before it is
  // read again: a re-registration, a health change or a deletion takes
  // effect within this time (the executor used to read the table at every
  // step attempt). 0: read at every call. Only found agents are cached; a
  // name that is not registered is looked up again at every call.
  std::chrono::milliseconds cache_ttl{1000};
  // The clock the TTL is measured on (tests replace it).
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
  // true: a cache miss is read on a thread of the directory's own, so
  // Resolve never blocks its caller's event loop on a database round trip,
  // and the callers that miss one name meanwhile share that one read (the
  // execution consumer, on PostgreSQL). false: read on the caller's thread
  // (`serve`, whose SQLite reads take microseconds).
  bool read_off_thread = false;
};
// Reads agents from the store's `agents` table, cached per name for
// options.cache_ttl. Thread-safe.
std::unique_ptr<AgentDirectory> NewStoreAgentDirectory(Store* store, StoreDirectoryOptions options = {});
// A fixed set of agents (for `agentflow executor --agent NAME=URL`).
std::unique_ptr<AgentDirectory> NewStaticAgentDirectory(std::vector<AgentEndpoint> agents);

struct RegistryDirectoryOptions {
  std::string registry_url;  // e.g. http://agent-registry:8080 (AGENT_REGISTRY_URL)
  // Sent as "Authorization: Bearer <key>" (a viewer key is enough) when the
  // registry runs with --auth required (AGENTFLOW_API_KEY). Empty: none.
  std::string api_key;
  // How long an answer (found or not found) is reused. While the registry is
  // unreachable the last good record is reused past this; an agent never
  // seen then resolves to Unavailable (the run is retried later).
  std::chrono::milliseconds cache_ttl{2000};
  std::chrono::milliseconds request_timeout{2000};
};
// Asks the registry service (GET /api/v1/agents/{name}). Use from
// `executor` only.
std::unique_ptr<AgentDirectory> NewRegistryAgentDirectory(boost::asio::any_io_executor executor,
                                                          RegistryDirectoryOptions options);

// An agent record as the registry API serves it (ToJson(Agent)), read back.
Result<AgentEndpoint> EndpointFromJson(const json& j);

// Tries `first`, then `second` when `first` says NotFound (static --agent
// entries in front of a registry).
std::unique_ptr<AgentDirectory> NewLayeredAgentDirectory(std::unique_ptr<AgentDirectory> first,
                                                         std::unique_ptr<AgentDirectory> second);

struct AgentCall {
  std::string run_id;
  std::string step_id;
  std::optional<int> item_index;
  int attempt = 1;
  json input;
  int64_t timeout_ms = 30000;  // this attempt's timeout
  std::string traceparent;     // W3C traceparent of this call; "" = none sent
};

// "<run_id>/<step_id>[/<index>]"
std::string IdempotencyKey(const AgentCall& call);

// The body of an HTTP agent call, compact JSON:
//   {"attempt", "input", "item_index" (for_each items only), "run_id", "step_id"}
// Invalid UTF-8 in the input's strings is replaced.
std::string AgentRequestBody(const AgentCall& call);

struct AgentReply {
  enum class Outcome { kOk, kRetryable, kPermanent, kCancelled };
  Outcome outcome = Outcome::kOk;
  json output;                            // kOk only
  std::string error;                      // otherwise: what went wrong, for error_message
  std::optional<int64_t> retry_after_ms;  // from Retry-After
  int http_status = 0;                    // 0 when no response arrived
};

// Classifies a finished HTTP exchange per the protocol above (pure; tested
// alone). `exchange` is the client's result.
AgentReply ClassifyHttpReply(const Result<http::ClientResponse>& exchange, int64_t timeout_ms);

// Parses a Retry-After value: delta-seconds or an HTTP date. Empty if invalid.
std::optional<int64_t> ParseRetryAfterMs(const std::string& value, TimeMs now);

// Thread-safety: an AgentCaller is used from its executor only.
class AgentCaller {
 public:
  virtual ~AgentCaller() = default;
  // Never throws; transport problems become kRetryable replies, `cancel`
  // firing becomes kCancelled.
  virtual boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                                  CancelSignal* cancel) = 0;
};

struct HttpAgentCallerOptions {
  size_t max_response_bytes = 16 << 20;  // larger replies fail the attempt (permanent)
  // The executor is an io_context run by one thread (http::ClientOptions).
  bool one_thread = false;
};

std::unique_ptr<AgentCaller> NewHttpAgentCaller(boost::asio::any_io_executor executor,
                                                const HttpAgentCallerOptions& options = {});

}  // namespace af
