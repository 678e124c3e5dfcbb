#include "storage/change_feed.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "storage/sqlite/sqlite_store.h"

namespace af {
namespace {

template <typename T>
T Must(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.status().ToString());
  return std::move(r).value();
}

// Records what a listener receives.
class Recorder {
 public:
  ChangeFeed::Listener listener() {
    return [this](const Change& c) {
      std::lock_guard<std::mutex> lock(mu_);
      changes_.push_back(c);
    };
  }
  std::vector<Change> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(changes_, {});
  }

 private:
  std::mutex mu_;
  std::vector<Change> changes_;
};

Change RunChange(const std::string& run_id, RunStatus s) { return Change{Change::Kind::kRun, run_id, s, 0}; }

// ---------------------------------------------------------------- ChangeFeed

TEST(ChangeFeedTest, DeliversToSubscribersOfTheRunAndOfAllRuns) {
  ChangeFeed feed;
  Recorder one, all, other;
  feed.Subscribe("run-1", one.listener());
  feed.Subscribe("", all.listener());
  feed.Subscribe("run-2", other.listener());

  feed.Publish(RunChange("run-1", RunStatus::kRunning));
  feed.Publish(Change{Change::Kind::kStep, "run-3", std::nullopt, 7});

  auto got_one = one.Take();
  ASSERT_EQ(got_one.size(), 1u);
  EXPECT_EQ(got_one[0].kind, Change::Kind::kRun);
  EXPECT_EQ(got_one[0].run_id, "run-1");
  EXPECT_EQ(got_one[0].run_status, RunStatus::kRunning);
  auto got_all = all.Take();
  ASSERT_EQ(got_all.size(), 2u);
  EXPECT_EQ(got_all[1].kind, Change::Kind::kStep);
  EXPECT_EQ(got_all[1].step_execution_id, 7);
  EXPECT_TRUE(other.Take().empty());
}

TEST(ChangeFeedTest, TheEndedRunIsMadeOnlyWhenSomeoneHearsTheChange) {
  ChangeFeed feed;
  int made = 0;
  auto ended = [&made] {
    ++made;
    af::Run r;
    r.id = "run-1";
    r.status = RunStatus::kCompleted;
    return std::make_shared<const af::Run>(std::move(r));
  };
  feed.Publish(RunChange("run-1", RunStatus::kCompleted), ended);
  EXPECT_EQ(made, 0);  // nobody listens
  Recorder other;
  uint64_t t2 = feed.Subscribe("run-2", other.listener());
  feed.Publish(RunChange("run-1", RunStatus::kCompleted), ended);
  EXPECT_EQ(made, 0);  // nobody listens to run-1
  Recorder one, all;
  uint64_t t1 = feed.Subscribe("run-1", one.listener(), ChangeFeed::Interest::kRuns);
  uint64_t ta = feed.Subscribe("", all.listener());
  feed.Publish(RunChange("run-1", RunStatus::kCompleted), ended);
  EXPECT_EQ(made, 1);  // once for both listeners
  auto got_one = one.Take();
  auto got_all = all.Take();
  ASSERT_EQ(got_one.size(), 1u);
  ASSERT_EQ(got_all.size(), 1u);
  ASSERT_NE(got_one[0].ended, nullptr);
  EXPECT_EQ(got_one[0].ended->id, "run-1");
  EXPECT_EQ(got_one[0].ended, got_all[0].ended);  // one copy, shared
  EXPECT_TRUE(other.Take().empty());
  // Without a maker the change carries no run.
  feed.Publish(RunChange("run-1", RunStatus::kCompleted));
  ASSERT_EQ(one.Take().size(), 1u);
  EXPECT_EQ(all.Take().at(0).ended, nullptr);
  feed.Unsubscribe(t1);
  feed.Unsubscribe(ta);
  feed.Unsubscribe(t2);
  feed.Publish(RunChange("run-1", RunStatus::kCompleted), ended);
  EXPECT_EQ(made, 1);
}

TEST(ChangeFeedTest, UnsubscribeStopsDelivery) {
  ChangeFeed feed;
  Recorder a, b;
  uint64_t ta = feed.Subscribe("run-1", a.listener());
  uint64_t tb = feed.Subscribe("run-1", b.listener());
  EXPECT_NE(ta, tb);
  feed.Unsubscribe(ta);
  feed.Publish(RunChange("run-1", RunStatus::kCompleted));
  EXPECT_TRUE(a.Take().empty());
  EXPECT_EQ(b.Take().size(), 1u);
  feed.Unsubscribe(tb);
  feed.Unsubscribe(tb);      // twice: harmless
  feed.Unsubscribe(999999);  // unknown: harmless
  feed.Publish(RunChange("run-1", RunStatus::kCompleted));
  EXPECT_TRUE(b.Take().empty());
}

TEST(ChangeFeedTest, ListenersMayUnsubscribeAndSubscribeFromTheCallback) {
  ChangeFeed feed;
  uint64_t token = 0;
  int calls = 0;
  Recorder late;
  token = feed.Subscribe("", [&](const Change&) {
    ++calls;
    feed.Unsubscribe(token);  // listeners run outside the feed's lock
    feed.Subscribe("", late.listener());
  });
  feed.Publish(RunChange("r", RunStatus::kPending));
  feed.Publish(RunChange("r", RunStatus::kRunning));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(late.Take().size(), 1u) << "subscribed during the first publish, sees only the second";
}

// ASan found it (ApiTest.WaitReturnsAsSoonAsTheRunEnds, heap-use-after-free):
// a publisher on another thread still held a copy of a listener after
// Unsubscribe returned, and dropping it later destroyed the timer the
// listener owned after the timer's io_context was gone. Unsubscribe now
// waits for a call in progress and destroys the listener itself.
TEST(ChangeFeedTest, UnsubscribeWaitsForACallInProgressAndDestroysTheListener) {
  struct Owned {
    std::thread::id* destroyed_on = nullptr;
    ~Owned() {
      if (destroyed_on) *destroyed_on = std::this_thread::get_id();
    }
  };
  ChangeFeed feed;
  std::thread::id destroyed_on;
  std::latch in_call(1), unsubscribing(1);
  std::atomic<bool> call_returned{false};
  auto owned = std::make_shared<Owned>();
  owned->destroyed_on = &destroyed_on;
  uint64_t token = feed.Subscribe("run-1", [owned, &in_call, &unsubscribing, &call_returned](const Change&) {
    in_call.count_down();
    unsubscribing.wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // Unsubscribe must wait for this
    call_returned = true;
  });
  owned.reset();
  std::thread publisher([&] { feed.Publish(RunChange("run-1", RunStatus::kRunning)); });
  in_call.wait();
  unsubscribing.count_down();
  feed.Unsubscribe(token);
  EXPECT_TRUE(call_returned.load()) << "Unsubscribe returned while the listener was running";
  EXPECT_EQ(destroyed_on, std::this_thread::get_id()) << "the listener was not destroyed by Unsubscribe";
  publisher.join();
}

TEST(ChangeFeedTest, ConcurrentPublishAndSubscribe) {
  ChangeFeed feed;
  std::atomic<int> received{0};
  feed.Subscribe("", [&](const Change&) { ++received; });
  constexpr int kThreads = 4;
  constexpr int kEach = 500;
  std::latch go(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      go.arrive_and_wait();
      for (int i = 0; i < kEach; ++i) feed.Publish(RunChange("run-" + std::to_string(t), RunStatus::kRunning));
    });
  }
  threads.emplace_back([&] {
    go.arrive_and_wait();
    for (int i = 0; i < kEach; ++i) feed.Unsubscribe(feed.Subscribe("run-0", [](const Change&) {}));
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(received.load(), kThreads * kEach);
}

// ---------------------------------------------------------------- WithChangeFeed

class WithChangeFeedTest : public ::testing::Test {
 protected:
  using Run = ::af::Run;  // not testing::Test::Run()

  void SetUp() override {
    feed_ = std::make_shared<ChangeFeed>();
    store_ = WithChangeFeed(Must(OpenSqliteStore(":memory:")), feed_);
    feed_->Subscribe("", all_.listener());
    wf_ = Must(store_->CreateWorkflow(NewWorkflow{"wf", "", json::object()}));
  }

  std::shared_ptr<ChangeFeed> feed_;
  std::unique_ptr<Store> store_;
  Recorder all_;
  Workflow wf_;
};

TEST_F(WithChangeFeedTest, RunWritesPublishTheNewStatus) {
  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), "k"})).run;
  auto changes = all_.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kRun);
  EXPECT_EQ(changes[0].run_id, run.id);
  EXPECT_EQ(changes[0].run_status, RunStatus::kPending);
  EXPECT_EQ(changes[0].ended, nullptr) << "only a run's end carries the run";

  // An idempotent repeat creates nothing and publishes nothing.
  EXPECT_FALSE(Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), "k"})).created);
  EXPECT_TRUE(all_.Take().empty());

  Must(store_->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  changes = all_.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].run_status, RunStatus::kRunning);
  EXPECT_EQ(changes[0].ended, nullptr);

  Must(store_->RequestCancel({run.id, "alice", "why"}));
  changes = all_.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].run_id, run.id);
  EXPECT_EQ(changes[0].run_status, RunStatus::kRunning) << "a cancel request does not change the status";

  RunTransition t{run.id, RunStatus::kRunning, RunStatus::kCancelled};
  t.error_message = "cancelled";
  Must(store_->TransitionRun(t));
  changes = all_.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].run_status, RunStatus::kCancelled);
  // The end carries the run as committed (a waiter answers with it).
  ASSERT_NE(changes[0].ended, nullptr);
  EXPECT_EQ(ToJson(*changes[0].ended), ToJson(Must(store_->GetRun(run.id))));
}

// The executor's commits: the one that ends the run carries it.
TEST_F(WithChangeFeedTest, TheWriteThatEndsARunPublishesTheRunAsCommitted) {
  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), ""})).run;
  RunLease lease = Must(store_->AcquireRunLease(run.id, "owner", 60000));
  RunWrites start{run.id, lease.token, {}};
  start.ops.push_back(RunWrite::Transition(RunTransition{run.id, RunStatus::kPending, RunStatus::kRunning}));
  Must(store_->ApplyRunWrites(start));
  all_.Take();
  RunWrites end{run.id, lease.token, {}};
  RunTransition done{run.id, RunStatus::kRunning, RunStatus::kCompleted};
  done.output = json{{"answer", 42}};
  end.ops.push_back(RunWrite::Transition(done));
  std::vector<const RunWrites*> group{&end};
  ASSERT_TRUE(store_->ApplyRunWritesGroup(group).at(0).ok());
  auto changes = all_.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].run_status, RunStatus::kCompleted);
  ASSERT_NE(changes[0].ended, nullptr);
  EXPECT_EQ(ToJson(*changes[0].ended), ToJson(Must(store_->GetRun(run.id))));
  EXPECT_EQ(changes[0].ended->output, json({{"answer", 42}}));
}

TEST_F(WithChangeFeedTest, FailedWritesPublishNothing) {
  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), ""})).run;
  Must(store_->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  int64_t step = Must(store_->InsertStep(StepExecution{0, run.id, "s"}));
  Must(store_->TransitionRun({run.id, RunStatus::kRunning, RunStatus::kCompleted}));
  all_.Take();

  EXPECT_FALSE(store_->CreateRun(NewRun{"", "wf-missing", 1, json::object(), ""}).ok());
  EXPECT_FALSE(store_->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}).ok());
  EXPECT_FALSE(store_->TransitionRun({run.id, RunStatus::kCompleted, RunStatus::kPending}).ok());
  EXPECT_FALSE(store_->TransitionRun({"run-missing", RunStatus::kPending, RunStatus::kRunning}).ok());
  EXPECT_FALSE(store_->RequestCancel({run.id, "bob", "late"}).ok());
  StepExecution bad{0, run.id, "s"};
  bad.status = StepStatus::kCompleted;
  EXPECT_FALSE(store_->InsertStep(bad).ok());
  EXPECT_FALSE(store_->InsertStep(StepExecution{0, "run-missing", "s"}).ok());
  EXPECT_FALSE(store_->FinishStep({run.id, step + 1, StepStatus::kCompleted, nullptr, ""}).ok());
  EXPECT_TRUE(store_->FinishStep({run.id, step, StepStatus::kCompleted, nullptr, ""}).ok());
  all_.Take();
  EXPECT_FALSE(store_->FinishStep({run.id, step, StepStatus::kFailed, nullptr, "again"}).ok());
  EXPECT_TRUE(all_.Take().empty());
}

TEST_F(WithChangeFeedTest, StepWritesPublishTheExecutionId) {
  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), ""})).run;
  all_.Take();
  Recorder mine, others;
  feed_->Subscribe(run.id, mine.listener());
  feed_->Subscribe("run-other", others.listener());

  int64_t id = Must(store_->InsertStep(StepExecution{0, run.id, "a"}));
  ASSERT_TRUE(store_->FinishStep({run.id, id, StepStatus::kCompleted, json{{"v", 1}}, ""}).ok());
  auto changes = mine.Take();
  ASSERT_EQ(changes.size(), 2u);
  for (const Change& c : changes) {
    EXPECT_EQ(c.kind, Change::Kind::kStep);
    EXPECT_EQ(c.run_id, run.id);
    EXPECT_EQ(c.step_execution_id, id);
    EXPECT_FALSE(c.run_status.has_value());
  }
  EXPECT_EQ(all_.Take().size(), 2u);
  EXPECT_TRUE(others.Take().empty());
}

// docs/benchmarks.md (embedded profile): every step write woke the run's
// ?wait long-poll, which re-read the run under the store mutex the engine
// needs (16% of serve's CPU). A run waiter subscribes to kRuns: step writes
// must not reach it, the run's own changes must.
TEST_F(WithChangeFeedTest, StepWritesDoNotWakeRunWaiters) {
  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 1, json::object(), ""})).run;
  Recorder waiter, every_run, steps_too;
  feed_->Subscribe(run.id, waiter.listener(), ChangeFeed::Interest::kRuns);
  feed_->Subscribe("", every_run.listener(), ChangeFeed::Interest::kRuns);
  feed_->Subscribe(run.id, steps_too.listener());
  all_.Take();

  Must(store_->TransitionRun({run.id, RunStatus::kPending, RunStatus::kRunning}));
  EXPECT_EQ(waiter.Take().size(), 1u);
  EXPECT_EQ(every_run.Take().size(), 1u);
  EXPECT_EQ(steps_too.Take().size(), 1u);

  for (int i = 0; i < 3; ++i) {
    int64_t id = Must(store_->InsertStep(StepExecution{0, run.id, "s" + std::to_string(i)}));
    ASSERT_TRUE(store_->FinishStep({run.id, id, StepStatus::kCompleted, json{{"i", i}}, ""}).ok());
  }
  EXPECT_TRUE(waiter.Take().empty()) << "a step write woke a run waiter";
  EXPECT_TRUE(every_run.Take().empty()) << "a step write woke a waiter of every run";
  EXPECT_EQ(steps_too.Take().size(), 6u) << "kAll subscribers still hear step writes";

  Must(store_->TransitionRun({run.id, RunStatus::kRunning, RunStatus::kCompleted}));
  auto changes = waiter.Take();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, Change::Kind::kRun);
  EXPECT_EQ(changes[0].run_status, RunStatus::kCompleted);
}

TEST(ChangeFeedTest, RunInterestFiltersStepChangesOnly) {
  ChangeFeed feed;
  Recorder runs_of_one, runs_of_all;
  uint64_t t1 = feed.Subscribe("run-1", runs_of_one.listener(), ChangeFeed::Interest::kRuns);
  feed.Subscribe("", runs_of_all.listener(), ChangeFeed::Interest::kRuns);
  feed.Publish(Change{Change::Kind::kStep, "run-1", std::nullopt, 1});
  feed.Publish(RunChange("run-1", RunStatus::kRunning));
  feed.Publish(RunChange("run-2", RunStatus::kRunning));
  EXPECT_EQ(runs_of_one.Take().size(), 1u);
  EXPECT_EQ(runs_of_all.Take().size(), 2u);
  feed.Unsubscribe(t1);
  feed.Publish(RunChange("run-1", RunStatus::kCompleted));
  EXPECT_TRUE(runs_of_one.Take().empty());
  EXPECT_EQ(runs_of_all.Take().size(), 1u);
}

TEST_F(WithChangeFeedTest, ReadsAndOtherWritesPassThroughSilently) {
  Workflow wf2 = Must(store_->UpdateWorkflow(wf_.id, NewWorkflow{"wf", "v2", json{{"v", 2}}}));
  EXPECT_EQ(wf2.version, 2);
  EXPECT_EQ(Must(store_->GetWorkflow(wf_.id, 1)).version, 1);
  EXPECT_EQ(Must(store_->GetWorkflowByName("wf")).id, wf_.id);
  EXPECT_EQ(Must(store_->ListWorkflows(10, "")).items.size(), 1u);
  EXPECT_EQ(Must(store_->ListWorkflowVersions(wf_.id)).size(), 2u);
  Agent a;
  a.name = "echo";
  a.url = "http://x";
  Must(store_->CreateAgent(a));
  a.url = "http://y";
  Must(store_->UpsertAgent(a));
  EXPECT_EQ(Must(store_->GetAgent("echo")).url, "http://y");
  EXPECT_EQ(Must(store_->ListAgents()).size(), 1u);
  EXPECT_TRUE(store_->DeleteAgent("echo").ok());
  EXPECT_TRUE(store_->Ping().ok());

  Run run = Must(store_->CreateRun(NewRun{"", wf_.id, 2, json::object(), ""})).run;
  all_.Take();
  EXPECT_EQ(Must(store_->GetRun(run.id)).id, run.id);
  EXPECT_EQ(Must(store_->ListRuns(RunFilter{})).items.size(), 1u);
  EXPECT_EQ(Must(store_->ListUnfinishedRuns(10)).size(), 1u);
  EXPECT_TRUE(Must(store_->ListSteps(run.id)).empty());
  EXPECT_TRUE(store_->DeleteWorkflow(wf_.id).ok());
  EXPECT_TRUE(all_.Take().empty()) << "workflow, agent and read calls publish nothing";
}

}  // namespace
}  // namespace af
