// The run event stream: the diff logic alone (RunEventDiff), and the
// endpoint GET /api/v1/runs/{run_id}/events through the API's router with a
// store written the way an executor writes it, with and without this
// process's change feed (the distributed topology has none for changes
// made by consumers).
#include "api/run_events.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "api/api.h"
#include "api/api_test_util.h"
#include "http/sse.h"
#include "http/testing.h"

namespace af {
namespace {

using namespace std::chrono_literals;

Run MakeRun(RunStatus status) {
  Run r;
  r.id = "run-1";
  r.workflow_id = "wf";
  r.status = status;
  r.created_at = 1000;
  return r;
}

StepExecution MakeStep(int64_t id, StepStatus status) {
  StepExecution s;
  s.id = id;
  s.run_id = "run-1";
  s.step_id = "s" + std::to_string(id);
  s.agent_name = "echo";
  s.status = status;
  s.started_at = 1000 + id;
  return s;
}

std::vector<std::string> Names(const std::vector<RunEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.name);
  return out;
}

TEST(RunEventDiffTest, FirstSnapshotSendsEverythingThenOnlyChanges) {
  RunEventDiff d;
  af::Run run = MakeRun(RunStatus::kRunning);
  std::vector<StepExecution> steps = {MakeStep(2, StepStatus::kRunning), MakeStep(1, StepStatus::kCompleted)};
  auto first = d.Next(run, steps);
  ASSERT_EQ(Names(first), (std::vector<std::string>{"run", "step", "step"}));
  EXPECT_EQ(json::parse(first[0].data)["status"], "RUNNING");
  EXPECT_EQ(json::parse(first[1].data)["step_id"], "s1") << "steps in id order";
  EXPECT_EQ(json::parse(first[2].data)["step_id"], "s2");

  EXPECT_TRUE(d.Next(run, steps).empty()) << "nothing changed, nothing sent";

  steps[0].status = StepStatus::kCompleted;
  steps[0].output = json{{"ok", true}};
  steps.push_back(MakeStep(3, StepStatus::kRunning));
  auto next = d.Next(run, steps);
  ASSERT_EQ(Names(next), (std::vector<std::string>{"step", "step"}));
  EXPECT_EQ(json::parse(next[0].data)["status"], "COMPLETED");
  EXPECT_EQ(json::parse(next[0].data)["output"], json({{"ok", true}}));
  EXPECT_EQ(json::parse(next[1].data)["step_id"], "s3");
  EXPECT_FALSE(d.ended());
}

TEST(RunEventDiffTest, AFinishedRunSendsItsStepsThenTheRunThenEndOnce) {
  RunEventDiff d;
  af::Run run = MakeRun(RunStatus::kRunning);
  std::vector<StepExecution> steps = {MakeStep(1, StepStatus::kRunning)};
  d.Next(run, steps);
  run.status = RunStatus::kFailed;
  run.error_message = "step s1 failed";
  steps[0].status = StepStatus::kFailed;
  steps[0].error_message = "boom";
  auto last = d.Next(run, steps);
  ASSERT_EQ(Names(last), (std::vector<std::string>{"step", "run", "end"}));
  EXPECT_EQ(json::parse(last[0].data)["error_message"], "boom");
  EXPECT_EQ(json::parse(last[1].data)["status"], "FAILED");
  EXPECT_EQ(last[2].data, last[1].data) << "end carries the finished run";
  EXPECT_TRUE(d.ended());
  EXPECT_TRUE(d.Next(run, steps).empty()) << "nothing after end";

  // Connecting to a finished run: its whole state, then end.
  RunEventDiff late;
  EXPECT_EQ(Names(late.Next(run, steps)), (std::vector<std::string>{"step", "run", "end"}));
}

TEST(RunEventDiffTest, InvalidUtf8InAnErrorIsReplacedNotThrownOn) {
  // Agents' error text reaches the store as they sent it.
  RunEventDiff d;
  af::Run run = MakeRun(RunStatus::kFailed);
  run.error_message = "bad \xff\xfe bytes";
  std::vector<StepExecution> steps = {MakeStep(1, StepStatus::kFailed)};
  steps[0].error_message = "agent said \xc3";
  std::vector<RunEvent> events;
  ASSERT_NO_THROW(events = d.Next(run, steps));
  ASSERT_EQ(Names(events), (std::vector<std::string>{"step", "run", "end"}));
  EXPECT_EQ(json::parse(events[0].data)["error_message"], "agent said \xef\xbf\xbd");
  EXPECT_EQ(json::parse(events[1].data)["error_message"], "bad \xef\xbf\xbd\xef\xbf\xbd bytes");
}

// Collects a stream's events; lets a test wait for the n-th.
class Collector final : public http::StreamWriter {
 public:
  boost::asio::awaitable<bool> Write(std::string data) override {
    std::lock_guard<std::mutex> lock(mu_);
    raw_ += data;
    for (auto& e : parser_.Feed(data)) events_.push_back(e);
    cv_.notify_all();
    co_return true;
  }
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return events_.size() >= n; });
  }
  std::vector<http::SseEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::string raw() {
    std::lock_guard<std::mutex> lock(mu_);
    return raw_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  http::SseParser parser_;
  std::vector<http::SseEvent> events_;
  std::string raw_;
};

// The RUNNING execution of step "s" of run `run_id` (agent echo, input {"x": 1}).
StepExecution StepOf(const std::string& run_id) {
  StepExecution s;
  s.run_id = run_id;
  s.step_id = "s";
  s.agent_name = "echo";
  s.input = json{{"x", 1}};
  return s;
}

// A request through `router`, answered on this thread.
http::Response CallRouter(http::Router& router, const std::string& method, const std::string& path,
                          const std::string& body) {
  http::Request req = MakeRequest(method, path, body);
  return http::DispatchSync(router, req);
}

// Runs a streamed response to its end on a private io_context.
void RunStreamToEnd(http::Response& res, Collector& out) {
  boost::asio::io_context ioc;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { co_await res.stream(out); },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  ioc.run();
}

class RunEventsApiTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    OpenInMemoryBackends(feed_, store_, queue_);
    if (HasFatalFailure()) return;
    ApiOptions ao;
    // With the feed, changes wake the stream (the poll is set beyond the
    // test's deadlines, so only the feed can pass it); without it (as an api
    // process beside separate consumers) only the poll finds them.
    ao.events_poll_interval = GetParam() ? std::chrono::milliseconds(60s) : std::chrono::milliseconds(20ms);
    api_ = std::make_unique<Api>(store_.get(), queue_.get(), GetParam() ? feed_ : nullptr, ao);
    api_->Register(router_);
  }
  void TearDown() override { api_->Stop(); }

  http::Response Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return CallRouter(router_, method, path, body);
  }

  std::string StartRun() {
    json plan{{"name", "events"}, {"steps", {{{"id", "s"}, {"agent", "echo"}}}}};
    auto wf = Call("POST", "/api/v1/workflows", plan.dump());
    EXPECT_EQ(wf.status, 201) << wf.body;
    auto r = Call("POST", "/api/v1/workflows/events/runs", "{}");
    EXPECT_EQ(r.status, 202) << r.body;
    return json::parse(r.body)["run_id"];
  }

  std::shared_ptr<ChangeFeed> feed_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  std::unique_ptr<Api> api_;
  http::Router router_;
};

TEST_P(RunEventsApiTest, EventsArriveInOrderAsTheRunExecutesAndTheStreamEndsWithIt) {
  const std::string id = StartRun();
  http::Response res = Call("GET", "/api/v1/runs/" + id + "/events");
  ASSERT_EQ(res.status, 200) << res.body;
  ASSERT_TRUE(res.stream);
  EXPECT_EQ(res.content_type, "text/event-stream");
  EXPECT_EQ(http::FindHeader(res.headers, "Cache-Control"), "no-cache");

  Collector got;
  // An executor's writes, each after the stream has shown the one before,
  // so every change is its own event.
  auto execute = [&] {
    ASSERT_TRUE(got.WaitFor(1));
    ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
    ASSERT_TRUE(got.WaitFor(2));
    auto step = store_->InsertStep(StepOf(id));
    ASSERT_TRUE(step.ok());
    ASSERT_TRUE(got.WaitFor(3));
    StepFinish f;
    f.run_id = id;
    f.id = *step;
    f.output = json{{"y", 2}};
    ASSERT_TRUE(store_->FinishStep(f).ok());
    ASSERT_TRUE(got.WaitFor(4));
    RunTransition done{id, RunStatus::kRunning, RunStatus::kCompleted};
    done.output = json{{"s", {{"y", 2}}}};
    ASSERT_TRUE(store_->TransitionRun(done).ok());
  };
  std::thread executor([&] {
    execute();
    // After a failure above, end the run anyway so that the stream ends.
    auto run = store_->GetRun(id);
    if (run.ok() && !IsTerminal(run->status)) (void)store_->TransitionRun({id, run->status, RunStatus::kCancelled});
  });
  RunStreamToEnd(res, got);  // returns when the stream ends
  executor.join();

  std::vector<http::SseEvent> events = got.events();
  std::vector<std::string> seen;
  for (const auto& e : events) {
    json doc = json::parse(e.data);
    seen.push_back(e.event + ":" + doc.value("status", "?"));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"run:PENDING", "run:RUNNING", "step:RUNNING", "step:COMPLETED",
                                            "run:COMPLETED", "end:COMPLETED"}));
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].id, std::to_string(i + 1)) << "ids count up";
  EXPECT_EQ(json::parse(events[3].data)["output"], json({{"y", 2}}));
  EXPECT_EQ(json::parse(events[5].data)["output"], json({{"s", {{"y", 2}}}}));
  EXPECT_EQ(got.raw().rfind("retry: 1000\n\n", 0), 0u) << "the stream opens with the reconnect delay";
}

TEST_P(RunEventsApiTest, AFinishedRunStreamsItsStateAndEnds) {
  const std::string id = StartRun();
  ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  RunTransition fail{id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "boom";
  ASSERT_TRUE(store_->TransitionRun(fail).ok());
  http::Response res = Call("GET", "/api/v1/runs/" + id + "/events");
  ASSERT_TRUE(res.stream);
  Collector got;
  RunStreamToEnd(res, got);
  auto events = got.events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "run");
  EXPECT_EQ(events[1].event, "end");
  EXPECT_EQ(json::parse(events[1].data)["error_message"], "boom");
}

TEST_P(RunEventsApiTest, AnUnknownRunIsA404NotAStream) {
  http::Response res = Call("GET", "/api/v1/runs/run-nope/events");
  EXPECT_EQ(res.status, 404);
  EXPECT_FALSE(res.stream);
  EXPECT_EQ(json::parse(res.body)["error"]["code"], "NOT_FOUND");
}

// The distributed api: a consumer (another process) runs the step and ends
// the run, so the api's change feed never hears of it. The run watcher
// reads the step progress and the end for the feed, and the stream sends
// each step event and its end then, not at its next re-read
// (events_poll_interval, and the keep-alive that also wakes it: 60 s here;
// each wait below is at most 20 s).
TEST(RunEventsEndTest, AStreamShowsTheStepsAndTheEndAnotherProcessWritesSoon) {
  std::shared_ptr<ChangeFeed> feed;
  std::unique_ptr<Store> store;
  std::unique_ptr<Queue> queue;
  OpenInMemoryBackends(feed, store, queue);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  ApiOptions ao;
  ao.events_poll_interval = std::chrono::milliseconds(60s);
  ao.events_keepalive = std::chrono::milliseconds(60s);
  ao.run_end_poll = std::chrono::milliseconds(10);
  auto own_feed = std::make_shared<ChangeFeed>();  // hears none of the store's writes
  Api api(store.get(), queue.get(), own_feed, ao);
  http::Router router;
  api.Register(router);
  auto call = [&](const std::string& method, const std::string& path, const std::string& body) {
    return CallRouter(router, method, path, body);
  };
  json plan{{"name", "elsewhere"}, {"steps", {{{"id", "s"}, {"agent", "echo"}}}}};
  ASSERT_EQ(call("POST", "/api/v1/workflows", plan.dump()).status, 201);
  const std::string id = json::parse(call("POST", "/api/v1/workflows/elsewhere/runs", "{}").body)["run_id"];
  ASSERT_TRUE(store->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  http::Response res = call("GET", "/api/v1/runs/" + id + "/events", "");
  ASSERT_TRUE(res.stream);
  Collector got;
  auto streamed = std::async(std::launch::async, [&] { RunStreamToEnd(res, got); });
  ASSERT_TRUE(got.WaitFor(1));
  for (int i = 0; i < 2000 && api.RunsWaitedFor() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(api.RunsWaitedFor(), 1u) << "the stream waits for the run's end";
  auto step = store->InsertStep(StepOf(id));
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  ASSERT_TRUE(got.WaitFor(2)) << "the stream did not show the step another process started";
  EXPECT_EQ(got.events()[1].event, "step");
  EXPECT_EQ(json::parse(got.events()[1].data)["status"], "RUNNING");
  StepFinish f;
  f.run_id = id;
  f.id = *step;
  f.output = json{{"y", 2}};
  ASSERT_TRUE(store->FinishStep(f).ok());
  ASSERT_TRUE(got.WaitFor(3)) << "the stream did not show the step another process finished";
  EXPECT_EQ(got.events()[2].event, "step");
  EXPECT_EQ(json::parse(got.events()[2].data)["status"], "COMPLETED");
  RunTransition done{id, RunStatus::kRunning, RunStatus::kCompleted};
  done.output = json{{"ok", true}};
  ASSERT_TRUE(store->TransitionRun(done).ok());
  ASSERT_EQ(streamed.wait_for(20s), std::future_status::ready) << "the stream did not hear of the run's end";
  std::vector<http::SseEvent> events = got.events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "end");
  EXPECT_EQ(json::parse(events.back().data)["status"], "COMPLETED");
  EXPECT_EQ(api.RunsWaitedFor(), 0u);
  api.Stop();
}

INSTANTIATE_TEST_SUITE_P(Feed, RunEventsApiTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "WithChangeFeed" : "PollOnly"; });

}  // namespace
}  // namespace af
