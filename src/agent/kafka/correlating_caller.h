// The transport-independent half of the Kafka agent caller: an AgentCaller
// that publishes each attempt's request through a Queue and completes the
// call when a reply carrying its correlation id is delivered to it. Where
// replies come from is someone else's job (KafkaReplyReader in production;
// tests call Deliver directly), so the correlation logic — timeouts,
// cancellation, late, duplicate, foreign and malformed replies — is tested
// without a broker.
//
// A call:
//  1. waits until replies are being read (SetReady(true)): a request sent
//     earlier could be answered before the reader looks, and the reply would
//     be missed; the wait counts against the call's timeout;
//  2. publishes the request (agent_messages.h) on the agent's topic
//     (endpoint.topic, or "agent.<name>.requests" when empty), keyed by
//     run_id, with deadline = now + the call's timeout, asynchronously
//     (Queue::PublishAsync): no thread waits for the broker;
//  3. waits for the reply, the timeout, the CancelSignal or a failed publish,
//     whichever comes first. Replies after that are late and are ignored, as
//     are second replies to the same request (a redelivered request answered
//     twice): they are counted and logged at debug.
//
// Outcomes: reply ok → kOk; reply error → kRetryable if it says
// retryable, else kPermanent; no reply in time → kRetryable "timed out after
// N ms"; cancel → kCancelled; the request could not be published →
// kRetryable (kPermanent when retrying cannot help: the request is too large,
// the topic name is invalid); a reply with our correlation id that is not
// valid → kPermanent "the agent's reply is not valid: ...".
//
// Correlation ids are "<prefix><n>": the prefix is random per caller (unique
// per process), n counts calls. Replies whose id has another prefix belong to
// other executors reading the same reply topic and are dropped in Deliver,
// on the reader's thread, without touching the event loop.
//
// Thread-safety: Call runs on `executor`, which must be single-threaded (the
// engine's event loop); Deliver, SetReady and stats are safe from any
// thread. Destroy the caller only after every Call has returned (the engine
// shuts down first); replies delivered later are dropped.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

#include "agent/agent.h"
#include "agent/kafka/agent_messages.h"
#include "queue/queue.h"

namespace af {

struct CorrelatingCallerOptions {
  std::string reply_topic = kAgentReplyTopic;  // where agents answer (written into every request)
  std::string id_prefix;                       // correlation id prefix; "" = a fresh random one
};

// What became of the replies delivered so far.
struct CorrelationStats {
  uint64_t matched = 0;    // completed a call
  uint64_t ignored = 0;    // ours, but no call waits for it (late or duplicate)
  uint64_t foreign = 0;    // another caller's correlation id
  uint64_t malformed = 0;  // no readable correlation id
};

class CorrelatingAgentCaller final : public AgentCaller {
 public:
  // `requests` (not owned) must outlive the caller.
  CorrelatingAgentCaller(boost::asio::any_io_executor executor, Queue* requests, CorrelatingCallerOptions options);
  ~CorrelatingAgentCaller() override;
  CorrelatingAgentCaller(const CorrelatingAgentCaller&) = delete;
  CorrelatingAgentCaller& operator=(const CorrelatingAgentCaller&) = delete;

  boost::asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall& call,
                                          CancelSignal* cancel) override;

  // A message read from the reply topic (any payload: it is validated here).
  void Deliver(std::string_view payload);
  // Whether replies are being read; `why_not` explains a false in the
  // timeout message of calls still waiting for it.
  void SetReady(bool ready, const std::string& why_not = "");

  CorrelationStats stats() const;
  const std::string& id_prefix() const { return prefix_; }
  const std::string& reply_topic() const { return reply_topic_; }

  struct State;  // shared with the completions posted to the executor

 private:
  std::shared_ptr<State> state_;
  Queue* requests_;
  const std::string reply_topic_;
  const std::string prefix_;
};

}  // namespace af
