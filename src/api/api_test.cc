// API handler tests without a network: requests are dispatched through the
// Router on a private io_context, against an in-memory SQLite store and an
// in-memory embedded queue, so the messages the API publishes can be read.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "api/api.h"
#include "api/api_test_util.h"
#include "api/run_watcher.h"
#include "api/store_worker.h"
#include "api/workflow_cache.h"
#include "dispatch/dispatcher.h"
#include "common/trace.h"
#include "http/testing.h"
#include "queue/messages.h"
#include "storage/forwarding_store.h"
#include "support/gate.h"

namespace af {
namespace {

using namespace std::chrono_literals;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OpenInMemoryBackends(feed_, store_, queue_);
    if (HasFatalFailure()) return;
    dispatcher_ = std::make_unique<Dispatcher>(store_.get(), queue_.get());
    ApiOptions ao;
    ao.metrics = &run_metrics_;
    ao.on_dispatch = [this] { ++kicks_; };
    api_ = std::make_unique<Api>(store_.get(), queue_.get(), feed_, ao);
    api_->Register(router_);
    auto sub = queue_->Subscribe({kExecutionTopic, kCancellationTopic}, "test");
    ASSERT_TRUE(sub.ok());
    consumer_ = std::move(sub).value();
  }

  // `path` may carry a query; a body is sent as JSON.
  http::Response Call(const std::string& method, const std::string& path, const std::string& body = "",
                      http::Headers headers = {}) {
    http::Request req = MakeRequest(method, path, body, std::move(headers));
    return http::DispatchSync(router_, req);
  }

  json Body(const http::Response& r) { return json::parse(r.body); }
  // Ends a RUNNING run as an executor would: COMPLETED with {"ok": true}.
  void Finish(const std::string& id) {
    RunTransition done{id, RunStatus::kRunning, RunStatus::kCompleted};
    done.output = json{{"ok", true}};
    ASSERT_TRUE(store_->TransitionRun(done).ok());
  }
  // The answer of a ?wait that heard of Finish: 200, COMPLETED, its output.
  // Fails the test if it did not come within 20 s (the waits are longer).
  http::Response Heard(std::future<http::Response>& answer) {
    if (answer.wait_for(20s) != std::future_status::ready) {
      ADD_FAILURE() << "the wait did not hear of the run's end";
      return {};
    }
    http::Response r = answer.get();
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Body(r)["status"], "COMPLETED");
    EXPECT_EQ(Body(r)["output"], json({{"ok", true}}));
    return r;
  }

  // `n` requests at once on one io_context (one io thread, as the server's).
  std::vector<http::Response> CallConcurrently(std::vector<http::Request> reqs, http::Router& router) {
    boost::asio::io_context ioc;
    std::vector<http::Response> out(reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      boost::asio::co_spawn(
          ioc,
          [&, i]() -> boost::asio::awaitable<void> { out[i] = co_await router.Dispatch(reqs[i]); },
          [](std::exception_ptr e) {
            if (e) std::rethrow_exception(e);
          });
    }
    ioc.run();
    return out;
  }
  static http::Request Post(const std::string& path, const std::string& body, http::Headers headers = {}) {
    return MakeRequest("POST", path, body, std::move(headers));
  }
  http::Response CallOn(http::Router& router, const std::string& method, const std::string& path,
                        const std::string& body = "") {
    return CallConcurrently({MakeRequest(method, path, body)}, router).at(0);
  }

  // What the relay publishes from the outbox, as the consumer receives it.
  std::vector<QueueMessage> Drain() {
    auto relayed = dispatcher_->RelayOnce();
    EXPECT_TRUE(relayed.ok()) << relayed.status().ToString();
    auto got = consumer_->Poll(100, 50ms);
    EXPECT_TRUE(got.ok());
    for (auto& m : *got) EXPECT_TRUE(consumer_->Ack(m).ok());
    return *got;
  }

  std::string CreateWorkflow(const std::string& name) {
    json plan{{"name", name}, {"steps", {{{"id", "s"}, {"agent", "echo"}, {"input", {{"x", "${input.x}"}}}}}}};
    auto r = Call("POST", "/api/v1/workflows", plan.dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return Body(r)["workflow_id"];
  }

  std::shared_ptr<ChangeFeed> feed_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  metrics::Registry registry_;
  metrics::ApiRunMetrics run_metrics_{registry_};
  std::unique_ptr<Api> api_;
  http::Router router_;
  std::unique_ptr<QueueConsumer> consumer_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::atomic<int> kicks_{0};  // on_dispatch runs on the API's store worker thread
};

TEST_F(ApiTest, CreateWorkflowWarnsAboutUnregisteredAgents) {
  json plan{{"name", "w"}, {"steps", {{{"id", "s"}, {"agent", "ghost"}}}}};
  auto r = Call("POST", "/api/v1/workflows", plan.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  json body = Body(r);
  EXPECT_EQ(body["version"], 1);
  ASSERT_EQ(body["warnings"].size(), 1u);
  EXPECT_NE(body["warnings"][0].get<std::string>().find("ghost"), std::string::npos);
}

TEST_F(ApiTest, InvalidPlanListsEveryProblem) {
  json plan = json::parse(R"({"name": "bad", "bogus": 1, "steps": [
    {"id": "a", "agent": "x", "depends_on": ["nope"]},
    {"id": "a", "agent": "x"}]})");
  auto r = Call("POST", "/api/v1/workflows", plan.dump());
  ASSERT_EQ(r.status, 400);
  json err = Body(r)["error"];
  EXPECT_EQ(err["code"], "INVALID_ARGUMENT");
  ASSERT_TRUE(err["details"]["problems"].is_array());
  EXPECT_GE(err["details"]["problems"].size(), 3u) << err.dump(2);
}

TEST_F(ApiTest, TriggerWritesPendingRunAndPublishesTheSeedMessage) {
  std::string wf = CreateWorkflow("trig");
  auto r = Call("POST", "/api/v1/workflows/" + wf + "/runs", R"({"input": {"x": 7}})");
  ASSERT_EQ(r.status, 202) << r.body;
  json run = Body(r);
  EXPECT_EQ(run["status"], "PENDING");
  auto msgs = Drain();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].topic, kExecutionTopic);
  EXPECT_EQ(msgs[0].key, run["run_id"]);
  json m = json::parse(msgs[0].payload);
  EXPECT_EQ(m["message_type"], "execution_request");
  EXPECT_EQ(m["run_id"], run["run_id"]);
  EXPECT_EQ(m["input_data"], json({{"x", 7}}));
  EXPECT_EQ(m["workflow_plan"]["name"], "trig");
  EXPECT_TRUE(m["timestamp"].is_string());
}

// The transactional outbox: the trigger commits the run and its request
// together and publishes nothing itself, so it answers 202 whatever the
// broker's state; the request reaches the queue through the relay.
TEST_F(ApiTest, TriggerCommitsTheRequestToTheOutboxNotTheQueue) {
  std::string wf = CreateWorkflow("outbox");
  auto r = Call("POST", "/api/v1/workflows/" + wf + "/runs", R"({"input": {"x": 1}})");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(kicks_, 1);
  auto direct = consumer_->Poll(100, 50ms);
  ASSERT_TRUE(direct.ok());
  EXPECT_TRUE(direct->empty()) << "the API published directly";
  auto stats = store_->GetOutboxStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->messages, 1);
  auto run = store_->GetRun(Body(r)["run_id"]);
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->dispatched_at.has_value());
  auto msgs = Drain();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].key, Body(r)["run_id"]);
  EXPECT_EQ(store_->GetOutboxStats()->messages, 0);
  // A replay of the same Idempotency-Key writes no second request.
  auto a = Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", {{"Idempotency-Key", "k1"}});
  auto b = Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", {{"Idempotency-Key", "k1"}});
  ASSERT_EQ(a.status, 202);
  ASSERT_EQ(b.status, 202) << b.body;
  EXPECT_EQ(Body(a)["run_id"], Body(b)["run_id"]);
  EXPECT_EQ(store_->GetOutboxStats()->messages, 1);
}

TEST_F(ApiTest, AValidTraceparentIsKeptWithTheRunAndTheSeedMessageIsUnchanged) {
  std::string wf = CreateWorkflow("traced");
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  auto r = Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", {{"traceparent", tp}});
  ASSERT_EQ(r.status, 202) << r.body;
  json run = Body(r);
  EXPECT_EQ(run["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  auto stored = store_->GetRun(run["run_id"]);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->traceparent, tp);
  auto msgs = Drain();
  ASSERT_EQ(msgs.size(), 1u);
  json m = json::parse(msgs[0].payload);
  std::set<std::string> keys;
  for (auto& [k, v] : m.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"run_id", "workflow_plan", "input_data", "timestamp", "message_type",
                                         "workflow_id", "workflow_version"}))
      << "the executor reads the trace from the run row, not from the message";
}

TEST_F(ApiTest, AMissingOrInvalidTraceparentStartsANewTrace) {
  std::string wf = CreateWorkflow("untraced");
  std::set<std::string> traces;
  for (const char* header : {"", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "garbage",
                             "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}) {
    http::Headers h;
    if (*header) h.emplace_back("traceparent", header);
    auto r = Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", h);
    ASSERT_EQ(r.status, 202) << header << ": " << r.body;
    auto stored = store_->GetRun(Body(r)["run_id"]);
    ASSERT_TRUE(stored.ok());
    auto tp = trace::ParseTraceParent(stored->traceparent);
    ASSERT_TRUE(tp.has_value()) << "a new, valid traceparent is stored: " << stored->traceparent;
    EXPECT_NE(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") << header;
    EXPECT_EQ(Body(r)["trace_id"], tp->trace_id);
    traces.insert(tp->trace_id);
  }
  EXPECT_EQ(traces.size(), 4u) << "one trace per run";
}

TEST_F(ApiTest, RunMetricsCountCreatedRunsAndTheRunsTheApiEnds) {
  std::string wf = CreateWorkflow("counted");
  http::Headers h{{"Idempotency-Key", "same"}};
  std::string id = Body(Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", h))["run_id"];
  Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}", h);  // a replay: not a new run
  Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}");
  EXPECT_EQ(run_metrics_.runs_created.Value(), 2u);
  ASSERT_EQ(Call("POST", "/api/v1/runs/" + id + "/cancel", "{}").status, 202);
  EXPECT_EQ(run_metrics_.runs_finished.Labels({"CANCELLED"}).Value(), 1u);
  EXPECT_EQ(run_metrics_.runs_finished.Labels({"FAILED"}).Value(), 0u);
}

TEST_F(ApiTest, TriggerByNameAndIdempotencyKeyReturnsTheSameRunOnce) {
  CreateWorkflow("idem");
  http::Headers h{{"Idempotency-Key", "k-1"}};
  auto a = Call("POST", "/api/v1/workflows/idem/runs", "{}", h);
  auto b = Call("POST", "/api/v1/workflows/idem/runs", "{}", h);
  ASSERT_EQ(a.status, 202);
  ASSERT_EQ(b.status, 202);
  EXPECT_EQ(Body(a)["run_id"], Body(b)["run_id"]);
  EXPECT_EQ(Drain().size(), 1u) << "a replayed trigger must not publish again";
}

// Group commit (api/store_worker.h): concurrent triggers on one io thread
// are committed by the store worker in batches; each gets its own answer,
// idempotent repeats the one run, and only created runs reach the outbox.
TEST_F(ApiTest, ConcurrentTriggersAreEachAnsweredFromOneOrMoreBatches) {
  std::string wf = CreateWorkflow("many");
  std::vector<http::Request> reqs;
  for (int i = 0; i < 40; ++i) reqs.push_back(Post("/api/v1/workflows/many/runs", json{{"input", {{"i", i}}}}.dump()));
  for (int i = 0; i < 10; ++i) reqs.push_back(Post("/api/v1/workflows/" + wf + "/runs", "{}", {{"Idempotency-Key", "same"}}));
  reqs.push_back(Post("/api/v1/workflows/no-such-workflow/runs", "{}"));
  auto out = CallConcurrently(reqs, router_);
  std::set<std::string> ids;
  std::set<std::string> keyed;
  for (size_t i = 0; i < 50; ++i) {
    ASSERT_EQ(out[i].status, 202) << i << ": " << out[i].body;
    json run = Body(out[i]);
    EXPECT_EQ(run["status"], "PENDING");
    ids.insert(run["run_id"].get<std::string>());
    if (i >= 40) keyed.insert(run["run_id"].get<std::string>());
    if (i < 40) {
      EXPECT_EQ(run["input"], json({{"i", i}}));
    }
  }
  EXPECT_EQ(out[50].status, 404) << out[50].body;
  EXPECT_EQ(ids.size(), 41u);
  EXPECT_EQ(keyed.size(), 1u) << "every repeat of the key got the one run";
  EXPECT_EQ(store_->GetOutboxStats()->messages, 41);
  EXPECT_GE(kicks_.load(), 1);
  EXPECT_LE(kicks_.load(), 41) << "at most one kick per batch";
  EXPECT_EQ(run_metrics_.runs_created.Value(), 41);
}

// The workflow cache (api/workflow_cache.h): changes made through this API
// are seen by the next trigger at once.
TEST_F(ApiTest, WorkflowChangesThroughThisApiReachTheNextTrigger) {
  std::string wf = CreateWorkflow("cached");
  auto first = Call("POST", "/api/v1/workflows/cached/runs", "{}");
  ASSERT_EQ(first.status, 202) << first.body;
  EXPECT_EQ(Body(first)["workflow_version"], 1);
  json plan{{"name", "cached"}, {"steps", {{{"id", "s2"}, {"agent", "echo"}}}}};
  ASSERT_EQ(Call("PUT", "/api/v1/workflows/" + wf, plan.dump()).status, 200);
  auto second = Call("POST", "/api/v1/workflows/cached/runs", "{}");
  ASSERT_EQ(second.status, 202) << second.body;
  EXPECT_EQ(Body(second)["workflow_version"], 2);
  plan["name"] = "renamed";
  ASSERT_EQ(Call("PUT", "/api/v1/workflows/" + wf, plan.dump()).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/workflows/cached/runs", "{}").status, 404) << "the old name is free";
  EXPECT_EQ(Body(Call("POST", "/api/v1/workflows/renamed/runs", "{}"))["workflow_version"], 3);
  ASSERT_EQ(Call("DELETE", "/api/v1/workflows/" + wf).status, 204);
  EXPECT_EQ(Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/workflows/renamed/runs", "{}").status, 404);
}

// Changes made by another process (here: straight to the store) are not in
// this API's view until the resolution expires: with a TTL longer than the
// test the old version is used; with 0, the new one at once.
TEST_F(ApiTest, WorkflowChangesElsewhereAreSeenOnceTheResolutionExpires) {
  std::string wf = CreateWorkflow("elsewhere");
  auto make_api = [&](std::chrono::milliseconds ttl, http::Router& router) {
    ApiOptions ao;
    ao.workflow_cache_ttl = ttl;
    auto api = std::make_unique<Api>(store_.get(), queue_.get(), feed_, ao);
    api->Register(router);
    return api;
  };
  http::Router long_router, no_cache_router;
  auto long_ttl = make_api(std::chrono::hours(1), long_router);
  auto no_cache = make_api(std::chrono::milliseconds(0), no_cache_router);
  EXPECT_EQ(Body(CallOn(long_router, "POST", "/api/v1/workflows/elsewhere/runs", "{}"))["workflow_version"], 1);
  EXPECT_EQ(Body(CallOn(no_cache_router, "POST", "/api/v1/workflows/elsewhere/runs", "{}"))["workflow_version"], 1);
  json plan{{"name", "elsewhere"}, {"steps", {{{"id", "s2"}, {"agent", "echo"}}}}};
  ASSERT_TRUE(store_->UpdateWorkflow(wf, NewWorkflow{"elsewhere", "", plan}).ok());
  EXPECT_EQ(Body(CallOn(long_router, "POST", "/api/v1/workflows/elsewhere/runs", "{}"))["workflow_version"], 1)
      << "within the TTL the resolution is reused";
  EXPECT_EQ(Body(CallOn(no_cache_router, "POST", "/api/v1/workflows/elsewhere/runs", "{}"))["workflow_version"], 2);
  long_ttl->Stop();
  no_cache->Stop();
}

// The distributed api: a consumer (another process) ends the run, so this
// api's feed never hears of it. Its ?wait re-reads the run only every hour
// here: what answers it is the watcher's read of the runs waited for.
TEST_F(ApiTest, AWaitHearsOfARunEndedByAnotherProcess) {
  CreateWorkflow("ended-elsewhere");
  std::string id = Body(Call("POST", "/api/v1/workflows/ended-elsewhere/runs", "{}"))["run_id"];
  ApiOptions ao;
  ao.wait_poll_interval = std::chrono::hours(1);
  ao.run_end_poll = std::chrono::milliseconds(10);
  auto own_feed = std::make_shared<ChangeFeed>();  // hears only this api's own writes: none here
  Api other(store_.get(), queue_.get(), own_feed, ao);
  http::Router router;
  other.Register(router);
  auto answer = std::async(std::launch::async, [&] {
    http::Request req = MakeRequest("GET", "/api/v1/runs/" + id + "?wait=60");
    return http::DispatchSync(router, req);
  });
  ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  // The run ends once the wait is under way (the watcher counts a run from
  // the wait's first read that finds it unfinished).
  for (int i = 0; i < 2000 && other.RunsWaitedFor() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(other.RunsWaitedFor(), 1u);
  Finish(id);
  // Not ready within 20 s: only the 60 s deadline would end the wait.
  Heard(answer);
  EXPECT_EQ(other.RunsWaitedFor(), 0u);
  other.Stop();
}

// A store whose GetRun waits at `gate` until the test opens it, as a slow
// query would.
class StalledReadStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<Run> GetRun(const std::string& id) override {
    gate.Pass();
    return inner()->GetRun(id);
  }
  testing_support::Gate gate;
};

// A slow database call delays its own request only: while a request waits
// for the database, the same (single) io thread reads and answers a
// trigger. (Reads, cancel and retry ran on the io thread and held up every
// connection it served; so did an event stream's first read.) For each
// route that reads the run first.
TEST_F(ApiTest, ASlowReadHoldsUpNoOtherRequestOfItsIoThread) {
  CreateWorkflow("slow-read");
  struct Route {
    std::string method, suffix, body;  // the request: method /api/v1/runs/{id}<suffix>
  };
  for (const Route& route : {Route{"GET", "", ""}, Route{"GET", "?wait=1", ""}, Route{"GET", "/steps", ""},
                             Route{"GET", "/events", ""}, Route{"POST", "/cancel", "{}"}}) {
    SCOPED_TRACE(route.method + " /runs/{id}" + route.suffix);
    std::string id = Body(Call("POST", "/api/v1/workflows/slow-read/runs", "{}"))["run_id"];
    StalledReadStore stalled(store_.get());
    Api api(&stalled, queue_.get(), feed_, ApiOptions{});
    http::Router router;
    api.Register(router);
    http::Request slow = MakeRequest(route.method, "/api/v1/runs/" + id + route.suffix, route.body);
    http::Request trigger = Post("/api/v1/workflows/slow-read/runs", "{}");
    http::Response answered, triggered;
    ExpectAnsweredWhileHeld(router, slow, trigger, stalled.gate, answered, triggered);
    EXPECT_EQ(triggered.status, 202) << triggered.body;
    EXPECT_TRUE(answered.status == 200 || answered.status == 202) << answered.body;  // cancel: 202
    if (route.suffix == "/events") {
      EXPECT_EQ(answered.content_type, "text/event-stream");  // the stream itself is not run here
      EXPECT_TRUE(answered.stream != nullptr);
    } else {
      EXPECT_NE(answered.body.find(id), std::string::npos) << answered.body;
    }
  }
}

// A RunWatcher over an in-memory store that reads only when the test calls
// CheckOnce, publishing to a feed whose changes the test collects.
class RunWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::shared_ptr<ChangeFeed> store_feed;
    OpenInMemoryBackends(store_feed, store_, queue_);
    if (HasFatalFailure()) return;
    auto wf = store_->CreateWorkflow({"w", "", json{{"name", "w"}, {"steps", json::array()}}});
    ASSERT_TRUE(wf.ok()) << wf.status().ToString();
    workflow_id_ = wf->id;
    heard_feed_->Subscribe("", [this](const Change& c) {
      std::lock_guard<std::mutex> lock(mu_);
      heard_.push_back(c);
    });
    RunWatcherOptions o;
    o.min_interval = o.max_interval = std::chrono::hours(1);  // only CheckOnce reads
    watcher_ = std::make_unique<RunWatcher>(store_.get(), heard_feed_, o);
  }
  // A new run, moved to RUNNING.
  std::string RunningRun() {
    auto created = store_->CreateRun({"", workflow_id_, 1, json::object(), ""});
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (!created.ok()) return "";
    EXPECT_TRUE(store_->TransitionRun({created->run.id, RunStatus::kPending, RunStatus::kRunning}).ok());
    return created->run.id;
  }
  // The changes published since the last call.
  std::vector<Change> Heard() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(heard_, {});
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<Queue> queue_;
  std::string workflow_id_;
  std::shared_ptr<ChangeFeed> heard_feed_ = std::make_shared<ChangeFeed>();
  std::mutex mu_;
  std::vector<Change> heard_;  // guarded by mu_
  std::unique_ptr<RunWatcher> watcher_;
};

TEST_F(RunWatcherTest, PublishesTheEndsOfTheRunsWatchedOnly) {
  std::string ended = RunningRun(), running = RunningRun(), unwatched = RunningRun();
  for (const auto& id : {ended, unwatched}) {
    ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kRunning, RunStatus::kFailed}).ok());
  }
  RunWatcher& watcher = *watcher_;
  EXPECT_EQ(watcher.CheckOnce(), 0) << "nobody waits";
  watcher.Watch(ended);
  watcher.Watch(running);
  watcher.Watch(running);
  EXPECT_EQ(watcher.CheckOnce(), 1);
  std::vector<Change> heard = Heard();
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0].run_id, ended);
  EXPECT_EQ(heard[0].kind, Change::Kind::kRun);
  ASSERT_TRUE(heard[0].run_status.has_value());
  EXPECT_EQ(*heard[0].run_status, RunStatus::kFailed);
  watcher.Unwatch(ended);
  EXPECT_EQ(watcher.CheckOnce(), 0);
  ASSERT_TRUE(store_->TransitionRun({running, RunStatus::kRunning, RunStatus::kCompleted}).ok());
  watcher.Unwatch(running);
  EXPECT_EQ(watcher.CheckOnce(), 1) << "still watched once";
  watcher.Unwatch(running);
  EXPECT_EQ(watcher.CheckOnce(), 0);
}

TEST_F(RunWatcherTest, PublishesAStepChangeWhenAStreamedRunsStepsMove) {
  std::string streamed = RunningRun(), other = RunningRun();
  auto start = [&](const std::string& run_id) {
    StepExecution s;
    s.run_id = run_id;
    s.step_id = "s";
    s.agent_name = "echo";
    auto id = store_->InsertStep(s);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  };
  auto heard_steps = [&] {
    std::vector<std::string> ids;
    for (const Change& c : Heard()) {
      if (c.kind == Change::Kind::kStep) ids.push_back(c.run_id);
    }
    return ids;
  };
  RunWatcher& watcher = *watcher_;
  watcher.WatchSteps(streamed);
  EXPECT_EQ(watcher.watched(), 1u);
  EXPECT_EQ(watcher.CheckOnce(), 0) << "no step yet";
  int64_t first = start(streamed);
  start(other);
  EXPECT_EQ(watcher.CheckOnce(), 1) << "a step started";
  EXPECT_EQ(heard_steps(), std::vector<std::string>{streamed});
  EXPECT_EQ(watcher.CheckOnce(), 0) << "nothing moved";
  StepFinish f;
  f.run_id = streamed;
  f.id = first;
  f.to = StepStatus::kFailed;
  f.error_message = "boom";
  ASSERT_TRUE(store_->FinishStep(f).ok());
  EXPECT_EQ(watcher.CheckOnce(), 1) << "a step finished";
  start(streamed);  // its retry
  EXPECT_EQ(watcher.CheckOnce(), 1) << "a new attempt started";
  EXPECT_EQ(heard_steps(), (std::vector<std::string>{streamed, streamed}));
  watcher.Watch(streamed);  // a ?wait on the same run: counted once
  EXPECT_EQ(watcher.watched(), 1u);
  watcher.Unwatch(streamed);
  watcher.UnwatchSteps(streamed);
  start(streamed);
  EXPECT_EQ(watcher.CheckOnce(), 0) << "no stream any more";
  EXPECT_TRUE(heard_steps().empty());
  EXPECT_EQ(watcher.watched(), 0u);
}

// A nudge (a run ended somewhere: Store::ListenForRunEnds) makes the watcher
// read now, not at its interval's end (an hour here): the waiter hears the
// end. Without the nudge nothing would be read for an hour.
TEST_F(RunWatcherTest, ANudgeReadsAtOnce) {
  std::string ended = RunningRun();
  watcher_->Watch(ended);
  ASSERT_TRUE(store_->TransitionRun({ended, RunStatus::kRunning, RunStatus::kCompleted}).ok());
  watcher_->Nudge();
  std::vector<Change> heard;
  for (int i = 0; i < 3000 && heard.empty(); ++i) {
    heard = Heard();
    if (heard.empty()) std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(heard.size(), 1u) << "the nudge read nothing";
  EXPECT_EQ(heard[0].run_id, ended);
  EXPECT_EQ(heard[0].run_status, RunStatus::kCompleted);
}

// Reads of run statuses that take 100 ms each, counted.
class SlowStatusStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<std::vector<std::pair<std::string, RunStatus>>> GetRunStatuses(
      const std::vector<std::string>& run_ids) override {
    ++reads;
    std::this_thread::sleep_for(100ms);
    return inner()->GetRunStatuses(run_ids);
  }
  std::atomic<int> reads{0};
};

// A read that takes 100 ms is made at most every 1 s (10 times its
// duration), though the interval asks for one every millisecond: without
// the spacing rule ~15 reads in the 1.5 s below, with it 2.
TEST_F(RunWatcherTest, ASlowReadIsMadeLessOften) {
  SlowStatusStore slow(store_.get());
  RunWatcherOptions o;
  o.min_interval = std::chrono::milliseconds(1);
  o.per_run = std::chrono::microseconds(0);
  RunWatcher watcher(&slow, heard_feed_, o);
  watcher.Watch(RunningRun());
  for (int i = 0; i < 1000 && slow.reads == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GT(slow.reads, 0) << "the watcher never read";
  std::this_thread::sleep_for(1500ms);
  EXPECT_LE(slow.reads, 3);
}

// Calls queued together on a StoreWorker with two threads: a slow one holds
// up no other while a thread is free for it. (A thread took every queued
// call, so the fast one waited behind the slow one.) Both threads are held
// first, so the two calls are queued together when the threads come free.
TEST(StoreWorkerTest, ASlowCallHoldsUpNoCallQueuedWithItWhileAThreadIsFree) {
  std::shared_ptr<ChangeFeed> feed;
  std::unique_ptr<Store> store;
  std::unique_ptr<Queue> queue;
  OpenInMemoryBackends(feed, store, queue);
  if (HasFatalFailure()) return;
  StoreWorkerOptions o;
  o.threads = 2;
  StoreWorker worker(store.get(), o);
  testing_support::Gate busy, slow;
  std::promise<void> fast_done;
  boost::asio::io_context ioc;
  auto work = boost::asio::make_work_guard(ioc);
  std::thread io([&ioc] { ioc.run(); });
  auto call = [&](std::function<int()> fn) {
    boost::asio::co_spawn(
        ioc,
        [&worker, fn = std::move(fn)]() -> boost::asio::awaitable<void> {
          std::function<int()> job = fn;
          co_await worker.Call<int>(std::move(job));
        },
        boost::asio::detached);
  };
  struct Finish {  // also when an assertion fails: every call ends, then the io thread
    testing_support::Gate *busy, *slow;
    decltype(work)* guard;
    std::thread* io;
    ~Finish() {
      busy->Open();
      slow->Open();
      guard->reset();
      io->join();
    }
  } finish{&busy, &slow, &work, &io};
  for (int i = 0; i < 2; ++i) {
    call([&busy] {
      busy.Pass();
      return 0;
    });
  }
  for (int i = 0; i < 2000 && busy.calls() < 2; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(busy.calls(), 2) << "two calls queued together did not run on the two threads at once";
  call([&slow] {
    slow.Pass();
    return 1;
  });
  call([&fast_done] {
    fast_done.set_value();
    return 2;
  });
  for (int i = 0; i < 200; ++i) std::this_thread::sleep_for(1ms);  // both queued before the threads come free
  busy.Open();
  ASSERT_TRUE(slow.WaitForCall(20s)) << "the slow call never started";
  EXPECT_EQ(fast_done.get_future().wait_for(20s), std::future_status::ready)
      << "the fast call waited for the slow one though a thread was free";
}

TEST(WorkflowCacheTest, ResolutionsExpireAfterTheTtlVersionsStay) {
  auto now = std::chrono::steady_clock::now();
  WorkflowCacheOptions o;
  o.resolve_ttl = std::chrono::milliseconds(1000);
  o.now = [&now] { return now; };
  WorkflowCache cache(o);
  Workflow v1;
  v1.id = "wf-1";
  v1.name = "one";
  v1.version = 1;
  EXPECT_EQ(cache.Resolve("one"), nullptr);
  cache.PutResolved("one", std::make_shared<const Workflow>(v1));
  ASSERT_NE(cache.Resolve("one"), nullptr);
  EXPECT_EQ(cache.Resolve("one")->id, "wf-1");
  now += std::chrono::milliseconds(999);
  EXPECT_NE(cache.Resolve("one"), nullptr);
  now += std::chrono::milliseconds(1);
  EXPECT_EQ(cache.Resolve("one"), nullptr) << "expired: this caller refreshes it";
  ASSERT_NE(cache.Resolve("one"), nullptr) << "the others get the expired one meanwhile";
  EXPECT_EQ(cache.Resolve("one")->version, 1);
  now += std::chrono::milliseconds(999);
  EXPECT_NE(cache.Resolve("one"), nullptr);
  now += std::chrono::milliseconds(1);
  EXPECT_EQ(cache.Resolve("one"), nullptr) << "the refresh never came: the next caller refreshes it";
  EXPECT_NE(cache.Resolve("one"), nullptr);
  Workflow v2 = v1;
  v2.version = 2;
  cache.PutResolved("one", std::make_shared<const Workflow>(v2));
  ASSERT_NE(cache.Resolve("one"), nullptr);
  EXPECT_EQ(cache.Resolve("one")->version, 2) << "refreshed";
  ASSERT_NE(cache.Version("wf-1", 1), nullptr) << "an exact version stays";
  EXPECT_EQ(cache.Version("wf-1", 3), nullptr);
  cache.PutResolved("one", std::make_shared<const Workflow>(v1));
  cache.InvalidateResolutions();
  EXPECT_EQ(cache.Resolve("one"), nullptr);
  EXPECT_NE(cache.Version("wf-1", 1), nullptr);
}

TEST(WorkflowCacheTest, OneRequestTemplatePerWorkflowVersion) {
  WorkflowCache cache;
  Workflow v1;
  v1.id = "wf-1";
  v1.version = 1;
  v1.plan = {{"steps", json::array({{{"id", "a"}, {"agent", "echo"}}})}};
  Workflow v2 = v1;
  v2.version = 2;
  v2.plan = {{"steps", json::array({{{"id", "b"}, {"agent", "upper"}}})}};
  auto t1 = cache.RequestTemplate(v1);
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(cache.RequestTemplate(v1), t1) << "made once for the version";
  auto t2 = cache.RequestTemplate(v2);
  ASSERT_NE(t2, nullptr);
  EXPECT_NE(t2, t1);
  for (const auto* wf : {&v1, &v2}) {
    json j = json::parse(cache.RequestTemplate(*wf)->Serialize("run-1", {{"q", 1}}, 0));
    EXPECT_EQ(j["workflow_plan"], wf->plan);
    EXPECT_EQ(j["workflow_version"], wf->version);
    EXPECT_EQ(j["input_data"], json({{"q", 1}}));
  }
}

TEST_F(ApiTest, CancelPendingRunEndsItAndPublishesCancellation) {
  std::string wf = CreateWorkflow("cancel");
  std::string id = Body(Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}"))["run_id"];
  Drain();
  auto r = Call("POST", "/api/v1/runs/" + id + "/cancel", R"({"reason": "nope", "cancelled_by": "dana"})");
  ASSERT_EQ(r.status, 202) << r.body;
  json run = Body(r);
  EXPECT_EQ(run["status"], "CANCELLED");
  EXPECT_EQ(run["cancelled_by"], "dana");
  EXPECT_EQ(run["cancel_reason"], "nope");
  auto msgs = Drain();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].topic, kCancellationTopic);
  json m = json::parse(msgs[0].payload);
  EXPECT_EQ(m["message_type"], "cancellation_request");
  EXPECT_EQ(m["cancelled_by"], "dana");
  EXPECT_EQ(m["reason"], "nope");
  EXPECT_EQ(Call("POST", "/api/v1/runs/" + id + "/cancel", "{}").status, 409);
}

TEST_F(ApiTest, RetryMovesFailedRunToPendingWithNewInputAndRequeues) {
  std::string wf = CreateWorkflow("retry");
  std::string id = Body(Call("POST", "/api/v1/workflows/" + wf + "/runs", R"({"input": {"x": 1}})"))["run_id"];
  Drain();
  EXPECT_EQ(Call("POST", "/api/v1/runs/" + id + "/retry", "{}").status, 409) << "PENDING runs cannot be retried";
  ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  RunTransition fail{id, RunStatus::kRunning, RunStatus::kFailed};
  fail.error_message = "boom";
  ASSERT_TRUE(store_->TransitionRun(fail).ok());
  auto r = Call("POST", "/api/v1/runs/" + id + "/retry", R"({"input": {"x": 2}})");
  ASSERT_EQ(r.status, 202) << r.body;
  json run = Body(r);
  EXPECT_EQ(run["status"], "PENDING");
  EXPECT_EQ(run["attempt"], 2);
  EXPECT_EQ(run["input"], json({{"x", 2}}));
  EXPECT_TRUE(run["error_message"].is_null());
  auto msgs = Drain();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(json::parse(msgs[0].payload)["input_data"], json({{"x", 2}}));
}

TEST_F(ApiTest, WaitReturnsAsSoonAsTheRunEnds) {
  std::string wf = CreateWorkflow("wait");
  std::string id = Body(Call("POST", "/api/v1/workflows/" + wf + "/runs", "{}"))["run_id"];
  // Not terminal: a short wait returns the current state.
  auto pending = Call("GET", "/api/v1/runs/" + id + "?wait=0.05");
  EXPECT_EQ(Body(pending)["status"], "PENDING");
  // Finish the run from another thread while a long wait is held.
  std::thread finisher([&] {
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
    RunTransition done{id, RunStatus::kRunning, RunStatus::kCompleted};
    done.output = json{{"ok", true}};
    EXPECT_TRUE(store_->TransitionRun(done).ok());
  });
  auto r = Call("GET", "/api/v1/runs/" + id + "?wait=30");
  finisher.join();
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(Body(r)["status"], "COMPLETED");
  EXPECT_EQ(Body(r)["output"], json({{"ok", true}}));
}

// Counts the run reads that returned (so a test knows a read is over).
class CountedReadStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  Result<Run> GetRun(const std::string& id) override {
    auto run = inner()->GetRun(id);
    ++reads;
    return run;
  }
  std::atomic<int> reads{0};
};

// The feed hands a waiter the run as the commit that ended it left it: the
// wait answers without reading the run again (one read: the wait's first).
TEST_F(ApiTest, AWaitIsAnsweredWithTheRunItsEndCommitted) {
  CreateWorkflow("answered-from-the-feed");
  std::string id = Body(Call("POST", "/api/v1/workflows/answered-from-the-feed/runs", "{}"))["run_id"];
  CountedReadStore counted(store_.get());
  ApiOptions ao;
  ao.wait_poll_interval = std::chrono::hours(1);  // only the feed can answer within the test
  Api waiting(&counted, queue_.get(), feed_, ao);
  http::Router router;
  waiting.Register(router);
  auto answer = std::async(std::launch::async, [&] {
    http::Request req = MakeRequest("GET", "/api/v1/runs/" + id + "?wait=60");
    return http::DispatchSync(router, req);
  });
  for (int i = 0; i < 2000 && counted.reads == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(counted.reads, 1) << "the wait's first read";
  ASSERT_TRUE(store_->TransitionRun({id, RunStatus::kPending, RunStatus::kRunning}).ok());
  Finish(id);
  http::Response r = Heard(answer);
  auto stored = store_->GetRun(id);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(Body(r), ToJson(*stored)) << "the answer is the run as committed";
  EXPECT_EQ(counted.reads, 1) << "the wait read the run again after the feed told it of the end";
  waiting.Stop();
}

TEST_F(ApiTest, BadInputIsAJsonClientError) {
  std::string wf = CreateWorkflow("bad-input");
  struct Case {
    std::string method, path, body;
    http::Headers headers;
    int status;
  };
  std::vector<Case> cases = {
      {"POST", "/api/v1/workflows", "{not json", {}, 400},
      {"POST", "/api/v1/workflows", "[1, 2]", {}, 400},
      {"POST", "/api/v1/workflows", "", {}, 400},
      {"POST", "/api/v1/workflows/" + wf + "/runs", R"({"input": 5})", {}, 400},
      {"POST", "/api/v1/workflows/" + wf + "/runs", R"({"inputs": {}})", {}, 400},
      {"POST", "/api/v1/workflows/" + wf + "/runs", "{}", {{"Idempotency-Key", std::string(300, 'k')}}, 400},
      {"GET", "/api/v1/runs/..%2F..%2Fetc", "", {}, 400},
      {"GET", "/api/v1/runs/run-missing", "", {}, 404},
      {"GET", "/api/v1/runs?status=DONE", "", {}, 400},
      {"GET", "/api/v1/runs?limit=0", "", {}, 400},
      {"GET", "/api/v1/runs/run-x?wait=-1", "", {}, 400},
      {"GET", "/api/v1/workflows/nope", "", {}, 404},
      {"POST", "/api/v1/agents", R"({"name": "a"})", {}, 400},
      {"POST", "/api/v1/agents", R"({"name": "a", "url": "ftp://x"})", {}, 400},
      {"POST", "/api/v1/agents", R"({"name": "a/b", "url": "http://x"})", {}, 400},
      {"DELETE", "/api/v1/agents/none", "", {}, 404},
  };
  for (auto& c : cases) {
    auto r = Call(c.method, c.path, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path << " " << c.body << " → " << r.body;
    json j = json::parse(r.body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << r.body;
    EXPECT_TRUE(j["error"]["code"].is_string()) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string()) << r.body;
  }
}

TEST_F(ApiTest, WrongContentTypeIs415) {
  http::Request req = MakeRequest("POST", "/api/v1/agents", "", {{"Content-Type", "text/plain"}});
  req.body = R"({"name": "a", "url": "http://x"})";  // set after: MakeRequest would add a JSON type
  boost::asio::io_context ioc;
  http::Response out;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out = co_await router_.Dispatch(req); },
      boost::asio::detached);
  ioc.run();
  EXPECT_EQ(out.status, 415);
  EXPECT_EQ(json::parse(out.body)["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
}

TEST_F(ApiTest, ContentTypeIsACaseInsensitiveMediaType) {
  std::string body = R"({"name": "a", "url": "http://127.0.0.1:1/x"})";
  auto upper = Call("POST", "/api/v1/agents", "", {{"Content-Type", "Application/JSON; charset=utf-8"}});
  EXPECT_EQ(upper.status, 400) << "accepted as JSON; rejected only because the body is empty";
  auto send = [&](const std::string& ct) {
    http::Headers h{{"Content-Type", ct}};
    http::Request r;
    r.method = "PUT";
    r.path = "/api/v1/agents/a";
    r.body = body;
    r.headers = h;
    boost::asio::io_context ioc;
    http::Response out;
    boost::asio::co_spawn(
        ioc, [&]() -> boost::asio::awaitable<void> { out = co_await router_.Dispatch(r); }, boost::asio::detached);
    ioc.run();
    return out.status;
  };
  EXPECT_EQ(send("Application/JSON; charset=utf-8"), 200);
  EXPECT_EQ(send("application/problem+json"), 200);
  EXPECT_EQ(send("text/jsonish"), 415);
  EXPECT_EQ(send("text/plain; note=json"), 415);
}

TEST_F(ApiTest, DeeplyNestedBodyIsRefusedBeforeParsing) {
  std::string deep = R"({"input": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  std::string wf = CreateWorkflow("deep");
  auto r = Call("POST", "/api/v1/workflows/" + wf + "/runs", deep);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find("nested"), std::string::npos);
}

TEST_F(ApiTest, ErrorTableCoversEveryCode) {
  EXPECT_EQ(HttpStatusFor(Code::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(Code::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(Code::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusFor(Code::kFailedPrecondition), 409);
  EXPECT_EQ(HttpStatusFor(Code::kTooLarge), 413);
  EXPECT_EQ(HttpStatusFor(Code::kUnsupportedMediaType), 415);
  EXPECT_EQ(HttpStatusFor(Code::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(Code::kInternal), 500);
  auto r = ErrorResponse(Status::NotFound("run x not found"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body), json({{"error", {{"code", "NOT_FOUND"}, {"message", "run x not found"}}}}));
}

}  // namespace
}  // namespace af
