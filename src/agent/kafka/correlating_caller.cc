#include "agent/kafka/correlating_caller.h"

#include <chrono>
#include <map>
#include <optional>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/ids.h"
#include "common/log.h"
#include "common/trace.h"

namespace af {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// One call between its first suspension and its return. Lives on the
// executor; the timer is parked at the call's deadline and cancelled by
// whatever completes the call first.
struct Pending {
  explicit Pending(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  std::string id;                   // correlation id, once published
  std::optional<AgentReply> result; // set once
};

AgentReply Failure(AgentReply::Outcome outcome, std::string error) {
  AgentReply r;
  r.outcome = outcome;
  r.error = std::move(error);
  return r;
}

}  // namespace

struct CorrelatingAgentCaller::State {
  explicit State(asio::any_io_executor ex) : executor(std::move(ex)) {}

  asio::any_io_executor executor;
  // Executor thread only.
  std::map<std::string, std::shared_ptr<Pending>> in_flight;  // by correlation id
  std::vector<std::shared_ptr<Pending>> waiting_ready;
  bool ready = false;
  std::string not_ready_reason = "the reply reader has not started yet";
  uint64_t next_id = 1;

  std::atomic<uint64_t> matched{0}, ignored{0}, foreign{0}, malformed{0};

  // Completes `p` unless something else did first.
  static void Complete(const std::shared_ptr<Pending>& p, AgentReply r) {
    if (p->result) return;
    p->result = std::move(r);
    p->timer.cancel();
  }

  void OnReply(const std::string& id, const Result<AgentReplyMessage>& reply) {
    auto it = in_flight.find(id);
    if (it == in_flight.end()) {
      ++ignored;
      log::Debug("Kafka agent transport: ignoring a reply for correlation id " + id +
                 ": no call waits for it (it timed out, was cancelled, or was answered already)");
      return;
    }
    std::shared_ptr<Pending> p = it->second;
    in_flight.erase(it);
    ++matched;
    if (reply.ok()) {
      Complete(p, ToAgentReply(*reply));
    } else {
      Complete(p, Failure(AgentReply::Outcome::kPermanent, "the agent's reply is not valid: " + reply.status().message()));
    }
  }

  void OnPublishFailed(const std::string& id, const std::string& agent, const std::string& topic, const Status& s) {
    auto it = in_flight.find(id);
    if (it == in_flight.end()) return;  // answered, timed out or cancelled meanwhile
    std::shared_ptr<Pending> p = it->second;
    in_flight.erase(it);
    // Retrying cannot shrink the request or fix the topic name.
    bool permanent = s.code() == Code::kTooLarge || s.code() == Code::kInvalidArgument;
    Complete(p, Failure(permanent ? AgentReply::Outcome::kPermanent : AgentReply::Outcome::kRetryable,
                        "could not send the request to agent '" + agent + "' on Kafka topic " + topic + ": " +
                            s.message()));
  }

  void OnReady(bool now_ready, const std::string& why_not) {
    ready = now_ready;
    if (!ready) {
      not_ready_reason = why_not.empty() ? "the reply reader is not reading" : why_not;
      return;
    }
    auto waiting = std::move(waiting_ready);
    waiting_ready.clear();
    for (auto& p : waiting) p->timer.cancel();
  }
};

CorrelatingAgentCaller::CorrelatingAgentCaller(asio::any_io_executor executor, Queue* requests,
                                               CorrelatingCallerOptions options)
    : state_(std::make_shared<State>(std::move(executor))),
      requests_(requests),
      reply_topic_(std::move(options.reply_topic)),
      prefix_(options.id_prefix.empty() ? NewUuid() + ":" : options.id_prefix) {}

CorrelatingAgentCaller::~CorrelatingAgentCaller() = default;

void CorrelatingAgentCaller::Deliver(std::string_view payload) {
  Result<AgentReplyMessage> reply = ParseAgentReply(payload);
  std::string id;
  if (reply.ok()) {
    id = reply->correlation_id;
  } else if (const json& d = reply.status().details(); d.is_object() && d.contains("correlation_id")) {
    id = d["correlation_id"].get<std::string>();
  }
  if (id.empty()) {
    ++state_->malformed;
    log::Debug("Kafka agent transport: ignoring a reply without a readable correlation id: " +
               reply.status().message());
    return;
  }
  if (id.compare(0, prefix_.size(), prefix_) != 0) {
    ++state_->foreign;
    return;
  }
  asio::post(state_->executor, [state = state_, id = std::move(id), reply = std::move(reply)] {
    state->OnReply(id, reply);
  });
}

void CorrelatingAgentCaller::SetReady(bool ready, const std::string& why_not) {
  asio::post(state_->executor, [state = state_, ready, why_not] { state->OnReady(ready, why_not); });
}

CorrelationStats CorrelatingAgentCaller::stats() const {
  CorrelationStats s;
  s.matched = state_->matched.load();
  s.ignored = state_->ignored.load();
  s.foreign = state_->foreign.load();
  s.malformed = state_->malformed.load();
  return s;
}

asio::awaitable<AgentReply> CorrelatingAgentCaller::Call(const AgentEndpoint& agent, const AgentCall& call,
                                                         CancelSignal* cancel) {
  // Everything needed from `agent` and `call` is copied before the first
  // suspension: the caller's objects may change while we wait.
  std::shared_ptr<State> state = state_;
  const std::string name = agent.name;
  const std::string topic = agent.topic.empty() ? DefaultAgentTopic(agent.name) : agent.topic;
  AgentCall c = call;
  c.timeout_ms = call.timeout_ms > 0 ? call.timeout_ms : agent.timeout_ms > 0 ? agent.timeout_ms : 30000;
  const std::string timed_out = "timed out after " + std::to_string(c.timeout_ms) + " ms";
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(c.timeout_ms);

  if (!IsValidKafkaTopic(topic)) {
    AgentReply bad = Failure(AgentReply::Outcome::kPermanent,
                             "agent '" + name + "' has an invalid Kafka topic '" + topic +
                                 "'. Hint: register it with a topic of 1..249 characters of [A-Za-z0-9._-]");
    co_return bad;
  }
  if (cancel != nullptr && cancel->cancelled()) {
    AgentReply cancelled = Failure(AgentReply::Outcome::kCancelled, "cancelled: " + cancel->reason());
    co_return cancelled;
  }

  auto p = std::make_shared<Pending>(state->executor);
  CancelRegistration on_cancel(cancel, [state, p, cancel] {
    if (!p->id.empty()) state->in_flight.erase(p->id);
    State::Complete(p, Failure(AgentReply::Outcome::kCancelled, "cancelled: " + cancel->reason()));
  });

  // 1. Replies must be read before a request goes out.
  while (!state->ready && !p->result && Clock::now() < deadline) {
    state->waiting_ready.push_back(p);
    p->timer.expires_at(deadline);
    boost::system::error_code ec;
    co_await p->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    std::erase(state->waiting_ready, p);
  }
  if (!p->result && !state->ready) {
    AgentReply late = Failure(AgentReply::Outcome::kRetryable,
                              timed_out + " (no request was sent: replies on " + reply_topic_ +
                                  " cannot be read yet: " + state->not_ready_reason + ")");
    co_return late;
  }

  // 2. Publish, asynchronously.
  if (!p->result) {
    p->id = prefix_ + std::to_string(state->next_id++);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    AgentRequestMessage request = MakeAgentRequest(c, reply_topic_, p->id, NowMs() + left.count());
    state->in_flight[p->id] = p;
    if (log::Enabled(log::Level::kDebug)) {
      auto parent = trace::ParseTraceParent(c.traceparent);
      log::Debug("Kafka agent transport: request " + p->id + " to " + topic,
                 {c.run_id, c.step_id, name, parent ? std::string_view(parent->trace_id) : std::string_view()});
    }
    requests_->PublishAsync(topic, c.run_id, SerializeAgentRequest(request),
                            [state, id = p->id, name, topic](Status s) {
                              if (s.ok()) return;
                              asio::post(state->executor, [state, id, name, topic, s] {
                                state->OnPublishFailed(id, name, topic, s);
                              });
                            });
  }

  // 3. Wait for the reply, the deadline, a cancel or a failed publish.
  while (!p->result && Clock::now() < deadline) {
    p->timer.expires_at(deadline);
    boost::system::error_code ec;
    co_await p->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!p->id.empty()) state->in_flight.erase(p->id);
  if (!p->result) p->result = Failure(AgentReply::Outcome::kRetryable, timed_out);
  AgentReply out = std::move(*p->result);
  co_return out;
}

}  // namespace af
