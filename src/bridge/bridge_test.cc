// The bridge end to end in one process: requests published on an agent's
// topic, the bridge calling HTTP agents (the demo agents, and a "gate" agent
// that holds its requests until the test lets them go), replies read from
// the reply topic. Built twice: on the embedded queue (bridge_test) and on
// Kafka through agentflow-kafka-mock (bridge_kafkatest, AF_BRIDGE_TEST_KAFKA).
#include "bridge/bridge.h"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include "agent/demo_agents.h"
#include "common/ids.h"
#include "common/log.h"
#include "executor/loop.h"
#include "http/http.h"

#ifdef AF_BRIDGE_TEST_KAFKA
#include "queue/kafka/kafka_queue.h"
#include "support/kafka_mock.h"
#endif

namespace af {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

#ifdef AF_BRIDGE_TEST_KAFKA
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
Result<std::unique_ptr<Queue>> OpenTestQueue() {
  QueueOptions o;
  o.kafka_brokers = Mock().brokers();
  o.client_id = "af-bridge-kafkatest";
  o.kafka_properties = {{"fetch.wait.max.ms", "5"},
                        {"session.timeout.ms", "4000"},
                        {"heartbeat.interval.ms", "500"},
                        {"reconnect.backoff.max.ms", "500"}};
  return OpenKafkaQueue(o);
}
// Group joins and rebalances take seconds on the mock.
constexpr auto kArrival = 60s;
#else
Result<std::unique_ptr<Queue>> OpenTestQueue() { return OpenEmbeddedQueue(QueueOptions{}); }
constexpr auto kArrival = 20s;
#endif

bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kArrival) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// An HTTP agent that holds every request until Release(), counting how many
// it holds at once; then answers {"held": true, "input": <input>}.
class GateAgent {
 public:
  GateAgent() {
    http::ServerOptions so;
    auto server = http::StartServer(so, [this](http::Request& req) -> asio::awaitable<http::Response> {
      int now = ++holding_;
      ++arrived_;
      int seen = max_holding_.load();
      while (now > seen && !max_holding_.compare_exchange_weak(seen, now)) {
      }
      asio::steady_timer timer(co_await asio::this_coro::executor);
      while (!released_) {
        timer.expires_after(5ms);
        co_await timer.async_wait(asio::use_awaitable);
      }
      --holding_;
      json body = json::parse(req.body, nullptr, false);
      co_return http::JsonResponse(200, {{"held", true}, {"input", body.is_object() ? body["input"] : json()}});
    });
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }
  ~GateAgent() {
    released_ = true;
    server_->Stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()) + "/gate"; }
  void Release() { released_ = true; }
  int holding() const { return holding_.load(); }
  int max_holding() const { return max_holding_.load(); }
  int arrived() const { return arrived_.load(); }

 private:
  std::unique_ptr<http::Server> server_;
  std::atomic<bool> released_{false};
  std::atomic<int> holding_{0}, max_holding_{0}, arrived_{0};
};

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto q = OpenTestQueue();
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    queue_ = std::move(q).value();
    auto demo = StartDemoAgents("127.0.0.1", 0);
    ASSERT_TRUE(demo.ok()) << demo.status().ToString();
    demo_ = std::move(demo).value();
    // As `agentflow bridge` makes it: loop_ has one thread.
    HttpAgentCallerOptions http_options;
    http_options.one_thread = true;
    http_ = NewHttpAgentCaller(loop_.executor(), http_options);
    loop_.Start();
    id_ = NewUuid().substr(0, 8);
    reply_topic_ = "replies-" + id_;
    group_ = "bridge-" + id_;
    // Replies are read by a group of their own, from the start of the topic.
    auto sub = queue_->Subscribe({reply_topic_}, "test-readers-" + id_);
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    replies_consumer_ = std::move(sub).value();
    reader_ = std::thread([this] {
      while (!stop_reader_) {
        auto ms = replies_consumer_->Poll(64, 100ms);
        if (!ms.ok()) return;
        for (const QueueMessage& m : *ms) {
          (void)replies_consumer_->Ack(m);
          auto reply = ParseAgentReply(m.payload);
          EXPECT_TRUE(reply.ok()) << reply.status().ToString();
          if (!reply.ok()) continue;
          std::lock_guard lk(mu_);
          replies_.emplace_back(m.key, *reply);
        }
      }
    });
  }

  void TearDown() override {
    bridges_.clear();
    stop_reader_ = true;
    if (reader_.joinable()) reader_.join();
    if (replies_consumer_) replies_consumer_->Close();
    loop_.Stop();
    if (demo_) demo_->Stop();
  }

  std::string Topic(const std::string& agent) const { return "agent." + agent + "-" + id_ + ".requests"; }

  BridgedAgent Demo(const std::string& name) const {
    return BridgedAgent{name, demo_->base_url() + "/agents/" + name, Topic(name)};
  }

  Bridge* StartBridge(std::vector<BridgedAgent> agents, int max_in_flight = 64) {
    BridgeOptions o;
    o.agents = std::move(agents);
    o.group = group_;
    o.max_in_flight = max_in_flight;
    o.poll_wait = 100ms;
    bridges_.push_back(std::make_unique<Bridge>(queue_.get(), loop_.executor(), http_.get(), o));
    Status s = bridges_.back()->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return bridges_.back().get();
  }

  // Publishes a request for `step` on `topic`; returns its correlation id.
  std::string Send(const std::string& topic, const std::string& step, json input, int64_t timeout_ms = 120000,
                   std::optional<int> item = std::nullopt, const std::string& run_id = "run-1",
                   const std::string& traceparent = "") {
    AgentCall call;
    call.traceparent = traceparent;
    call.run_id = run_id;
    call.step_id = step;
    call.item_index = item;
    call.attempt = 1;
    call.input = std::move(input);
    std::string id = "test-" + step + "-" + NewUuid();
    AgentRequestMessage m = MakeAgentRequest(call, reply_topic_, id, NowMs() + timeout_ms);
    Status s = queue_->Publish(topic, run_id, SerializeAgentRequest(m));
    EXPECT_TRUE(s.ok()) << s.ToString();
    return id;
  }

  std::optional<AgentReplyMessage> ReplyTo(const std::string& id) {
    std::lock_guard lk(mu_);
    for (const auto& [key, r] : replies_) {
      if (r.correlation_id == id) return r;
    }
    return std::nullopt;
  }
  AgentReplyMessage WaitReply(const std::string& id, std::chrono::milliseconds timeout = kArrival) {
    std::optional<AgentReplyMessage> r;
    bool got = WaitUntil([&] { return (r = ReplyTo(id)).has_value(); }, timeout);
    EXPECT_TRUE(got) << "no reply to " << id;
    return r.value_or(AgentReplyMessage{});
  }
  size_t RepliesTo(const std::string& id) {
    std::lock_guard lk(mu_);
    size_t n = 0;
    for (const auto& [key, r] : replies_) n += r.correlation_id == id;
    return n;
  }
  std::string KeyOf(const std::string& id) {
    std::lock_guard lk(mu_);
    for (const auto& [key, r] : replies_) {
      if (r.correlation_id == id) return key;
    }
    return "";
  }

  EventLoop loop_{1};
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<DemoAgents> demo_;
  std::unique_ptr<AgentCaller> http_;
  std::vector<std::unique_ptr<Bridge>> bridges_;
  std::string id_, reply_topic_, group_;
  std::unique_ptr<QueueConsumer> replies_consumer_;
  std::thread reader_;
  std::atomic<bool> stop_reader_{false};
  std::mutex mu_;
  std::vector<std::pair<std::string, AgentReplyMessage>> replies_;  // (key, reply)
};

// The two builds register their tests under different names (ctest needs
// unique names; the Kafka ones carry the kafka label).
class BridgeKafkaTest : public BridgeTest {};
#ifdef AF_BRIDGE_TEST_KAFKA
#define BRIDGE_TEST(name) TEST_F(BridgeKafkaTest, name)
#else
#define BRIDGE_TEST(name) TEST_F(BridgeTest, name)
#endif

BRIDGE_TEST(RequestIsAnsweredByTheHttpAgentOnTheReplyTopic) {
  Bridge* bridge = StartBridge({Demo("echo"), Demo("sleep"), Demo("fail")});
  std::string echo = Send(Topic("echo"), "one", {{"x", 1}});
  AgentReplyMessage r = WaitReply(echo);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.output, json({{"echo", {{"x", 1}}}}));
  EXPECT_EQ(KeyOf(echo), "run-1") << "keyed by run_id";

  // The HTTP agent gets the protocol's Idempotency-Key, for_each index included.
  std::string sleep = Send(Topic("sleep"), "each", {{"ms", 1}, {"count_calls", true}}, 120000, 2, "run-2");
  AgentReplyMessage s = WaitReply(sleep);
  ASSERT_TRUE(s.ok) << s.error;
  EXPECT_EQ(s.output["idempotency_key"], "run-2/each/2");

  // HTTP failures keep their classification.
  std::string retryable = Send(Topic("fail"), "boom", {{"message", "down"}});
  std::string permanent = Send(Topic("fail"), "bad", {{"permanent", true}});
  AgentReplyMessage rr = WaitReply(retryable);
  EXPECT_FALSE(rr.ok);
  EXPECT_TRUE(rr.retryable);
  EXPECT_NE(rr.error.find("HTTP 500"), std::string::npos) << rr.error;
  AgentReplyMessage pr = WaitReply(permanent);
  EXPECT_FALSE(pr.ok);
  EXPECT_FALSE(pr.retryable);
  EXPECT_NE(pr.error.find("HTTP 400"), std::string::npos) << pr.error;
  // At least: on Kafka, a rebalance while the bridge's consumers join may
  // deliver a handled request again before its commit, and it is answered twice.
  // The bridge counts a reply after its write is confirmed, which may be just
  // after the reply reached our reader.
  EXPECT_TRUE(WaitUntil([&] { return bridge->stats().replied >= 4u; })) << bridge->stats().replied;
}

BRIDGE_TEST(TheRequestsTraceparentReachesTheHttpAgentAsItsHeader) {
  StartBridge({Demo("echo")});
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  json ask = {{"echo_headers", {"traceparent"}}};
  std::string traced = Send(Topic("echo"), "traced", ask, 120000, std::nullopt, "run-1", tp);
  std::string plain = Send(Topic("echo"), "plain", ask);
  AgentReplyMessage t = WaitReply(traced);
  ASSERT_TRUE(t.ok) << t.error;
  EXPECT_EQ(t.output["headers"]["traceparent"], tp);
  AgentReplyMessage p = WaitReply(plain);
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_TRUE(p.output["headers"]["traceparent"].is_null()) << p.output.dump();
}

BRIDGE_TEST(MalformedAndExpiredRequestsAreSkippedWithoutBlockingTheTopic) {
  Bridge* bridge = StartBridge({Demo("echo")});
  ASSERT_TRUE(queue_->Publish(Topic("echo"), "run-1", "{this is not json").ok());
  ASSERT_TRUE(queue_->Publish(Topic("echo"), "run-1", R"({"run_id": "run-1"})").ok());
  std::string expired = Send(Topic("echo"), "late", json::object(), /*timeout_ms=*/-1000);
  std::string good = Send(Topic("echo"), "good", {{"after", "junk"}});
  EXPECT_TRUE(WaitReply(good).ok);
  EXPECT_TRUE(WaitUntil([&] { return bridge->stats().malformed == 2 && bridge->stats().expired == 1; }))
      << bridge->stats().malformed << " " << bridge->stats().expired;
  EXPECT_EQ(RepliesTo(expired), 0u) << "the executor gave up on it: no call, no reply";
  EXPECT_TRUE(WaitUntil([&] { return bridge->InFlight() == 0; }));
}

BRIDGE_TEST(ASlowAgentDoesNotHoldUpAnother) {
  GateAgent gate;
  Bridge* bridge = StartBridge({Demo("echo"), BridgedAgent{"slow", gate.url(), Topic("slow")}}, /*max_in_flight=*/1);
  std::vector<std::string> slow;
  for (int i = 0; i < 3; ++i) slow.push_back(Send(Topic("slow"), "slow" + std::to_string(i), {{"i", i}}));
  ASSERT_TRUE(WaitUntil([&] { return gate.holding() == 1; })) << "the slow agent got its first request";
  // The slow agent is at its limit with two more waiting; echo still answers.
  std::string quick = Send(Topic("echo"), "quick", {{"q", 1}});
  AgentReplyMessage r = WaitReply(quick);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(gate.holding(), 1);
  for (const auto& id : slow) EXPECT_EQ(RepliesTo(id), 0u);
  gate.Release();
  for (const auto& id : slow) EXPECT_TRUE(WaitReply(id).ok);
  EXPECT_EQ(gate.max_holding(), 1);
  // At least: on Kafka, a rebalance while the bridge's consumers join may
  // deliver a handled request again before its commit, and it is answered twice.
  // The bridge counts a reply after its write is confirmed, which may be just
  // after the reply reached our reader.
  EXPECT_TRUE(WaitUntil([&] { return bridge->stats().replied >= 4u; })) << bridge->stats().replied;
}

BRIDGE_TEST(InFlightCallsPerAgentAreBounded) {
  GateAgent gate;
  Bridge* bridge = StartBridge({BridgedAgent{"gate", gate.url(), Topic("gate")}}, /*max_in_flight=*/2);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(Send(Topic("gate"), "s" + std::to_string(i), {{"i", i}}));
  ASSERT_TRUE(WaitUntil([&] { return gate.holding() == 2; }));
  // However long we look, no third call starts while two are held.
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(gate.holding(), 2);
  EXPECT_EQ(gate.arrived(), 2);
  EXPECT_EQ(bridge->InFlight(), 2u);
  gate.Release();
  for (const auto& id : ids) EXPECT_TRUE(WaitReply(id).ok);
  EXPECT_EQ(gate.max_holding(), 2);
  EXPECT_EQ(gate.arrived(), 6);
}

BRIDGE_TEST(GracefulStopAnswersWhatIsInFlight) {
  GateAgent gate;
  Bridge* bridge = StartBridge({BridgedAgent{"gate", gate.url(), Topic("gate")}});
  std::string id = Send(Topic("gate"), "held", {{"x", 1}});
  ASSERT_TRUE(WaitUntil([&] { return gate.holding() == 1; }));
  bridge->StopTaking();
  gate.Release();
  EXPECT_TRUE(bridge->WaitIdle(kArrival));
  EXPECT_TRUE(WaitReply(id).ok);
  bridge->Stop();
  EXPECT_EQ(bridge->stats().replied, 1u);
}

BRIDGE_TEST(RequestInFlightWhenTheBridgeStopsIsAnsweredByTheNextOne) {
  GateAgent gate;
  Bridge* first = StartBridge({BridgedAgent{"gate", gate.url(), Topic("gate")}});
  std::string id = Send(Topic("gate"), "held", {{"x", 1}});
  ASSERT_TRUE(WaitUntil([&] { return gate.holding() == 1; }));
  first->Stop();  // no grace: the call is abandoned, the request stays unacked
  EXPECT_EQ(RepliesTo(id), 0u);
  EXPECT_EQ(first->stats().replied, 0u);
  gate.Release();
  Bridge* second = StartBridge({BridgedAgent{"gate", gate.url(), Topic("gate")}});
  EXPECT_TRUE(WaitReply(id).ok) << "the request was delivered again and answered";
  // Counted once its write is confirmed, which may be just after we read it.
  EXPECT_TRUE(WaitUntil([&] { return second->stats().replied >= 1u; }));
  EXPECT_EQ(second->stats().replied, 1u);
}

// Embedded queue only: on Kafka each bridge's join would take a rebalance.
#ifndef AF_BRIDGE_TEST_KAFKA
TEST_F(BridgeTest, RequestsArrivingWhileItStopsAreLeftForTheNextBridge) {
  // Requests keep coming while bridges stop, one after another. Whatever a
  // bridge took, it finished before its Stop returned: nothing of it runs
  // later (it would run against a bridge its owner may have destroyed).
  std::mutex ids_mu;
  std::vector<std::string> ids;
  for (int round = 0; round < 8; ++round) {
    Bridge* bridge = StartBridge({Demo("echo")});
    std::atomic<bool> sending{true};
    std::thread sender([&] {
      for (int i = 0; sending && i < 400; ++i) {
        std::string id = Send(Topic("echo"), "r" + std::to_string(round), {{"i", i}});
        {
          std::lock_guard lk(ids_mu);
          ids.push_back(id);
        }
        std::this_thread::sleep_for(1ms);
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + 15 * round));
    bridge->Stop();
    EXPECT_EQ(bridge->InFlight(), 0u) << "round " << round << ": a request was still running after Stop returned";
    uint64_t taken = bridge->stats().requests, replied = bridge->stats().replied;
    sending = false;
    sender.join();
    std::this_thread::sleep_for(150ms);
    EXPECT_EQ(bridge->stats().requests, taken) << "round " << round;
    EXPECT_EQ(bridge->stats().replied, replied) << "round " << round;
  }
  // The requests no bridge finished are delivered again, to the next one.
  StartBridge({Demo("echo")});
  for (const std::string& id : ids) EXPECT_TRUE(WaitReply(id).ok) << id;
}
#endif

BRIDGE_TEST(StartRejectsBadConfigurations) {
  BridgeOptions o;
  o.group = group_;
  Bridge none(queue_.get(), loop_.executor(), http_.get(), o);
  EXPECT_EQ(none.Start().code(), Code::kInvalidArgument);
  o.agents = {Demo("echo"), Demo("echo")};
  Bridge twice(queue_.get(), loop_.executor(), http_.get(), o);
  EXPECT_EQ(twice.Start().code(), Code::kInvalidArgument);
  o.agents = {BridgedAgent{"a", "http://127.0.0.1:1/", "same"}, BridgedAgent{"b", "http://127.0.0.1:1/", "same"}};
  Bridge shared(queue_.get(), loop_.executor(), http_.get(), o);
  EXPECT_EQ(shared.Start().code(), Code::kInvalidArgument);
  o.agents = {BridgedAgent{"a", "http://127.0.0.1:1/", "bad topic"}};
  Bridge bad(queue_.get(), loop_.executor(), http_.get(), o);
  EXPECT_EQ(bad.Start().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace af
