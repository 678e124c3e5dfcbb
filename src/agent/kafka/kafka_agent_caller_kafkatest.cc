// KafkaAgentCaller against a broker (agentflow-kafka-mock): requests on the
// agent's topic, a fake agent answering on the reply topic, replies read by
// assignment from the end of the reply topic. One mock per test process
// (ctest runs each test in its own).
#include "agent/kafka/kafka_agent_caller.h"

#include <atomic>
#include <functional>
#include <future>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/log.h"
#include "executor/loop.h"
#include "queue/kafka/kafka_queue.h"
#include "support/kafka_mock.h"

namespace af {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Outcome = AgentReply::Outcome;

KafkaMock& Mock() {
  static std::unique_ptr<KafkaMock> mock = [] {
    log::InitFromEnv();
    auto m = KafkaMock::Start();
    if (!m.ok()) {
      ADD_FAILURE() << m.status().ToString();
      std::abort();
    }
    return std::move(m).value();
  }();
  return *mock;
}

// Low-latency settings for the mock (it answers a fetch only when
// fetch.wait.max.ms expires).
QueueOptions TestKafka() {
  QueueOptions o;
  o.kafka_brokers = Mock().brokers();
  o.client_id = "af-agent-kafkatest";
  o.kafka_properties = {{"fetch.wait.max.ms", "5"},
                        {"session.timeout.ms", "4000"},
                        {"heartbeat.interval.ms", "500"},
                        {"reconnect.backoff.max.ms", "500"}};
  return o;
}

asio::awaitable<void> DoCall(AgentCaller* caller, AgentEndpoint endpoint, AgentCall call, CancelSignal* cancel,
                             std::shared_ptr<std::promise<AgentReply>> out) {
  AgentReply r = co_await caller->Call(endpoint, call, cancel);
  out->set_value(std::move(r));
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 30s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

using Behaviour = std::function<std::vector<std::string>(const AgentRequestMessage&)>;

// An agent speaking the Kafka transport: consumes its request topic in a
// group and publishes what `behaviour` returns on each request's reply topic.
class FakeKafkaAgent {
 public:
  FakeKafkaAgent(const std::string& topic, Behaviour behaviour) : behaviour_(std::move(behaviour)) {
    auto q = OpenKafkaQueue(TestKafka());
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    queue_ = std::move(q).value();
    auto sub = queue_->Subscribe({topic}, "fake-agent-" + NewUuid());
    EXPECT_TRUE(sub.ok()) << sub.status().ToString();
    consumer_ = std::move(sub).value();
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeKafkaAgent() {
    stop_ = true;
    thread_.join();
    consumer_->Close();
  }
  std::vector<AgentRequestMessage> Requests() {
    std::lock_guard lk(mu_);
    return requests_;
  }
  // Publishes a reply as the agent would.
  void Reply(const AgentRequestMessage& r, const std::string& payload) {
    Status s = queue_->Publish(r.reply_topic, r.run_id, payload);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

 private:
  void Run() {
    while (!stop_) {
      auto ms = consumer_->Poll(16, 100ms);
      if (!ms.ok()) return;
      for (const QueueMessage& m : *ms) {
        (void)consumer_->Ack(m);
        auto req = ParseAgentRequest(m.payload);
        EXPECT_TRUE(req.ok()) << req.status().ToString();
        if (!req.ok()) continue;
        EXPECT_EQ(m.key, req->run_id);
        {
          std::lock_guard lk(mu_);
          requests_.push_back(*req);
        }
        for (const std::string& reply : behaviour_(*req)) Reply(*req, reply);
      }
    }
  }

  Behaviour behaviour_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<QueueConsumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<AgentRequestMessage> requests_;
};

std::string Ok(const AgentRequestMessage& r, json output) {
  AgentReplyMessage m;
  m.correlation_id = r.correlation_id;
  m.output = std::move(output);
  return SerializeAgentReply(m);
}

std::string Error(const AgentRequestMessage& r, const std::string& error, bool retryable) {
  AgentReplyMessage m;
  m.correlation_id = r.correlation_id;
  m.ok = false;
  m.error = error;
  m.retryable = retryable;
  return SerializeAgentReply(m);
}

class KafkaAgentCallerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reply_topic_ = "replies-" + NewUuid();
    caller_ = NewCaller();
    loop_.Start();
  }
  void TearDown() override {
    loop_.Stop();
    callers_.clear();
  }

  KafkaAgentCaller* NewCaller() {
    KafkaAgentCallerOptions o;
    o.kafka = TestKafka();
    o.reply_topic = reply_topic_;
    auto c = NewKafkaAgentCaller(loop_.executor(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    callers_.push_back(std::move(c).value());
    return callers_.back().get();
  }

  static AgentEndpoint Endpoint(const std::string& topic) {
    AgentEndpoint e;
    e.name = "fake";
    e.transport = AgentTransport::kKafka;
    e.topic = topic;
    return e;
  }
  static AgentCall MakeCall(const std::string& step, int64_t timeout_ms = 30000) {
    AgentCall c;
    c.run_id = "run-" + NewUuid();
    c.step_id = step;
    c.attempt = 1;
    c.input = {{"step", step}};
    c.timeout_ms = timeout_ms;
    return c;
  }

  std::future<AgentReply> Start(const AgentEndpoint& e, const AgentCall& c, CancelSignal* cancel = nullptr,
                                AgentCaller* caller = nullptr) {
    auto out = std::make_shared<std::promise<AgentReply>>();
    std::future<AgentReply> f = out->get_future();
    asio::co_spawn(loop_.executor(), DoCall(caller ? caller : caller_, e, c, cancel, out), asio::detached);
    return f;
  }
  AgentReply Call(const AgentEndpoint& e, const AgentCall& c, AgentCaller* caller = nullptr) {
    std::future<AgentReply> f = Start(e, c, nullptr, caller);
    EXPECT_EQ(f.wait_for(90s), std::future_status::ready);
    return f.get();
  }

  EventLoop loop_{1};
  std::string reply_topic_;
  std::vector<std::unique_ptr<KafkaAgentCaller>> callers_;
  KafkaAgentCaller* caller_ = nullptr;
};

TEST_F(KafkaAgentCallerTest, RoundTripThroughTheBroker) {
  const std::string topic = "agent.echo-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, {{"echo", r.input}, {"attempt", r.attempt}})};
  });
  // The first call also waits for the fake agent's group to form.
  AgentReply first = Call(Endpoint(topic), MakeCall("first", 60000));
  ASSERT_EQ(first.outcome, Outcome::kOk) << first.error;
  EXPECT_EQ(first.output, json({{"echo", {{"step", "first"}}}, {"attempt", 1}}));

  std::vector<std::future<AgentReply>> calls;
  for (int i = 0; i < 20; ++i) calls.push_back(Start(Endpoint(topic), MakeCall("s" + std::to_string(i))));
  for (int i = 0; i < 20; ++i) {
    AgentReply r = calls[i].get();
    ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
    EXPECT_EQ(r.output["echo"]["step"], json("s" + std::to_string(i)));
  }
  auto requests = agent.Requests();
  ASSERT_EQ(requests.size(), 21u);
  EXPECT_EQ(requests[0].reply_topic, reply_topic_);
  EXPECT_EQ(caller_->stats().matched, 21u);
}

TEST_F(KafkaAgentCallerTest, ErrorRepliesAreRetryableOrPermanent) {
  const std::string topic = "agent.err-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Error(r, "no: " + r.step_id, r.step_id == "retry")};
  });
  AgentReply retry = Call(Endpoint(topic), MakeCall("retry", 60000));
  EXPECT_EQ(retry.outcome, Outcome::kRetryable);
  EXPECT_EQ(retry.error, "no: retry");
  AgentReply permanent = Call(Endpoint(topic), MakeCall("never"));
  EXPECT_EQ(permanent.outcome, Outcome::kPermanent);
  EXPECT_EQ(permanent.error, "no: never");
}

TEST_F(KafkaAgentCallerTest, TimeoutThenTheLateReplyIsIgnored) {
  const std::string topic = "agent.late-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) {
    if (r.step_id == "late") return std::vector<std::string>{};  // answered below, too late
    return std::vector<std::string>{Ok(r, r.step_id)};
  });
  ASSERT_EQ(Call(Endpoint(topic), MakeCall("warmup", 60000)).outcome, Outcome::kOk);
  AgentReply late = Call(Endpoint(topic), MakeCall("late", 1000));
  EXPECT_EQ(late.outcome, Outcome::kRetryable);
  EXPECT_EQ(late.error, "timed out after 1000 ms");
  ASSERT_TRUE(WaitUntil([&] { return agent.Requests().size() == 2; }));
  agent.Reply(agent.Requests()[1], Ok(agent.Requests()[1], "too late"));
  EXPECT_TRUE(WaitUntil([&] { return caller_->stats().ignored == 1; })) << "the late reply is read and ignored";
  AgentReply after = Call(Endpoint(topic), MakeCall("after"));
  ASSERT_EQ(after.outcome, Outcome::kOk);
  EXPECT_EQ(after.output, "after");
}

TEST_F(KafkaAgentCallerTest, DuplicateRepliesAreIgnored) {
  const std::string topic = "agent.dup-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, "first"), Ok(r, "second")};
  });
  AgentReply r = Call(Endpoint(topic), MakeCall("dup", 60000));
  ASSERT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.output, "first");
  EXPECT_TRUE(WaitUntil([&] { return caller_->stats().ignored == 1; }));
  EXPECT_EQ(caller_->stats().matched, 1u);
}

TEST_F(KafkaAgentCallerTest, CancelWhileTheAgentWorks) {
  const std::string topic = "agent.slow-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage&) { return std::vector<std::string>{}; });
  CancelSignal cancel;
  std::future<AgentReply> f = Start(Endpoint(topic), MakeCall("slow", 120000), &cancel);
  ASSERT_TRUE(WaitUntil([&] { return agent.Requests().size() == 1; }, 60s));
  asio::post(loop_.executor(), [&cancel] { cancel.Cancel("stopped by test"); });
  ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
  AgentReply r = f.get();
  EXPECT_EQ(r.outcome, Outcome::kCancelled);
  EXPECT_NE(r.error.find("stopped by test"), std::string::npos) << r.error;
}

TEST_F(KafkaAgentCallerTest, TwoExecutorsOnOneReplyTopicEachGetOnlyTheirReplies) {
  KafkaAgentCaller* other = NewCaller();
  const std::string topic = "agent.shared-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) {
    return std::vector<std::string>{Ok(r, r.input["step"])};
  });
  ASSERT_EQ(Call(Endpoint(topic), MakeCall("warmup", 60000)).outcome, Outcome::kOk);
  std::vector<std::future<AgentReply>> mine, theirs;
  for (int i = 0; i < 10; ++i) {
    mine.push_back(Start(Endpoint(topic), MakeCall("mine" + std::to_string(i))));
    theirs.push_back(Start(Endpoint(topic), MakeCall("theirs" + std::to_string(i)), nullptr, other));
  }
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(mine[i].get().output, json("mine" + std::to_string(i)));
    EXPECT_EQ(theirs[i].get().output, json("theirs" + std::to_string(i)));
  }
  // Each saw the other's replies on the shared topic and dropped them.
  EXPECT_TRUE(WaitUntil([&] { return caller_->stats().foreign >= 10 && other->stats().foreign >= 10; }))
      << caller_->stats().foreign << " " << other->stats().foreign;
  EXPECT_EQ(other->stats().matched, 10u);
}

TEST_F(KafkaAgentCallerTest, RepliesWrittenBeforeTheCallerStartedAreNotRead) {
  // Junk on a fresh reply topic, before a second caller on it starts.
  const std::string topic = "agent.echo2-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) { return std::vector<std::string>{Ok(r, "ok")}; });
  ASSERT_EQ(Call(Endpoint(topic), MakeCall("warmup", 60000)).outcome, Outcome::kOk);  // the topic exists now
  auto q = OpenKafkaQueue(TestKafka());
  ASSERT_TRUE(q.ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*q)->Publish(reply_topic_, "run-old-" + std::to_string(i), "old junk").ok());
  KafkaAgentCaller* late_starter = NewCaller();
  AgentReply r = Call(Endpoint(topic), MakeCall("fresh", 60000), late_starter);
  ASSERT_EQ(r.outcome, Outcome::kOk) << r.error;
  EXPECT_EQ(late_starter->stats().malformed, 0u) << "it started reading at the end of the topic";
  // Read by the running caller's own reader thread, which may be behind
  // `late_starter`'s: wait for it.
  EXPECT_TRUE(WaitUntil([&] { return caller_->stats().malformed >= 20u; }))
      << "the caller that was running did read them: " << caller_->stats().malformed;
}

TEST_F(KafkaAgentCallerTest, RequestThatCannotBeWrittenFailsRetryably) {
  KafkaAgentCallerOptions o;
  o.kafka = TestKafka();
  o.kafka.kafka_properties["message.timeout.ms"] = "1000";
  o.reply_topic = reply_topic_;
  auto made = NewKafkaAgentCaller(loop_.executor(), o);
  ASSERT_TRUE(made.ok());
  callers_.push_back(std::move(made).value());
  KafkaAgentCaller* quick = callers_.back().get();
  const std::string topic = "agent.gone-" + NewUuid() + ".requests";
  FakeKafkaAgent agent(topic, [](const AgentRequestMessage& r) { return std::vector<std::string>{Ok(r, "ok")}; });
  ASSERT_EQ(Call(Endpoint(topic), MakeCall("warmup", 60000), quick).outcome, Outcome::kOk);
  Mock().Pause();  // the brokers stop answering
  AgentReply r = Call(Endpoint(topic), MakeCall("lost", 60000), quick);
  Mock().Resume();
  EXPECT_EQ(r.outcome, Outcome::kRetryable);
  EXPECT_NE(r.error.find("could not send the request to agent 'fake' on Kafka topic " + topic), std::string::npos)
      << r.error;
}

}  // namespace
}  // namespace af
