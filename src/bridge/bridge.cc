#include "bridge/bridge.h"

#include <algorithm>
#include <optional>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/ids.h"
#include "common/log.h"
#include "common/trace.h"

namespace af {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

// How long Stop waits for aborted calls (and replies being written) to unwind.
constexpr milliseconds kAbortWait{15000};
// Between attempts after a failed Poll.
constexpr milliseconds kPollRetry{1000};

std::string Where(const QueueMessage& m) {
  return m.topic + "[" + std::to_string(m.partition) + "]@" + std::to_string(m.offset);
}

// One PublishAsync awaited by a coroutine: the completion (from any thread)
// posts the status to the executor and wakes the waiter.
struct PublishSlot {
  explicit PublishSlot(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  std::optional<Status> status;
};

}  // namespace

struct Bridge::Worker {
  BridgedAgent agent;
  AgentEndpoint endpoint;
  std::unique_ptr<QueueConsumer> consumer;
  std::thread thread;
  std::atomic<int> in_flight{0};
};

Bridge::Bridge(Queue* queue, asio::any_io_executor executor, AgentCaller* http, BridgeOptions options)
    : queue_(queue), executor_(std::move(executor)), http_(http), options_(std::move(options)) {}

Bridge::~Bridge() { Stop(); }

Status Bridge::Start() {
  if (options_.agents.empty()) {
    return Status::InvalidArgument("the bridge serves no agents. Hint: pass --agent NAME=URL");
  }
  if (options_.max_in_flight < 1) return Status::InvalidArgument("--max-in-flight must be at least 1");
  // Everything is checked before anything is subscribed.
  std::set<std::string> names, topics;
  std::vector<BridgedAgent> agents;
  for (BridgedAgent a : options_.agents) {
    if (a.topic.empty()) a.topic = DefaultAgentTopic(a.name);
    if (!names.insert(a.name).second) return Status::InvalidArgument("agent '" + a.name + "' is given twice");
    if (!IsValidKafkaTopic(a.topic)) {
      return Status::InvalidArgument("agent '" + a.name + "': invalid Kafka topic '" + a.topic +
                                     "'. Hint: use 1..249 characters of [A-Za-z0-9._-]");
    }
    if (!topics.insert(a.topic).second) {
      return Status::InvalidArgument("topic " + a.topic + " is given for two agents. Hint: one topic per agent");
    }
    agents.push_back(std::move(a));
  }
  for (const BridgedAgent& a : agents) {
    auto w = std::make_unique<Worker>();
    w->agent = a;
    w->endpoint.name = a.name;
    w->endpoint.transport = AgentTransport::kHttp;
    w->endpoint.url = a.url;
    auto sub = queue_->Subscribe({a.topic}, options_.group);
    if (!sub.ok()) return sub.status();
    w->consumer = std::move(sub).value();
    std::string name = a.name;
    w->consumer->SetRevokedHandler([name](const std::vector<QueueMessage>& lost) {
      log::Info("bridge: " + std::to_string(lost.size()) + " request(s) for agent '" + name +
                "' moved to another bridge instance while in flight; their replies may be sent twice (executors keep "
                "the first)");
    });
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    Worker* raw = w.get();
    raw->thread = std::thread([this, raw] { PollLoop(raw); });
  }
  return Status::Ok();
}

void Bridge::PollLoop(Worker* w) {
  while (!stopping_) {
    int free = options_.max_in_flight - w->in_flight.load();
    size_t take = taking_ && free > 0 ? static_cast<size_t>(free) : 0;
    // Poll(0) takes nothing but keeps the subscription alive (Kafka pauses
    // the partitions), so a full or draining agent keeps its place in the group.
    Result<std::vector<QueueMessage>> got = w->consumer->Poll(take, take > 0 ? options_.poll_wait : milliseconds(0));
    if (!got.ok()) {
      if (stopping_) break;
      log::Warn("bridge: polling the requests of agent '" + w->agent.name + "' failed: " + got.status().message() +
                "; trying again in 1 s");
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, kPollRetry, [this] { return stopping_.load(); });
      continue;
    }
    for (QueueMessage& m : *got) {
      // Taken after a stop began: left unacked, it is delivered again.
      if (!taking_) break;
      ++requests_;
      ++w->in_flight;
      asio::co_spawn(executor_, Handle(w, std::move(m)), asio::detached);
    }
    if (take == 0) {
      // Woken when a call of this agent finishes (or on stop).
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, options_.poll_wait, [this, w] {
        return stopping_.load() || (taking_.load() && w->in_flight.load() < options_.max_in_flight);
      });
    }
  }
}

asio::awaitable<void> Bridge::Handle(Worker* w, QueueMessage m) {
  const std::string& agent = w->agent.name;
  Result<AgentRequestMessage> parsed = ParseAgentRequest(m.payload);
  if (!parsed.ok()) {
    ++malformed_;
    log::Warn("bridge: skipping a malformed request at " + Where(m) + " for agent '" + agent +
                  "': " + parsed.status().message(),
              {"", "", agent});
    Finish(w, m, /*ack=*/true);
    co_return;
  }
  AgentRequestMessage req = std::move(parsed).value();
  auto parent = trace::ParseTraceParent(req.traceparent);  // forwarded to the agent by the HTTP caller
  const std::string trace_id = parent ? parent->trace_id : "";
  log::Fields fields{req.run_id, req.step_id, agent, trace_id};
  const int64_t left = req.deadline - NowMs();
  if (left <= 0) {
    ++expired_;
    log::Info("bridge: dropping request " + req.correlation_id + " (attempt " + std::to_string(req.attempt) +
                  "): its deadline passed " + std::to_string(-left) +
                  " ms ago, so the executor no longer waits for the reply",
              fields);
    Finish(w, m, /*ack=*/true);
    co_return;
  }

  // The HTTP call, with the time the executor still waits as its timeout.
  CancelSignal cancel;
  active_->push_back(&cancel);
  AgentEndpoint endpoint = w->endpoint;
  endpoint.timeout_ms = left;
  AgentCall call = ToAgentCall(req, left);
  if (IdempotencyKey(call) != req.idempotency_key) {
    log::Debug("bridge: the request's idempotency_key '" + req.idempotency_key +
                   "' differs from the HTTP protocol's; the agent gets '" + IdempotencyKey(call) + "'",
               fields);
  }
  AgentReply reply = co_await http_->Call(endpoint, call, &cancel);
  bool aborted = cancel.cancelled();

  // The reply, written until confirmed (or until nobody waits for it).
  bool written = false;
  bool sent_too_large = false;
  std::string payload = aborted ? std::string() : SerializeAgentReply(MakeAgentReply(req.correlation_id, reply));
  while (!aborted) {
    Status s = co_await PublishReply(req.reply_topic, req.run_id, payload);
    if (s.ok()) {
      written = true;
      break;
    }
    ++publish_errors_;
    if (s.code() == Code::kTooLarge && !sent_too_large) {
      // Retrying cannot shrink it: tell the executor instead of letting it time out.
      sent_too_large = true;
      AgentReply too_large;
      too_large.outcome = AgentReply::Outcome::kPermanent;
      too_large.error = "the agent's reply (" + std::to_string(payload.size()) +
                        " bytes as a Kafka message) could not be written to " + req.reply_topic + ": " + s.message();
      payload = SerializeAgentReply(MakeAgentReply(req.correlation_id, too_large));
      continue;
    }
    if (NowMs() > req.deadline) {
      log::Warn("bridge: dropping the reply to " + req.correlation_id + ": it could not be written to " +
                    req.reply_topic + " (" + s.message() + ") before the deadline",
                fields);
      break;
    }
    log::Warn("bridge: could not write the reply to " + req.correlation_id + " to " + req.reply_topic + ": " +
                  s.message() + "; trying again in " + std::to_string(options_.publish_retry.count()) + " ms",
              fields);
    bool slept = co_await Pause(options_.publish_retry, &cancel);
    if (!slept) aborted = true;
  }
  std::erase(*active_, &cancel);
  if (written) {
    ++replied_;
    log::Debug("bridge: replied to " + req.correlation_id + " on " + req.reply_topic +
                   (reply.outcome == AgentReply::Outcome::kOk ? " (ok)" : " (error: " + reply.error + ")"),
               fields);
  }
  // An aborted request stays unacked: it is delivered again and answered then.
  Finish(w, m, /*ack=*/!aborted);
}

asio::awaitable<Status> Bridge::PublishReply(const std::string& topic, const std::string& key,
                                             const std::string& payload) {
  auto slot = std::make_shared<PublishSlot>(executor_);
  asio::any_io_executor ex = executor_;
  queue_->PublishAsync(topic, key, payload, [slot, ex](Status s) {
    asio::post(ex, [slot, s] {
      slot->status = s;
      slot->timer.cancel();
    });
  });
  while (!slot->status) {
    slot->timer.expires_at(asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await slot->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  Status out = *slot->status;
  co_return out;
}

asio::awaitable<bool> Bridge::Pause(milliseconds d, CancelSignal* cancel) {
  asio::steady_timer timer(executor_);
  timer.expires_after(d);
  CancelRegistration reg(cancel, [&timer] { timer.cancel(); });
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return !cancel->cancelled();
}

void Bridge::Finish(Worker* w, const QueueMessage& m, bool ack) {
  if (ack) {
    Status s = w->consumer->Ack(m);
    if (!s.ok()) log::Debug("bridge: ack of " + Where(m) + " failed: " + s.message());
  }
  // Notified under the lock: once the count is down, Stop may see the bridge
  // idle and the owner destroy it; it takes mu_ first, so cv_ outlives this.
  std::lock_guard lk(mu_);
  --w->in_flight;
  cv_.notify_all();
}

void Bridge::StopTaking() {
  taking_ = false;
  cv_.notify_all();
}

bool Bridge::WaitIdle(milliseconds timeout) {
  std::unique_lock lk(mu_);
  return cv_.wait_for(lk, timeout, [this] {
    for (const auto& w : workers_) {
      if (w->in_flight.load() > 0) return false;
    }
    return true;
  });
}

void Bridge::AbortInFlight() {
  asio::post(executor_, [active = active_] {
    std::vector<CancelSignal*> calls = *active;
    for (CancelSignal* c : calls) c->Cancel("the bridge is stopping");
  });
}

void Bridge::Stop() {
  if (stopped_) return;
  stopped_ = true;
  StopTaking();
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // The pollers first: a poll under way when the stop began could otherwise
  // start a request after the count below was read as zero.
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  if (InFlight() > 0) AbortInFlight();
  // Always waited for, even at zero: WaitIdle takes mu_, so the last Finish
  // has left it (and cv_) before the bridge can be destroyed.
  if (!WaitIdle(kAbortWait)) log::Warn("bridge: " + std::to_string(InFlight()) + " request(s) did not unwind");
  // Commits what was acked; the rest is delivered again.
  for (auto& w : workers_) w->consumer->Close();
}

size_t Bridge::InFlight() const {
  size_t n = 0;
  for (const auto& w : workers_) n += static_cast<size_t>(std::max(0, w->in_flight.load()));
  return n;
}

std::map<std::string, int> Bridge::InFlightByAgent() const {
  std::map<std::string, int> out;
  for (const auto& w : workers_) out[w->agent.name] = w->in_flight.load();
  return out;
}

BridgeStats Bridge::stats() const {
  BridgeStats s;
  s.requests = requests_.load();
  s.replied = replied_.load();
  s.expired = expired_.load();
  s.malformed = malformed_.load();
  s.publish_errors = publish_errors_.load();
  return s;
}

}  // namespace af
