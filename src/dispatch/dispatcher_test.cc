#include "dispatch/dispatcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "storage/forwarding_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/gate.h"

namespace af {
namespace {

using namespace std::chrono_literals;

// A queue that keeps what it is given, or refuses everything while `down`.
class FakeQueue final : public Queue {
 public:
  struct Sent {
    std::string topic, key, payload;
  };
  std::atomic<bool> down{false};

  Status Publish(const std::string& topic, const std::string& key, const std::string& payload) override {
    if (down) return Status::Unavailable("broker unreachable");
    std::lock_guard<std::mutex> lock(mu_);
    sent_.push_back({topic, key, payload});
    return Status::Ok();
  }
  Result<std::unique_ptr<QueueConsumer>> Subscribe(const std::vector<std::string>&, const std::string&) override {
    return Status::Internal("not in this test");
  }
  Status Ping() override { return down ? Status::Unavailable("down") : Status::Ok(); }
  std::vector<Sent> sent() {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }

 private:
  std::mutex mu_;
  std::vector<Sent> sent_;
};

// Reads the outbox's backlog as a slow database would: every GetOutboxStats
// waits at `gate` until the test opens it, then takes `delay` more.
class SlowStatsStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<OutboxStats> GetOutboxStats() override {
    gate.Pass();
    std::this_thread::sleep_for(delay);
    return inner()->GetOutboxStats();
  }
  testing_support::Gate gate;
  std::chrono::milliseconds delay{0};
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqliteStore(":memory:");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    json plan = json::parse(R"({"name": "w", "steps": [{"id": "a", "agent": "echo"}]})");
    auto wf = store_->CreateWorkflow(NewWorkflow{"w", "", plan});
    ASSERT_TRUE(wf.ok());
    wf_ = *wf;
  }

  // A run accepted the way the API accepts one: the row and its request in one transaction.
  std::string Trigger() {
    NewRun nr;
    nr.id = NewRunId();
    nr.workflow_id = wf_.id;
    nr.workflow_version = wf_.version;
    nr.input = json{{"n", 1}};
    af::Run shape;
    shape.id = nr.id;
    shape.input = nr.input;
    nr.dispatch = ExecutionDispatch(shape, wf_, kExecutionTopic);
    auto created = store_->CreateRun(nr);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return nr.id;
  }

  int64_t Backlog() { return store_->GetOutboxStats()->messages; }

  std::unique_ptr<Store> store_;
  Workflow wf_;
  FakeQueue queue_;
};

TEST_F(DispatcherTest, RelayPublishesCommittedRequestsAndEmptiesTheOutbox) {
  Dispatcher d(store_.get(), &queue_);
  std::vector<std::string> ids = {Trigger(), Trigger(), Trigger()};
  EXPECT_EQ(Backlog(), 3);
  auto n = d.RelayOnce();
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 3);
  auto sent = queue_.sent();
  ASSERT_EQ(sent.size(), 3u);
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(sent[i].topic, kExecutionTopic);
    EXPECT_EQ(sent[i].key, ids[i]) << "published oldest first";
    auto parsed = ParseQueueMessage(sent[i].payload);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    const auto& er = std::get<ExecutionRequest>(*parsed);
    EXPECT_EQ(er.run_id, ids[i]);
    EXPECT_EQ(er.workflow_plan, wf_.plan);
    EXPECT_EQ(er.input_data, json({{"n", 1}}));
  }
  EXPECT_EQ(Backlog(), 0);
  EXPECT_EQ(d.published(), 3u);
  EXPECT_EQ(*d.RelayOnce(), 0);
}

TEST_F(DispatcherTest, ABrokerOutageKeepsRequestsUntilItIsBack) {
  DispatcherOptions o;
  o.retry_delay = 0ms;
  Dispatcher d(store_.get(), &queue_, o);
  Trigger();
  Trigger();
  queue_.down = true;
  auto n = d.RelayOnce();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0);
  EXPECT_EQ(d.publish_failures(), 2u);
  EXPECT_EQ(Backlog(), 2) << "nothing is lost while the broker is down";
  auto waiting = store_->ClaimOutbox(10, 0);  // claim_ms 0: still due at once
  ASSERT_TRUE(waiting.ok());
  ASSERT_EQ(waiting->size(), 2u);
  EXPECT_EQ((*waiting)[0].attempts, 1);
  EXPECT_EQ((*waiting)[0].last_error, "broker unreachable");

  queue_.down = false;
  std::this_thread::sleep_for(5ms);
  n = d.RelayOnce();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  EXPECT_EQ(queue_.sent().size(), 2u);
  EXPECT_EQ(Backlog(), 0);
}

TEST_F(DispatcherTest, TheRelayThreadPublishesOnKickAndReportsTheBacklog) {
  DispatcherOptions o;
  o.idle_poll = 10s;  // only a kick can be fast
  Dispatcher d(store_.get(), &queue_, o);
  d.Start();
  std::this_thread::sleep_for(50ms);  // the first, empty, pass is done
  std::string id = Trigger();
  d.Kick();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (queue_.sent().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(queue_.sent().size(), 1u);
  EXPECT_EQ(queue_.sent()[0].key, id);
  d.Stop();
  EXPECT_EQ(Backlog(), 0);
}

TEST_F(DispatcherTest, BacklogIsReadWhileRunning) {
  queue_.down = true;
  DispatcherOptions o;
  o.idle_poll = 20ms;
  Dispatcher d(store_.get(), &queue_, o);
  Trigger();
  Trigger();
  d.Start();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (d.backlog() != 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(d.backlog(), 2);
  EXPECT_GE(d.oldest_age_seconds(), 0.0);
  d.Stop();
}

// Counting the outbox takes seconds with a large backlog (a broker outage's
// millions of rows): the count must hold up no publish. Here it does not
// end until the test ends it.
TEST_F(DispatcherTest, ASlowBacklogCountHoldsUpNoPublish) {
  SlowStatsStore slow(store_.get());
  DispatcherOptions o;
  o.idle_poll = 10s;
  Dispatcher d(&slow, &queue_, o);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  struct OpenFirst {  // destroyed before d: its Stop must not wait for the count
    SlowStatsStore* s;
    ~OpenFirst() { s->gate.Open(); }
  } open_first{&slow};
  d.Start();
  ASSERT_TRUE(slow.gate.WaitForCall(10s)) << "the backlog is read when the dispatcher starts";
  std::string id = Trigger();
  d.Kick();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (queue_.sent().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(queue_.sent().size(), 1u) << "the publish waited for the backlog count";
  EXPECT_EQ(queue_.sent()[0].key, id);
  slow.gate.Open();
  d.Stop();
}

// A read of the backlog that took 100 ms is not made again for 50 times
// that (5 s), whatever stats_interval says: a slow count may use at most a
// fiftieth of a database connection.
TEST_F(DispatcherTest, ASlowBacklogCountIsMadeLessOften) {
  SlowStatsStore slow(store_.get());
  slow.gate.Open();
  slow.delay = 100ms;
  DispatcherOptions o;
  o.stats_interval = 10ms;  // ~9 reads a second if reads were not spaced
  Dispatcher d(&slow, &queue_, o);
  d.Start();
  ASSERT_TRUE(slow.gate.WaitForCall(10s));
  std::this_thread::sleep_for(1s);
  d.Stop();
  EXPECT_EQ(slow.gate.calls(), 1);
  EXPECT_EQ(d.backlog(), 0);
}

TEST_F(DispatcherTest, SweeperDispatchesAStrandedRunOnce) {
  // A run whose request never reached the outbox (written by an older
  // version, or its message was lost): nobody holds it.
  NewRun nr;
  nr.workflow_id = wf_.id;
  nr.workflow_version = wf_.version;
  auto lost = store_->CreateRun(nr);
  ASSERT_TRUE(lost.ok());
  // A run an executor holds is left alone.
  auto held = store_->CreateRun(nr);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(store_->AcquireRunLease(held->run.id, "executor-1", 60000).ok());

  DispatcherOptions o;
  o.stranded_after = 0ms;
  Dispatcher d(store_.get(), &queue_, o);
  auto n = d.SweepOnce();
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(d.redispatched(), 1u);
  ASSERT_EQ(*d.RelayOnce(), 1);
  auto sent = queue_.sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].key, lost->run.id);
  auto parsed = ParseQueueMessage(sent[0].payload);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(std::get<ExecutionRequest>(*parsed).workflow_plan, wf_.plan);

  // Just dispatched: not stranded again for stranded_after.
  DispatcherOptions later;
  later.stranded_after = 60s;
  Dispatcher d2(store_.get(), &queue_, later);
  EXPECT_EQ(*d2.SweepOnce(), 0);
}

// Issue 7: with a backlog (10,000 runs queued for a consumer running 1,000
// at once) nearly every waiting run got a duplicate request from the sweeper.
TEST_F(DispatcherTest, ARunWaitingInABacklogIsNotRedispatchedAtEverySweep) {
  DispatcherOptions o;
  o.stranded_after = 20ms;
  Dispatcher d(store_.get(), &queue_, o);
  std::string id = Trigger();
  ASSERT_EQ(*d.RelayOnce(), 1);  // published; every executor is busy, nobody takes it
  const auto start = std::chrono::steady_clock::now();
  int sweeps = 0;
  while (std::chrono::steady_clock::now() - start < 600ms) {
    auto n = d.SweepOnce();
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ++sweeps;
    std::this_thread::sleep_for(5ms);
  }
  // Re-dispatch k is due 20 x (2^k - 1) ms after the trigger: at most 4 fit
  // in 600 ms (5 with slack), where every sweep after the first 20 ms
  // (most of `sweeps`) used to dispatch it again.
  EXPECT_GE(d.redispatched(), 1u) << "a request that may be lost is still replaced";
  EXPECT_LE(d.redispatched(), 5u) << "over " << sweeps << " sweeps";
  EXPECT_EQ(*d.RelayOnce(), static_cast<int>(d.redispatched()));
  for (const auto& sent : queue_.sent()) EXPECT_EQ(sent.key, id);
}

TEST_F(DispatcherTest, AHandedOverRequestIsPublishedWithoutAClaim) {
  Dispatcher d(store_.get(), &queue_);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  std::string id = Trigger();
  EXPECT_EQ(Backlog(), 1);
  EXPECT_TRUE(store_->ClaimOutbox(10, 60000)->empty()) << "claimed by its writer: no relay needs to claim it";
  EXPECT_EQ(d.PublishHandedOver(), 1);
  ASSERT_EQ(queue_.sent().size(), 1u);
  EXPECT_EQ(queue_.sent()[0].key, id);
  // Counted when the queue took it: a consumer may run it before the settle.
  EXPECT_EQ(d.published(), 1u);
  auto settled = d.SettleHandedOver(5s);
  ASSERT_TRUE(settled.ok()) << settled.status().ToString();
  EXPECT_EQ(*settled, 1);
  EXPECT_EQ(Backlog(), 0) << "deleted once the queue took it";
  EXPECT_EQ(d.published(), 1u);
  EXPECT_EQ(d.PublishHandedOver(), 0);
  EXPECT_EQ(*d.RelayOnce(), 0);
}

TEST_F(DispatcherTest, AHandedOverRequestTheBrokerRefusedIsRetriedByTheRelay) {
  DispatcherOptions o;
  o.retry_delay = 0ms;
  Dispatcher d(store_.get(), &queue_, o);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  queue_.down = true;
  Trigger();
  EXPECT_EQ(d.PublishHandedOver(), 1);
  EXPECT_EQ(d.publish_failures(), 1u) << "counted when the queue refused it";
  ASSERT_TRUE(d.SettleHandedOver(5s).ok());
  EXPECT_EQ(d.publish_failures(), 1u);
  EXPECT_EQ(Backlog(), 1) << "nothing is lost while the broker is down";
  queue_.down = false;
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(*d.RelayOnce(), 1) << "deferred: the claiming relay takes it";
  EXPECT_EQ(Backlog(), 0);
}

TEST_F(DispatcherTest, AHandedOverRequestOutlivesItsWriter) {
  // The writer died between its commit and the publish: its claim lapses
  // and another relay publishes the message.
  ASSERT_TRUE(store_->SetOutboxListener([](const OutboxMessage&) {}, 30));
  std::string orphan = Trigger();
  ASSERT_TRUE(store_->SetOutboxListener({}, 0));
  Dispatcher other(store_.get(), &queue_);
  EXPECT_EQ(*other.RelayOnce(), 0) << "still claimed by its writer";
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(*other.RelayOnce(), 1);
  ASSERT_EQ(queue_.sent().size(), 1u);
  EXPECT_EQ(queue_.sent()[0].key, orphan);

  // A dispatcher stopped before publishing what it was handed leaves it due
  // at once for the others.
  std::string left;
  {
    Dispatcher stopped(store_.get(), &queue_);
    ASSERT_TRUE(stopped.AttachWriter(store_.get()));
    left = Trigger();
    stopped.Stop();
  }
  EXPECT_EQ(*other.RelayOnce(), 1);
  ASSERT_EQ(queue_.sent().size(), 2u);
  EXPECT_EQ(queue_.sent()[1].key, left);
  EXPECT_EQ(Backlog(), 0);
}

TEST_F(DispatcherTest, TheRelayThreadPublishesHandedOverRequestsAtOnce) {
  DispatcherOptions o;
  o.idle_poll = 10s;  // no claim pass after the first, and no Kick: only the fast path publishes
  Dispatcher d(store_.get(), &queue_, o);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  d.Start();
  std::this_thread::sleep_for(50ms);  // the first, empty, claim pass is done
  std::vector<std::string> ids = {Trigger(), Trigger(), Trigger()};
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while ((queue_.sent().size() < 3 || Backlog() > 0) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(queue_.sent().size(), 3u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(queue_.sent()[i].key, ids[i]);
  EXPECT_EQ(Backlog(), 0) << "the settler deleted them";
  d.Stop();
  // Stopped: this process's writes are left to the claiming relays, at once.
  Trigger();
  EXPECT_EQ(*d.RelayOnce(), 1);
}

// Every handoff wakes the relay, whatever it is doing when it comes (a
// lost wake-up would leave a request to the next claim pass, 10 s here).
// Triggers one at a time, each with a kick as the API gives, some while the
// relay is still publishing the one before.
TEST_F(DispatcherTest, EveryHandedOverRequestIsPublishedWithoutWaitingForAClaimPass) {
  DispatcherOptions o;
  o.idle_poll = 10s;
  Dispatcher d(store_.get(), &queue_, o);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  d.Start();
  constexpr size_t kRuns = 300;
  for (size_t i = 1; i <= kRuns; ++i) {
    Trigger();
    d.Kick();
    if (i % 3 == 0) continue;  // the next one comes right behind
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (queue_.sent().size() < i && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_EQ(queue_.sent().size(), i) << "request " << i << " waited for a claim pass";
  }
  d.Stop();
}

TEST_F(DispatcherTest, TheSettlerDeletesTheAnswersOfAnIntervalTogether) {
  DispatcherOptions o;
  o.idle_poll = 10s;          // only the fast path publishes
  o.settle_interval = 1h;     // after the first settle, nothing more until Stop
  Dispatcher d(store_.get(), &queue_, o);
  ASSERT_TRUE(d.AttachWriter(store_.get()));
  d.Start();
  std::this_thread::sleep_for(50ms);  // the first, empty, claim pass is done
  auto wait_for = [](const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return done();
  };
  // The first answer after a quiet spell is settled at once.
  Trigger();
  ASSERT_TRUE(wait_for([&] { return queue_.sent().size() == 1 && Backlog() == 0; }));
  // Answers within the interval wait for the next settle: published, still in
  // the outbox (claimed, so no relay publishes them again).
  Trigger();
  Trigger();
  ASSERT_TRUE(wait_for([&] { return queue_.sent().size() == 3; }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Backlog(), 2) << "settled before the interval was over";
  EXPECT_EQ(*d.RelayOnce(), 0) << "a claimed message was published again";
  // Stop settles what the queue answered.
  d.Stop();
  EXPECT_EQ(Backlog(), 0);
  EXPECT_EQ(queue_.sent().size(), 3u);
}

}  // namespace
}  // namespace af
