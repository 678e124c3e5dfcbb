// The bridge: makes HTTP agents available over the Kafka agent transport
// (`agentflow bridge`, docs/agents.md). For each agent it serves, it consumes
// the agent's request topic (agent.<name>.requests unless configured), calls
// the HTTP agent exactly as an executor would (the AgentCaller given, i.e.
// NewHttpAgentCaller: body {run_id, step_id, attempt, input[, item_index]},
// Idempotency-Key <run_id>/<step_id>[/<item_index>]), and publishes the
// outcome on the request's reply_topic, keyed by run_id.
//
// Delivery: a request is acked only after its reply is confirmed written
// (Queue::PublishAsync reported OK), so a bridge killed at any moment leaves
// every unanswered request unacked: the group delivers it again (to this
// bridge after a restart, or another instance) and it is answered then. The
// executor keeps the first reply and drops duplicates. A reply that cannot be
// written is retried every `publish_retry` until it is written or the
// request's deadline has passed (the executor no longer waits for it).
//
// Requests are handled as they come, not in order: the HTTP calls are
// asynchronous on one event loop (no thread per call), at most
// `max_in_flight` per agent. Each agent has its own subscription (all in one
// consumer group) and polling thread, so an agent at its limit stops taking
// requests (Poll(0): its partitions pause) while the others go on.
//
// The timeout of each call is the request's deadline minus now; a request
// already past its deadline is dropped (acked without a call), since the
// executor has given up on it. A request that is not valid is logged and
// acked, so it never blocks its partition.
//
// Thread-safety: Start, StopTaking, WaitIdle and Stop from one thread (not
// the event loop's); stats and InFlight from any. The executor must be
// single-threaded; `queue`, `http` and the executor's context must outlive
// the bridge, and the event loop must keep running until Stop returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "agent/agent.h"
#include "agent/kafka/agent_messages.h"
#include "queue/queue.h"

namespace af {

struct BridgedAgent {
  std::string name;   // the agent's registered name
  std::string url;    // the HTTP agent the requests go to
  std::string topic;  // its request topic; "" = DefaultAgentTopic(name)
};

struct BridgeOptions {
  std::vector<BridgedAgent> agents;
  std::string group = "agentflow-bridge";  // consumer group shared by every bridge instance
  int max_in_flight = 64;                  // HTTP calls in flight per agent
  std::chrono::milliseconds publish_retry{1000};  // between attempts to write a reply that failed
  std::chrono::milliseconds poll_wait{200};       // longest Poll; bounds how fast Stop is
};

struct BridgeStats {
  uint64_t requests = 0;       // taken off the topics
  uint64_t replied = 0;        // replies confirmed written (and requests acked)
  uint64_t expired = 0;        // dropped: past their deadline on arrival
  uint64_t malformed = 0;      // dropped: not a valid request
  uint64_t publish_errors = 0; // failed attempts to write a reply
};

class Bridge {
 public:
  Bridge(Queue* queue, boost::asio::any_io_executor executor, AgentCaller* http, BridgeOptions options);
  ~Bridge();  // Stop()
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Subscribes every agent's topic and starts polling. InvalidArgument for an
  // empty agent list, a duplicate name or topic, or an invalid topic.
  Status Start();
  // Takes no new requests; calls in flight go on and are answered and acked
  // (graceful shutdown, step 1). The subscriptions stay open.
  void StopTaking();
  // Waits up to `timeout` until no request is in flight. True if none is.
  bool WaitIdle(std::chrono::milliseconds timeout);
  // Aborts the calls still in flight (their requests stay unacked and are
  // delivered again), commits what was acked, closes the subscriptions and
  // joins the polling threads. Idempotent.
  void Stop();

  size_t InFlight() const;
  std::map<std::string, int> InFlightByAgent() const;
  BridgeStats stats() const;

 private:
  struct Worker;
  struct CallState;
  void PollLoop(Worker* w);
  boost::asio::awaitable<void> Handle(Worker* w, QueueMessage m);
  boost::asio::awaitable<Status> PublishReply(const std::string& topic, const std::string& key,
                                              const std::string& payload);
  boost::asio::awaitable<bool> Pause(std::chrono::milliseconds d, CancelSignal* cancel);
  void Finish(Worker* w, const QueueMessage& m, bool ack);
  void AbortInFlight();

  Queue* queue_;
  boost::asio::any_io_executor executor_;
  AgentCaller* http_;
  BridgeOptions options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> taking_{true};
  std::atomic<bool> stopping_{false};
  bool stopped_ = false;
  mutable std::mutex mu_;          // with cv_: in-flight changes wake pollers and WaitIdle
  std::condition_variable cv_;
  // Executor thread only: the calls in flight, for AbortInFlight. Shared with
  // the abort it posts, which may run after the bridge is gone.
  std::shared_ptr<std::vector<CancelSignal*>> active_ = std::make_shared<std::vector<CancelSignal*>>();
  std::atomic<uint64_t> requests_{0}, replied_{0}, expired_{0}, malformed_{0}, publish_errors_{0};
};

}  // namespace af
