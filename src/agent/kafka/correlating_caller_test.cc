// CorrelatingAgentCaller without a broker: requests go through the embedded
// queue to a fake agent on a thread of the test, which answers by calling
// Deliver, as the reply reader would. Also the routing caller.
#include "agent/kafka/correlating_caller.h"

#include <atomic>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "agent/routing_caller.h"
#include "executor/loop.h"

namespace af {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Outcome = AgentReply::Outcome;

asio::awaitable<void> DoCall(AgentCaller* caller, AgentEndpoint endpoint, AgentCall call, CancelSignal* cancel,
                             std::shared_ptr<std::promise<AgentReply>> out) {
  AgentReply r = co_await caller->Call(endpoint, call, cancel);
  out->set_value(std::move(r));
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// What the fake agent does with a request: the reply payloads to deliver
// (none: stay silent).
using Behaviour = std::function<std::vector<std::string>(const AgentRequestMessage&)>;

// A Queue whose PublishAsync fails with a given status (and Publish too).
class FailingQueue final : public Queue {
 public:
  explicit FailingQueue(Status s) : status_(std::move(s)) {}
  Status Publish(const std::string&, const std::string&, const std::string&) override { return status_; }
  Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>&, const std::string&) override {
    return Status::Unavailable("not here");
  }
  Status Ping() override { return Status::Ok(); }

 private:
  Status status_;
};

class CorrelatingCallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto q = OpenEmbeddedQueue(QueueOptions{});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    queue_ = std::move(q).value();
    MakeCaller(queue_.get());
    loop_.Start();
  }

  void TearDown() override {
    StopAgent();
    loop_.Stop();
  }

  void MakeCaller(Queue* q, bool ready = true) {
    CorrelatingCallerOptions o;
    o.reply_topic = "test.replies";
    caller_ = std::make_unique<CorrelatingAgentCaller>(loop_.executor(), q, o);
    if (ready) caller_->SetReady(true);
  }

  // Serves `topic` on a thread until StopAgent: each request is recorded,
  // then answered as `behaviour` says.
  void StartAgent(const std::string& topic, Behaviour behaviour) {
    auto sub = queue_->Subscribe({topic}, "fake-agent");
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    agent_consumer_ = std::move(sub).value();
    agent_ = std::thread([this, behaviour] {
      while (!stop_agent_) {
        auto ms = agent_consumer_->Poll(16, 50ms);
        if (!ms.ok()) return;
        for (const QueueMessage& m : *ms) {
          (void)agent_consumer_->Ack(m);
          auto req = ParseAgentRequest(m.payload);
          {
            std::lock_guard lk(mu_);
            received_.push_back(m);
          }
          ASSERT_TRUE(req.ok()) << req.status().ToString();
          for (const std::string& reply : behaviour(*req)) caller_->Deliver(reply);
        }
      }
    });
  }

  void StopAgent() {
    stop_agent_ = true;
    if (agent_.joinable()) agent_.join();
    if (agent_consumer_) agent_consumer_->Close();
  }

  std::vector<QueueMessage> Received() {
    std::lock_guard lk(mu_);
    return received_;
  }

  static AgentEndpoint Endpoint(const std::string& name, const std::string& topic = "") {
    AgentEndpoint e;
    e.name = name;
    e.transport = AgentTransport::kKafka;
    e.topic = topic;
    return e;
  }

  static AgentCall MakeCall(int64_t timeout_ms = 10000, const std::string& step = "s1") {
    AgentCall c;
    c.run_id = "run-1";
    c.step_id = step;
    c.attempt = 1;
    c.input = {{"q", "hi"}};
    c.timeout_ms = timeout_ms;
    return c;
  }

  std::future<AgentReply> Start(const AgentEndpoint& e, const AgentCall& c, CancelSignal* cancel = nullptr,
                                AgentCaller* caller = nullptr) {
    auto out = std::make_shared<std::promise<AgentReply>>();
    std::future<AgentReply> f = out->get_future();
    asio::co_spawn(loop_.executor(), DoCall(caller ? caller : caller_.get(), e, c, cancel, out), asio::detached);
    return f;
  }

  AgentReply Call(const AgentEndpoint& e, const AgentCall& c) {
    std::future<AgentReply> f = Start(e, c);
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }

  static std::string Ok(const AgentRequestMessage& r, json output) {
    AgentReplyMessage m;
    m.correlation_id = r.correlation_id;
    m.output = std::move(output);
    return SerializeAgentReply(m);
  }
  static std::string Error(const AgentRequestMessage& r, const std::string& error, bool retryable) {
    AgentReplyMessage m;
    m.correlation_id = r.correlation_id;
    m.ok = false;
    m.error = error;
    m.retryable = retryable;
    return SerializeAgentReply(m);
  }

  EventLoop loop_{1};
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<CorrelatingAgentCaller> caller_;
  std::unique_ptr<QueueConsumer> agent_consumer_;
  std::thread agent_;
  std::atomic<bool> stop_agent_{false};
  std::mutex mu_;
  std::vector<QueueMessage> received_;
};

TEST_F(CorrelatingCallerTest, RoundTripPublishesTheDocumentedRequestAndReturnsTheOutput) {
  StartAgent("agent.echo.requests", [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, {{"echo", r.input}})};
  });
  const TimeMs before = NowMs();
  AgentReply r = Call(Endpoint("echo"), MakeCall(5000));
  const TimeMs after = NowMs();
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(r.output, json({{"echo", {{"q", "hi"}}}}));

  auto got = Received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].topic, "agent.echo.requests") << "the default topic when the endpoint has none";
  EXPECT_EQ(got[0].key, "run-1") << "keyed by run_id";
  auto req = ParseAgentRequest(got[0].payload);
  ASSERT_TRUE(req.ok());
  EXPECT_EQ(req->run_id, "run-1");
  EXPECT_EQ(req->step_id, "s1");
  EXPECT_EQ(req->attempt, 1);
  EXPECT_EQ(req->input, json({{"q", "hi"}}));
  EXPECT_EQ(req->reply_topic, "test.replies");
  EXPECT_EQ(req->idempotency_key, "run-1/s1");
  EXPECT_EQ(req->correlation_id.rfind(caller_->id_prefix(), 0), 0u);
  EXPECT_GE(req->deadline, before);
  EXPECT_LE(req->deadline, after + 5000) << "deadline = send time + the call's timeout";
  EXPECT_EQ(caller_->stats().matched, 1u);
}

TEST_F(CorrelatingCallerTest, EndpointTopicIsUsedAndCorrelationIdsAreUniquePerCall) {
  StartAgent("custom.topic", [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, r.step_id)};
  });
  std::vector<std::future<AgentReply>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(Start(Endpoint("x", "custom.topic"), MakeCall(10000, "s" + std::to_string(i))));
  for (int i = 0; i < 20; ++i) {
    AgentReply r = calls[i].get();
    ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
    EXPECT_EQ(r.output, json("s" + std::to_string(i))) << "each call gets its own reply";
  }
  std::set<std::string> ids;
  for (const auto& m : Received()) ids.insert(ParseAgentRequest(m.payload)->correlation_id);
  EXPECT_EQ(ids.size(), 20u);
}

TEST_F(CorrelatingCallerTest, ErrorRepliesAreRetryableOrPermanentAsTheAgentSays) {
  StartAgent("agent.e.requests", [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Error(r, "failed: " + r.step_id, r.step_id == "again")};
  });
  AgentReply retry = Call(Endpoint("e"), MakeCall(5000, "again"));
  EXPECT_EQ(retry.outcome, Outcome::kRetryable);
  EXPECT_EQ(retry.error, "failed: again");
  AgentReply permanent = Call(Endpoint("e"), MakeCall(5000, "never"));
  EXPECT_EQ(permanent.outcome, Outcome::kPermanent);
  EXPECT_EQ(permanent.error, "failed: never");
}

TEST_F(CorrelatingCallerTest, NoReplyTimesOutRetryably) {
  StartAgent("agent.silent.requests", [](const AgentRequestMessage&) { return std::vector<std::string>{}; });
  AgentReply r = Call(Endpoint("silent"), MakeCall(300));
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_EQ(r.error, "timed out after 300 ms");
  EXPECT_EQ(Received().size(), 1u) << "the request was sent";
}

TEST_F(CorrelatingCallerTest, CancelEndsTheCallCancelled) {
  StartAgent("agent.slow.requests", [](const AgentRequestMessage&) { return std::vector<std::string>{}; });
  CancelSignal cancel;
  std::future<AgentReply> f = Start(Endpoint("slow"), MakeCall(60000), &cancel);
  ASSERT_TRUE(WaitUntil([&] { return Received().size() == 1; }));
  asio::post(loop_.executor(), [&cancel] { cancel.Cancel("run cancelled by test"); });
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  AgentReply r = f.get();
  EXPECT_EQ(r.outcome, Outcome::kCancelled);
  EXPECT_NE(r.error.find("run cancelled by test"), std::string::npos) << r.error;
}

TEST_F(CorrelatingCallerTest, AlreadyCancelledSignalSendsNothing) {
  StartAgent("agent.x.requests", [](const AgentRequestMessage&) { return std::vector<std::string>{}; });
  CancelSignal cancel;
  cancel.Cancel("before");
  std::future<AgentReply> f = Start(Endpoint("x"), MakeCall(), &cancel);
  EXPECT_EQ(f.get().outcome, Outcome::kCancelled);
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(Received().empty());
}

TEST_F(CorrelatingCallerTest, LateReplyIsIgnoredAndDoesNotReachTheNextCall) {
  std::mutex m;
  std::vector<AgentRequestMessage> seen;
  StartAgent("agent.late.requests", [&](const AgentRequestMessage& r) {
    std::lock_guard lk(m);
    seen.push_back(r);
    return std::vector<std::string>{};  // answered by the test, later
  });
  AgentReply first = Call(Endpoint("late"), MakeCall(200, "one"));
  ASSERT_EQ(first.outcome, Outcome::kRetryable);
  // The answer to the first call arrives after it gave up.
  AgentRequestMessage one;
  {
    std::lock_guard lk(m);
    ASSERT_EQ(seen.size(), 1u);
    one = seen[0];
  }
  caller_->Deliver(Ok(one, "stale"));
  ASSERT_TRUE(WaitUntil([&] { return caller_->stats().ignored == 1; })) << "the late reply is counted as ignored";
  EXPECT_EQ(caller_->stats().matched, 0u);

  std::future<AgentReply> second = Start(Endpoint("late"), MakeCall(10000, "two"));
  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lk(m);
    return seen.size() == 2;
  }));
  caller_->Deliver(Ok(one, "stale again"));  // still not the second call's
  {
    std::lock_guard lk(m);
    caller_->Deliver(Ok(seen[1], "fresh"));
  }
  AgentReply r = second.get();
  ASSERT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, "fresh");
}

TEST_F(CorrelatingCallerTest, DuplicateRepliesAreIgnored) {
  StartAgent("agent.dup.requests", [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, "first"), Ok(r, "second"), Error(r, "third", false)};
  });
  AgentReply r = Call(Endpoint("dup"), MakeCall());
  ASSERT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, "first");
  ASSERT_TRUE(WaitUntil([&] { return caller_->stats().ignored == 2; }));
  EXPECT_EQ(caller_->stats().matched, 1u);
}

TEST_F(CorrelatingCallerTest, ForeignAndUnreadableRepliesAreDroppedOnTheReadersThread) {
  StartAgent("agent.echo.requests", [](const AgentRequestMessage& r) {
    AgentReplyMessage other;
    other.correlation_id = "another-executor:1";
    other.output = "not yours";
    return std::vector<std::string>{SerializeAgentReply(other), "garbage", "{\"status\":\"ok\"}", Ok(r, "yours")};
  });
  AgentReply r = Call(Endpoint("echo"), MakeCall());
  ASSERT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, "yours");
  CorrelationStats s = caller_->stats();
  EXPECT_EQ(s.foreign, 1u);
  EXPECT_EQ(s.malformed, 2u);
  EXPECT_EQ(s.matched, 1u);
}

TEST_F(CorrelatingCallerTest, InvalidReplyToOurCallFailsItPermanentlyAtOnce) {
  StartAgent("agent.bad.requests", [](const AgentRequestMessage& r) {
    json bad = {{"correlation_id", r.correlation_id}, {"status", "maybe"}};
    return std::vector<std::string>{bad.dump()};
  });
  AgentReply r = Call(Endpoint("bad"), MakeCall(60000));
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_NE(r.error.find("the agent's reply is not valid"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("status"), std::string::npos) << r.error;
}

TEST_F(CorrelatingCallerTest, NothingIsSentBeforeRepliesAreReadAndCallsWaitForIt) {
  MakeCaller(queue_.get(), /*ready=*/false);
  StartAgent("agent.echo.requests", [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, "answered")};
  });
  caller_->SetReady(false, "brokers are down");
  AgentReply r = Call(Endpoint("echo"), MakeCall(200));
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_NE(r.error.find("timed out after 200 ms"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("brokers are down"), std::string::npos) << r.error;
  EXPECT_TRUE(Received().empty()) << "no request may go out while replies cannot be read";

  std::future<AgentReply> waiting = Start(Endpoint("echo"), MakeCall(60000));
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(Received().empty());
  caller_->SetReady(true);
  AgentReply ok = waiting.get();
  EXPECT_EQ(ok.outcome, Outcome::kOk) << ok.error;
  EXPECT_EQ(Received().size(), 1u);
}

TEST_F(CorrelatingCallerTest, FailedPublishIsRetryableUnlessRetryingCannotHelp) {
  FailingQueue down(Status::Unavailable("Kafka publish to t failed: Local: Message timed out"));
  MakeCaller(&down);
  AgentReply r = Call(Endpoint("echo"), MakeCall(60000));
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_NE(r.error.find("could not send the request to agent 'echo' on Kafka topic agent.echo.requests"),
            std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("Message timed out"), std::string::npos) << r.error;

  FailingQueue big(Status::TooLarge("Kafka publish to t failed: Broker: Message size too large"));
  MakeCaller(&big);
  EXPECT_EQ(Call(Endpoint("echo"), MakeCall(60000)).outcome, Outcome::kPermanent);
}

TEST_F(CorrelatingCallerTest, InvalidTopicFailsPermanently) {
  AgentReply r = Call(Endpoint("x", "not a topic!"), MakeCall());
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_NE(r.error.find("invalid Kafka topic"), std::string::npos) << r.error;
}

// --- routing ------------------------------------------------------------------

class MarkCaller final : public AgentCaller {
 public:
  explicit MarkCaller(std::string mark) : mark_(std::move(mark)) {}
  asio::awaitable<AgentReply> Call(const AgentEndpoint& agent, const AgentCall&, CancelSignal*) override {
    AgentReply r;
    r.output = mark_ + ":" + agent.name;
    co_return r;
  }

 private:
  std::string mark_;
};

TEST_F(CorrelatingCallerTest, RoutingCallerDispatchesOnTheTransport) {
  auto routing = NewRoutingAgentCaller(std::make_unique<MarkCaller>("http"), std::make_unique<MarkCaller>("kafka"));
  AgentEndpoint h;
  h.name = "a";
  h.transport = AgentTransport::kHttp;
  AgentEndpoint k = Endpoint("b");
  EXPECT_EQ(Start(h, MakeCall(), nullptr, routing.get()).get().output, "http:a");
  EXPECT_EQ(Start(k, MakeCall(), nullptr, routing.get()).get().output, "kafka:b");

  auto http_only = NewRoutingAgentCaller(std::make_unique<MarkCaller>("http"), nullptr);
  EXPECT_EQ(Start(h, MakeCall(), nullptr, http_only.get()).get().output, "http:a");
  AgentReply r = Start(k, MakeCall(), nullptr, http_only.get()).get();
  EXPECT_EQ(r.outcome, Outcome::kPermanent);
  EXPECT_EQ(r.error,
            "agent 'b' uses the kafka transport, but this executor has no Kafka configured. Hint: set KAFKA_BROKERS");
}

}  // namespace
}  // namespace af
