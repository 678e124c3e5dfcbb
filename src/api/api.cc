#include "api/api.h"

#include "api/request_util.h"
#include "api/run_watcher.h"
#include "api/run_events.h"
#include "api/store_worker.h"
#include "api/workflow_cache.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <set>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/ids.h"
#include "common/json_limits.h"
#include "common/log.h"
#include "common/trace.h"
#include "dispatch/dispatcher.h"
#include "http/sse.h"
#include "queue/messages.h"

namespace af {

namespace asio = boost::asio;
using http::Request;
using http::Response;

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kNotFound: return 404;
    case Code::kAlreadyExists: return 409;
    case Code::kFailedPrecondition: return 409;
    case Code::kTooLarge: return 413;
    case Code::kUnsupportedMediaType: return 415;
    case Code::kUnavailable: return 503;
    case Code::kDeadlineExceeded: return 504;
    case Code::kCancelled: return 409;
    case Code::kAborted: return 409;
    case Code::kInternal: return 500;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
  }
  return 500;
}

Response ErrorResponse(const Status& status) {
  return http::JsonError(HttpStatusFor(status.code()), CodeName(status.code()), status.message(), status.details());
}

namespace {

using api::CheckFields;
using api::CheckId;
using api::OptString;
using api::ParseBody;
using api::ParseLimit;
using api::ParseWait;

constexpr size_t kMaxIdempotencyKey = 255;

template <typename T>
Response PageResponse(const Page<T>& page) {
  json items = json::array();
  for (const auto& item : page.items) items.push_back(ToJson(item));
  json token = page.next_page_token.empty() ? json(nullptr) : json(page.next_page_token);
  return http::JsonResponse(200, {{"items", items}, {"next_page_token", token}});
}

}  // namespace

// All route handlers. Shared by the routes (captured as shared_ptr).
class Api::Handlers : public std::enable_shared_from_this<Api::Handlers> {
 public:
  Handlers(Store* store, Queue* queue, std::shared_ptr<ChangeFeed> feed, ApiOptions options)
      : store_(store),
        queue_(queue),
        feed_(std::move(feed)),
        options_(std::move(options)),
        cache_(CacheOptions(options_)),
        watcher_(options_.run_end_poll.count() > 0 && feed_
                     ? std::make_unique<RunWatcher>(store_, feed_, WatcherOptions(options_))
                     : nullptr),
        run_ends_(watcher_ && options_.listen_for_run_ends
                      ? store_->ListenForRunEnds([w = watcher_.get()] { w->Nudge(); })
                      : nullptr),
        worker_(store, WorkerOptions(options_)),
        readers_(store, ReaderOptions(*store, options_.read_threads)) {}

  void Stop() {
    readers_.Stop();
    worker_.Stop();
  }

  // Where the synchronous handlers' store calls run (OffIoThread).
  StoreWorker* readers() { return &readers_; }
  size_t RunsWaitedFor() const { return watcher_ ? watcher_->watched() : 0; }

  // ---- workflows ----
  Response CreateWorkflow(Request& req) {
    auto body = ParseBody(req, nullptr);
    if (!body.ok()) return ErrorResponse(body.status());
    auto plan = ParsePlan(*body, options_.plan_limits);
    if (!plan.ok()) return ErrorResponse(plan.status());
    NewWorkflow w{plan->name, plan->description, *body};
    auto created = store_->CreateWorkflow(w);
    if (!created.ok()) return ErrorResponse(created.status());
    json out = ToJson(*created);
    out["warnings"] = AgentWarnings(*plan);
    log::Info("workflow created: " + created->id + " (" + created->name + ")");
    return http::JsonResponse(201, out);
  }

  Response UpdateWorkflow(Request& req) {
    auto wf = FindWorkflow(req.path_params["id"]);
    if (!wf.ok()) return ErrorResponse(wf.status());
    auto body = ParseBody(req, nullptr);
    if (!body.ok()) return ErrorResponse(body.status());
    auto plan = ParsePlan(*body, options_.plan_limits);
    if (!plan.ok()) return ErrorResponse(plan.status());
    NewWorkflow w{plan->name, plan->description, *body};
    auto updated = store_->UpdateWorkflow(wf->id, w);
    cache_.InvalidateResolutions();  // a new latest version, maybe a new name
    if (!updated.ok()) return ErrorResponse(updated.status());
    json out = ToJson(*updated);
    out["warnings"] = AgentWarnings(*plan);
    return http::JsonResponse(200, out);
  }

  Response GetWorkflow(Request& req) {
    std::optional<int> version;
    auto it = req.query.find("version");
    if (it != req.query.end() && !it->second.empty()) {
      try {
        size_t pos = 0;
        version = std::stoi(it->second, &pos);
        if (pos != it->second.size() || *version < 1) throw std::out_of_range("version");
      } catch (...) {
        return ErrorResponse(Status::InvalidArgument("version must be a positive integer"));
      }
    }
    auto wf = FindWorkflow(req.path_params["id"]);
    if (!wf.ok()) return ErrorResponse(wf.status());
    if (version && *version != wf->version) {
      auto v = store_->GetWorkflow(wf->id, version);
      if (!v.ok()) return ErrorResponse(v.status());
      return http::JsonResponse(200, ToJson(*v));
    }
    return http::JsonResponse(200, ToJson(*wf));
  }

  Response ListWorkflowVersions(Request& req) {
    auto wf = FindWorkflow(req.path_params["id"]);
    if (!wf.ok()) return ErrorResponse(wf.status());
    auto versions = store_->ListWorkflowVersions(wf->id);
    if (!versions.ok()) return ErrorResponse(versions.status());
    json items = json::array();
    for (const auto& v : *versions) items.push_back(ToJson(v));
    return http::JsonResponse(200, {{"items", items}});
  }

  Response ListWorkflows(Request& req) {
    auto limit = ParseLimit(req, 50);
    if (!limit.ok()) return ErrorResponse(limit.status());
    auto page = store_->ListWorkflows(*limit, req.query["page_token"]);
    if (!page.ok()) return ErrorResponse(page.status());
    return PageResponse(*page);
  }

  Response DeleteWorkflow(Request& req) {
    auto wf = FindWorkflow(req.path_params["id"]);
    if (!wf.ok()) return ErrorResponse(wf.status());
    Status s = store_->DeleteWorkflow(wf->id);
    cache_.InvalidateResolutions();
    if (!s.ok()) return ErrorResponse(s);
    Response r;
    r.status = 204;
    return r;
  }

  // ---- runs ----
  asio::awaitable<Response> TriggerRun(Request& req) {
    auto wait = ParseWait(req, options_.max_wait_seconds);
    if (!wait.ok()) co_return ErrorResponse(wait.status());
    std::shared_ptr<const Workflow> wf;
    {
      const std::string& id_or_name = req.path_params["id"];
      auto found = co_await ResolveWorkflow(id_or_name);
      if (!found.ok()) co_return ErrorResponse(found.status());
      wf = std::move(found).value();
    }
    auto body = ParseBody(req, json::object());
    if (!body.ok()) co_return ErrorResponse(body.status());
    Status fields = CheckFields(*body, {"input"});
    if (!fields.ok()) co_return ErrorResponse(fields);
    json input = body->value("input", json::object());
    if (input.is_null()) input = json::object();
    if (!input.is_object()) co_return ErrorResponse(Status::InvalidArgument("input must be a JSON object"));
    std::string key = req.Header("Idempotency-Key");
    if (key.size() > kMaxIdempotencyKey) {
      co_return ErrorResponse(Status::InvalidArgument("Idempotency-Key is longer than 255 characters"));
    }

    // W3C trace context: a valid traceparent is kept with the run (its
    // agents' calls join that trace); without one, or with an invalid one
    // (ignored, as the specification says), the run starts a new trace.
    std::string incoming = req.Header("traceparent");
    std::optional<trace::TraceParent> parent = trace::ParseTraceParent(incoming);
    const bool ignored_trace = !parent && !incoming.empty();
    if (!parent) parent = trace::NewTrace();

    // The run and its execution request are committed in one transaction
    // (the transactional outbox, dispatch/dispatcher.h): the relay publishes
    // the request, now or whenever the broker is reachable again.
    NewRun nr;
    nr.id = NewRunId();
    nr.workflow_id = wf->id;
    nr.workflow_version = wf->version;
    nr.input = input;
    nr.idempotency_key = key;
    nr.traceparent = trace::FormatTraceParent(*parent);
    {
      Run shape;
      shape.id = nr.id;
      shape.input = input;
      nr.dispatch = ExecutionDispatch(shape, *cache_.RequestTemplate(*wf), options_.execution_topic);
    }
    // Committed with the other triggers queued meanwhile (one transaction),
    // off this io thread; the worker kicks the dispatcher once per batch.
    auto created = co_await worker_.CreateRun(std::move(nr));
    if (!created.ok()) co_return ErrorResponse(created.status());
    Run run = created->run;
    const std::string trace_id = TraceIdOf(run);
    if (created->created) {
      if (options_.metrics) options_.metrics->runs_created.Inc();
      if (ignored_trace) {
        log::Info("ignored an invalid traceparent header; the run starts a new trace", {run.id, {}, {}, trace_id});
      }
      log::Info("run accepted for workflow " + wf->id, {run.id, {}, {}, trace_id});
    }
    if (*wait > 0) {
      auto waited = co_await WaitForRun(run.id, *wait);
      if (!waited.ok()) co_return ErrorResponse(waited.status());
      run = std::move(waited).value();
    }
    co_return http::JsonTextResponse(IsTerminal(run.status) && *wait > 0 ? 200 : 202, RunJsonText(run));
  }

  asio::awaitable<Response> GetRun(Request& req) {
    auto wait = ParseWait(req, options_.max_wait_seconds);
    if (!wait.ok()) co_return ErrorResponse(wait.status());
    const std::string& id = req.path_params["run_id"];
    Status valid = CheckId(id, "run id");
    if (!valid.ok()) co_return ErrorResponse(valid);
    if (*wait > 0) {
      auto run = co_await WaitForRun(id, *wait);
      if (!run.ok()) co_return ErrorResponse(run.status());
      co_return http::JsonTextResponse(200, RunJsonText(*run));
    }
    auto run = co_await ReadRun(id);
    if (!run.ok()) co_return ErrorResponse(run.status());
    co_return http::JsonTextResponse(200, RunJsonText(*run));
  }

  asio::awaitable<Result<Run>> ReadRun(const std::string& id) {
    std::function<Result<Run>()> read = [this, &id] { return store_->GetRun(id); };
    Result<Run> run = co_await readers_.Call<Result<Run>>(std::move(read));
    co_return run;
  }

  Response ListRuns(Request& req) {
    RunFilter f;
    auto limit = ParseLimit(req, 50);
    if (!limit.ok()) return ErrorResponse(limit.status());
    f.limit = *limit;
    f.workflow_id = req.query["workflow_id"];
    f.page_token = req.query["page_token"];
    const std::string& status = req.query["status"];
    if (!status.empty()) {
      f.status = ParseRunStatus(status);
      if (!f.status) {
        return ErrorResponse(Status::InvalidArgument(
            "status must be one of PENDING, RUNNING, COMPLETED, FAILED, CANCELLED"));
      }
    }
    if (!f.workflow_id.empty()) {
      // Accept a workflow name too.
      auto wf = FindWorkflow(f.workflow_id);
      if (wf.ok()) f.workflow_id = wf->id;
    }
    auto page = store_->ListRuns(f);
    if (!page.ok()) return ErrorResponse(page.status());
    return PageResponse(*page);
  }

  Response ListSteps(Request& req) {
    const std::string& id = req.path_params["run_id"];
    Status valid = CheckId(id, "run id");
    if (!valid.ok()) return ErrorResponse(valid);
    auto run = store_->GetRun(id);
    if (!run.ok()) return ErrorResponse(run.status());
    auto steps = store_->ListSteps(id);
    if (!steps.ok()) return ErrorResponse(steps.status());
    json items = json::array();
    for (const auto& s : *steps) items.push_back(ToJson(s));
    return http::JsonResponse(200, {{"run_id", id}, {"status", ToString(run->status)}, {"items", items}});
  }

  // GET /runs/{run_id}/events: server-sent events (api/run_events.h). The
  // run is read again when this process's change feed reports a change to
  // it, and every events_poll_interval (a safety net; without a run watcher,
  // how changes made by other processes are found). The run's end and its
  // steps' progress, when another process writes them, reach the feed
  // through the run watcher (run_end_poll).
  asio::awaitable<Response> RunEvents(Request& req) {
    const std::string id = req.path_params["run_id"];
    Status valid = CheckId(id, "run id");
    if (!valid.ok()) co_return ErrorResponse(valid);
    std::function<Result<Run>()> read = [this, &id] { return store_->GetRun(id); };
    Result<Run> run = co_await readers_.Call<Result<Run>>(std::move(read));
    if (!run.ok()) co_return ErrorResponse(run.status());
    Response res;
    res.content_type = "text/event-stream";
    res.headers.emplace_back("Cache-Control", "no-cache");
    res.headers.emplace_back("X-Accel-Buffering", "no");  // proxies: pass events on at once
    // The handlers stay alive while the stream does (the router holds them
    // too, but a stream may outlive a reconfigured router).
    res.stream = [self = shared_from_this(), id](http::StreamWriter& w) -> asio::awaitable<void> {
      asio::awaitable<void> stream = self->StreamRunEvents(id, w);
      co_await std::move(stream);
    };
    co_return res;
  }

  // The ended run a feed listener (on the writer's thread) hands to its
  // waiter (on the io thread).
  class EndedRun {
   public:
    void Set(std::shared_ptr<const Run> run) {
      std::lock_guard<std::mutex> lock(mu_);
      run_ = std::move(run);
    }
    std::shared_ptr<const Run> Get() {
      std::lock_guard<std::mutex> lock(mu_);
      return run_;
    }

   private:
    std::mutex mu_;
    std::shared_ptr<const Run> run_;
  };

  // A run whose end (and, for a stream, whose step progress) the run
  // watcher reads for the feed (changes written by other processes), from
  // Begin until destroyed. No watcher: nothing.
  struct Watched {
    RunWatcher* w = nullptr;
    std::string id;
    bool steps = false;
    void Begin(RunWatcher* watcher, const std::string& run_id, bool with_steps) {
      if (w != nullptr || watcher == nullptr) return;
      w = watcher;
      id = run_id;
      steps = with_steps;
      w->Watch(id);
      if (steps) w->WatchSteps(id);
    }
    ~Watched() {
      if (w == nullptr) return;
      w->Unwatch(id);
      if (steps) w->UnwatchSteps(id);
    }
  };

  // Unsubscribes when the stream ends, also when its frame is destroyed
  // without being resumed (server stop).
  struct FeedSubscription {
    std::shared_ptr<ChangeFeed> feed;
    uint64_t token = 0;
    ~FeedSubscription() {
      if (feed) feed->Unsubscribe(token);
    }
  };

  asio::awaitable<void> StreamRunEvents(const std::string& id, http::StreamWriter& w) {
    auto ex = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(ex);
    auto changed = std::make_shared<std::atomic<bool>>(false);
    FeedSubscription sub;
    if (feed_) {
      sub.feed = feed_;
      sub.token = feed_->Subscribe(id, [timer, changed](const Change&) {
        changed->store(true);
        asio::post(timer->get_executor(), [timer] { timer->cancel(); });
      });
    }
    std::string retry = "retry: 1000\n\n";  // a client reconnects after 1 s
    if (!co_await w.Write(std::move(retry))) co_return;
    RunEventDiff diff;
    Watched watching;
    uint64_t seq = 0;
    auto last_write = std::chrono::steady_clock::now();
    for (;;) {
      changed->store(false);
      // The run first: once it reads finished, the steps read after it are final.
      Result<Run> run = Status::Internal("unset");
      std::function<Result<std::vector<StepExecution>>()> read = [this, &id, &run] {
        run = store_->GetRun(id);
        return run.ok() ? store_->ListSteps(id) : Result<std::vector<StepExecution>>(run.status());
      };
      Result<std::vector<StepExecution>> steps =
          co_await readers_.Call<Result<std::vector<StepExecution>>>(std::move(read));
      if (!steps.ok()) {
        // The stream ends; the client's reconnect starts over.
        json err = {{"code", CodeName(steps.status().code())}, {"message", steps.status().message()}};
        std::string event = http::FormatSseEvent("error", err.dump());
        co_await w.Write(std::move(event));
        co_return;
      }
      for (RunEvent& e : diff.Next(*run, *steps)) {
        std::string event = http::FormatSseEvent(e.name, e.data, std::to_string(++seq));
        if (!co_await w.Write(std::move(event))) co_return;
        last_write = std::chrono::steady_clock::now();
      }
      if (diff.ended()) co_return;
      // The run's end and its steps' progress, written by a consumer, wake the stream.
      watching.Begin(watcher_.get(), id, /*with_steps=*/true);
      if (changed->load()) continue;
      auto now = std::chrono::steady_clock::now();
      if (now - last_write >= options_.events_keepalive) {
        std::string ping = http::FormatSseComment("keep-alive");
        if (!co_await w.Write(std::move(ping))) co_return;
        last_write = now;
      }
      timer->expires_at(std::min(now + options_.events_poll_interval, last_write + options_.events_keepalive));
      boost::system::error_code ec;
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

  Response CancelRun(Request& req) {
    const std::string& id = req.path_params["run_id"];
    Status valid = CheckId(id, "run id");
    if (!valid.ok()) return ErrorResponse(valid);
    auto body = ParseBody(req, json::object());
    if (!body.ok()) return ErrorResponse(body.status());
    Status fields = CheckFields(*body, {"reason", "cancelled_by"});
    if (!fields.ok()) return ErrorResponse(fields);
    Status err;
    CancelRequest c;
    c.run_id = id;
    c.reason = OptString(*body, "reason", &err);
    c.cancelled_by = OptString(*body, "cancelled_by", &err);
    if (!err.ok()) return ErrorResponse(err);
    if (c.cancelled_by.empty()) c.cancelled_by = "api";

    auto run = store_->GetRun(id);
    if (!run.ok()) return ErrorResponse(run.status());
    if (IsTerminal(run->status)) {
      return ErrorResponse(Status::FailedPrecondition(std::string("run already finished with status ") +
                                                          ToString(run->status),
                                                      {{"status", ToString(run->status)}}));
    }
    auto marked = store_->RequestCancel(c);
    if (!marked.ok()) return ErrorResponse(marked.status());
    Run result = *marked;
    if (result.status == RunStatus::kPending) {
      // Not started: end it here; the executor sees CANCELLED and skips it.
      RunTransition t;
      t.run_id = id;
      t.from = RunStatus::kPending;
      t.to = RunStatus::kCancelled;
      t.error_message = "cancelled by " + c.cancelled_by + (c.reason.empty() ? "" : ": " + c.reason);
      auto moved = store_->TransitionRun(t);
      if (moved.ok()) {
        result = *moved;
        if (options_.metrics) options_.metrics->runs_finished.Labels({ToString(RunStatus::kCancelled)}).Inc();
      }
    }
    CancellationRequest cr{id, c.cancelled_by, c.reason, NowMs()};
    Status pub = queue_->Publish(options_.cancellation_topic, id, SerializeCancellationRequest(cr));
    const std::string trace_id = TraceIdOf(result);
    if (!pub.ok()) {
      log::Warn("could not queue the cancellation (recorded on the run): " + pub.message(), {id, {}, {}, trace_id});
    }
    log::Info("cancellation requested by " + c.cancelled_by, {id, {}, {}, trace_id});
    return http::JsonResponse(202, ToJson(result));
  }

  Response RetryRun(Request& req) {
    const std::string& id = req.path_params["run_id"];
    Status valid = CheckId(id, "run id");
    if (!valid.ok()) return ErrorResponse(valid);
    auto body = ParseBody(req, json::object());
    if (!body.ok()) return ErrorResponse(body.status());
    Status fields = CheckFields(*body, {"input"});
    if (!fields.ok()) return ErrorResponse(fields);
    std::optional<json> input;
    if (body->contains("input") && !(*body)["input"].is_null()) {
      if (!(*body)["input"].is_object()) return ErrorResponse(Status::InvalidArgument("input must be a JSON object"));
      input = (*body)["input"];
    }
    auto run = store_->GetRun(id);
    if (!run.ok()) return ErrorResponse(run.status());
    if (run->status != RunStatus::kFailed && run->status != RunStatus::kCancelled) {
      return ErrorResponse(Status::FailedPrecondition(
          std::string("only FAILED or CANCELLED runs can be retried; this run is ") + ToString(run->status),
          {{"status", ToString(run->status)}}));
    }
    auto wf = WorkflowVersion(run->workflow_id, run->workflow_version);
    if (!wf.ok()) return ErrorResponse(wf.status());
    RunTransition t;
    t.run_id = id;
    t.from = run->status;
    t.to = RunStatus::kPending;
    t.input = input;
    {
      Run shape = *run;
      if (input) shape.input = *input;
      t.dispatch = ExecutionDispatch(shape, *wf, options_.execution_topic);  // committed with the move
    }
    auto moved = store_->TransitionRun(t);
    if (!moved.ok()) return ErrorResponse(moved.status());
    if (options_.on_dispatch) options_.on_dispatch();
    log::Info("run retried", {id, {}, {}, TraceIdOf(*moved)});
    return http::JsonTextResponse(202, RunJsonText(*moved));
  }

  Response Health(Request&) {
    Status db = store_->Ping();
    Status q = queue_->Ping();
    if (!db.ok() || !q.ok()) {
      return http::JsonResponse(503, {{"status", "unavailable"},
                                      {"store", db.ok() ? "ok" : db.message()},
                                      {"queue", q.ok() ? "ok" : q.message()}});
    }
    return http::JsonResponse(200, {{"status", "ok"}});
  }

  Status RequeueUnfinished() {
    auto runs = store_->ListUnfinishedRuns(100000);
    if (!runs.ok()) return runs.status();
    for (const Run& r : *runs) {
      auto wf = store_->GetWorkflow(r.workflow_id, r.workflow_version);
      if (!wf.ok()) continue;
      AF_RETURN_IF_ERROR(PublishExecution(r, *wf));
    }
    if (!runs->empty()) log::Info("re-queued " + std::to_string(runs->size()) + " unfinished run(s)");
    return Status::Ok();
  }

 private:
  static WorkflowCacheOptions CacheOptions(const ApiOptions& o) {
    WorkflowCacheOptions c;
    c.resolve_ttl = o.workflow_cache_ttl;
    return c;
  }
  static RunWatcherOptions WatcherOptions(const ApiOptions& o) {
    RunWatcherOptions w;
    w.min_interval = o.run_end_poll;
    w.max_interval = std::max(o.run_end_poll, o.wait_poll_interval);
    return w;
  }
  // No more threads than the store has connections: on SQLite (one) a
  // second thread would only wait for the first.
  static StoreWorkerOptions WorkerOptions(const ApiOptions& o) {
    StoreWorkerOptions w;
    w.threads = o.store_threads;
    w.max_batch = std::max<size_t>(1, o.max_trigger_batch);
    w.on_created = o.on_dispatch;
    return w;
  }

  // FindWorkflow through the cache; a miss reads the store on a worker
  // thread, not on the io thread.
  asio::awaitable<Result<std::shared_ptr<const Workflow>>> ResolveWorkflow(const std::string& id_or_name) {
    if (auto hit = cache_.Resolve(id_or_name)) co_return hit;
    std::function<Result<Workflow>()> find = [this, &id_or_name] { return FindWorkflow(id_or_name); };
    Result<Workflow> wf = co_await worker_.Call<Result<Workflow>>(std::move(find));
    if (!wf.ok()) co_return wf.status();
    auto shared = std::make_shared<const Workflow>(std::move(wf).value());
    cache_.PutResolved(id_or_name, shared);
    co_return shared;
  }

  // An exact version (immutable: cached for good).
  Result<Workflow> WorkflowVersion(const std::string& id, int version) {
    if (auto hit = cache_.Version(id, version)) return *hit;
    auto wf = store_->GetWorkflow(id, version);
    if (wf.ok()) cache_.PutVersion(*wf);
    return wf;
  }

  // By id first, then by name.
  Result<Workflow> FindWorkflow(const std::string& id_or_name) {
    Status valid = CheckId(id_or_name, "workflow id");
    if (!valid.ok()) return valid;
    auto wf = store_->GetWorkflow(id_or_name);
    if (wf.ok() || wf.status().code() != Code::kNotFound) return wf;
    auto by_name = store_->GetWorkflowByName(id_or_name);
    if (by_name.ok()) return by_name;
    return Status::NotFound("workflow '" + id_or_name + "' not found (by id or name)");
  }

  // The seed's execution request for `run` of workflow version `wf`, published now.
  Status PublishExecution(const Run& run, const Workflow& wf) {
    OutboxMessage m = ExecutionDispatch(run, wf, options_.execution_topic);
    return queue_->Publish(m.topic, m.key, m.payload);
  }

  json AgentWarnings(const Plan& plan) {
    json warnings = json::array();
    std::set<std::string> seen;
    for (const auto& s : plan.steps) {
      if (!seen.insert(s.agent).second) continue;
      auto a = store_->GetAgent(s.agent);
      if (!a.ok() && a.status().code() == Code::kNotFound) {
        warnings.push_back("step '" + s.id + "': agent '" + s.agent +
                           "' is not registered yet; runs will fail at this step until it is");
      }
    }
    return warnings;
  }

  // Waits until the run is terminal or `seconds` pass; then returns it.
  asio::awaitable<Result<Run>> WaitForRun(const std::string& run_id, double seconds) {
    auto ex = co_await asio::this_coro::executor;
    auto timer = std::make_shared<asio::steady_timer>(ex);
    auto changed = std::make_shared<std::atomic<bool>>(false);
    // The run as the commit that ended it left it, when the feed carries it:
    // the answer, without reading the run again.
    auto ended = std::make_shared<EndedRun>();
    uint64_t token = 0;
    if (feed_) {
      // Only the run's end matters here: step writes (Interest::kRuns) and
      // its other status changes do not wake the waiter, who would re-read
      // the run under the store's lock for nothing.
      token = feed_->Subscribe(
          run_id,
          [timer, changed, ended](const Change& c) {
            if (c.run_status && !IsTerminal(*c.run_status)) return;
            if (c.ended) ended->Set(c.ended);
            changed->store(true);
            asio::post(timer->get_executor(), [timer] { timer->cancel(); });
          },
          ChangeFeed::Interest::kRuns);
    }
    // Ends written by other processes: the watcher reads them for the feed
    // (from the first read that finds the run unfinished).
    Watched watching;
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    Result<Run> run = Status::Internal("unset");
    while (true) {
      changed->store(false);
      if (std::shared_ptr<const Run> end = ended->Get()) {
        run = *end;
        break;
      }
      run = co_await ReadRun(run_id);
      if (!run.ok() || IsTerminal(run->status)) break;
      watching.Begin(watcher_.get(), run_id, /*with_steps=*/false);
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      if (changed->load()) continue;
      auto next = std::min(deadline, now + options_.wait_poll_interval);
      timer->expires_at(next);
      boost::system::error_code ec;
      co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (feed_) feed_->Unsubscribe(token);
    co_return run;
  }

  Store* store_;
  Queue* queue_;
  std::shared_ptr<ChangeFeed> feed_;
  ApiOptions options_;
  WorkflowCache cache_;
  std::unique_ptr<RunWatcher> watcher_;     // null unless run_end_poll > 0
  // Nudges watcher_ when a run ends in another process (null: the store
  // cannot tell; the watcher polls). Declared after watcher_: stops first.
  std::unique_ptr<Store::RunEndListener> run_ends_;
  StoreWorker worker_;                      // triggers' batches (and workflow lookups on a cache miss)
  StoreWorker readers_;                     // every other store call of a handler; last: its threads stop first
};

Api::Api(Store* store, Queue* queue, std::shared_ptr<ChangeFeed> feed, ApiOptions options)
    : handlers_(std::make_shared<Handlers>(store, queue, std::move(feed), options)),
      agents_(store, AgentsApiOptions{options.agent_hosts}),
      apikeys_(store, options.auth_mode) {}

Status Api::RequeueUnfinishedRuns() { return handlers_->RequeueUnfinished(); }

void Api::Stop() { handlers_->Stop(); }

size_t Api::RunsWaitedFor() const { return handlers_->RunsWaitedFor(); }

std::shared_ptr<StoreWorker> Api::Readers() const {
  return std::shared_ptr<StoreWorker>(handlers_, handlers_->readers());
}

void Api::Register(http::Router& router) {
  auto h = handlers_;
  std::shared_ptr<StoreWorker> readers = Readers();
  // Wraps a synchronous handler as a route that runs it off the io thread.
  auto sync = [h, &readers](Response (Handlers::*fn)(Request&)) -> http::Handler {
    return OffIoThread(readers, [h, fn](Request& req) { return ((*h).*fn)(req); });
  };
  auto async = [h](asio::awaitable<Response> (Handlers::*fn)(Request&)) -> http::Handler {
    return [h, fn](Request& req) -> asio::awaitable<Response> { return ((*h).*fn)(req); };
  };
  const std::string v1 = "/api/v1";
  // /healthz, /readyz and /metrics are the service's (ops::Endpoints).
  router.Add("GET", v1 + "/healthz", sync(&Handlers::Health));

  router.Add("POST", v1 + "/workflows", sync(&Handlers::CreateWorkflow));
  router.Add("GET", v1 + "/workflows", sync(&Handlers::ListWorkflows));
  router.Add("GET", v1 + "/workflows/{id}", sync(&Handlers::GetWorkflow));
  router.Add("PUT", v1 + "/workflows/{id}", sync(&Handlers::UpdateWorkflow));
  router.Add("DELETE", v1 + "/workflows/{id}", sync(&Handlers::DeleteWorkflow));
  router.Add("GET", v1 + "/workflows/{id}/versions", sync(&Handlers::ListWorkflowVersions));
  router.Add("POST", v1 + "/workflows/{id}/runs", async(&Handlers::TriggerRun));

  router.Add("GET", v1 + "/runs", sync(&Handlers::ListRuns));
  router.Add("GET", v1 + "/runs/{run_id}", async(&Handlers::GetRun));
  router.Add("GET", v1 + "/runs/{run_id}/steps", sync(&Handlers::ListSteps));
  router.Add("GET", v1 + "/runs/{run_id}/events", async(&Handlers::RunEvents));
  router.Add("POST", v1 + "/runs/{run_id}/cancel", sync(&Handlers::CancelRun));
  router.Add("POST", v1 + "/runs/{run_id}/retry", sync(&Handlers::RetryRun));

  agents_.Register(router, readers);
  apikeys_.Register(router, readers);
}

}  // namespace af
