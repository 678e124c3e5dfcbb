#include "cli/platform.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "agent/routing_caller.h"
#include "api/auth_guard.h"
#include "cli/observability.h"
#include "common/log.h"
#include "model/plan.h"
#include "ui/console.h"

namespace af {

Platform::Platform(PlatformOptions options) : options_(std::move(options)) {}

Platform::~Platform() { Stop(); }

Status Platform::Start() {
  AF_RETURN_IF_ERROR(CheckPlanLimits(options_.limits.plan));
  std::string db_url = options_.database_url;
  if (db_url.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.data_dir, ec);
    if (ec) {
      return Status::InvalidArgument("cannot create data directory '" + options_.data_dir + "': " + ec.message() +
                                     ". Hint: pass --data-dir with a writable path");
    }
    db_url = (std::filesystem::path(options_.data_dir) / "agentflow.db").string();
    // One serve per data directory: its embedded queue and lease owner name
    // are the directory's. The lock goes with the process, however it ends.
    std::string lock_path = (std::filesystem::path(options_.data_dir) / "serve.lock").string();
    data_dir_lock_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (data_dir_lock_ < 0) {
      return Status::InvalidArgument("cannot open '" + lock_path + "': " + std::strerror(errno));
    }
    if (::flock(data_dir_lock_, LOCK_EX | LOCK_NB) != 0) {
      ::close(data_dir_lock_);
      data_dir_lock_ = -1;
      return Status::FailedPrecondition("another 'agentflow serve' is using the data directory '" +
                                        options_.data_dir + "'. Hint: stop it, or pass another --data-dir");
    }
  }
  feed_ = std::make_shared<ChangeFeed>();
  StoreOptions so;
  so.url = db_url;
  so.sqlite_full_sync = options_.sqlite_full_sync;
  auto store = OpenStore(so);
  if (!store.ok()) return store.status();
  Store* backend = store->get();  // the dispatcher's fast path attaches under the change feed
  store_ = WithChangeFeed(std::move(store).value(), feed_);

  QueueOptions qo;
  qo.embedded_dir = options_.data_dir;
  auto queue = OpenEmbeddedQueue(qo);
  if (!queue.ok()) return queue.status();
  queue_ = std::move(queue).value();

  if (options_.demo) {
    auto demo = StartDemoAgents("127.0.0.1", options_.demo_port);
    if (!demo.ok()) return demo.status();
    demo_ = std::move(demo).value();
    for (const Agent& a : demo_->Records()) {
      auto saved = store_->UpsertAgent(a);
      if (!saved.ok()) return saved.status();
    }
    AF_RETURN_IF_ERROR(LoadSampleWorkflows());
  }

  DispatcherOptions dispatch = options_.reliability.dispatcher(kExecutionTopic);
  // Nothing here would take a run the sweeper dispatched again.
  if (!options_.execute) dispatch.sweep_interval = std::chrono::milliseconds(0);
  dispatcher_ = std::make_unique<Dispatcher>(store_.get(), queue_.get(), dispatch);
  dispatcher_->AttachWriter(backend);  // triggers publish without a claim commit
  dispatcher_->Start();
  cli::ExposeOutboxMetrics(registry_, dispatcher_.get());

  ApiOptions ao;
  ao.metrics = &api_metrics_;
  ao.on_dispatch = [d = dispatcher_.get()] { d->Kick(); };
  ao.plan_limits = options_.limits.plan;
  ao.agent_hosts = options_.agent_hosts;
  ao.auth_mode = options_.auth_mode;
  // Every write of this process (executor and API) goes through feed_, so
  // a run's event stream is woken by each change; its re-read is only a
  // safety net here, not how changes are found (as in an api process).
  ao.events_poll_interval = std::chrono::seconds(2);
  api_ = std::make_unique<Api>(store_.get(), queue_.get(), feed_, ao);
  // Runs accepted before a crash whose request never reached the queue.
  AF_RETURN_IF_ERROR(api_->RequeueUnfinishedRuns());

  if (options_.execute) AF_RETURN_IF_ERROR(StartExecutor());

  if (options_.health_interval_seconds > 0) {
    HealthCheckOptions hc;
    hc.interval = std::chrono::milliseconds(static_cast<int64_t>(options_.health_interval_seconds * 1000));
    health_checker_ = NewHealthChecker(store_.get(), hc);
    health_checker_->Start();
  }

  // /readyz: the embedded default's own database and queue (its registry
  // is the same database).
  ops::EndpointsOptions oo;
  oo.checks = {cli::DatabaseCheck(store_.get()), cli::QueueCheck("queue", queue_.get())};
  ops_ = std::make_unique<ops::Endpoints>(&registry_, std::move(oo));
  router_ = std::make_unique<http::Router>();
  api_->Register(*router_);
  ops_->Register(*router_);
  ui::RegisterConsole(*router_);
  authenticator_ = std::make_unique<auth::Authenticator>(store_.get(), auth::AuthenticatorOptions{options_.auth_mode});
  InstallAuthGuard(*router_, authenticator_.get(), api_->Readers());
  http::ServerOptions ho;
  ho.host = options_.host;
  ho.port = options_.port;
  ho.threads = options_.api_threads;
  ho.max_body_bytes = options_.max_body_bytes;
  ho.header_timeout = options_.limits.header_timeout();
  ho.body_timeout = options_.limits.body_timeout();
  auto server = http::StartServer(ho, ops_->Instrument(router_->AsHandler()));
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
  started_ = true;
  return Status::Ok();
}

Status Platform::StartExecutor() {
  loop_ = std::make_unique<EventLoop>(1);
  directory_ = NewStoreAgentDirectory(store_.get());
  // No Kafka here: a step calling a kafka agent fails with a hint to use KAFKA_BROKERS.
  HttpAgentCallerOptions http = options_.limits.http_caller();
  http.one_thread = true;  // loop_ has one thread
  std::unique_ptr<AgentCaller> http_caller = NewHttpAgentCaller(loop_->executor(), http);
  caller_ = auth::NewHostCheckingAgentCaller(NewRoutingAgentCaller(std::move(http_caller), nullptr),
                                            options_.agent_hosts);
  EngineOptions eo;
  eo.metrics = &executor_metrics_;
  eo.limits = options_.limits.step;
  eo.lease_ttl = options_.reliability.lease_ttl();
  if (data_dir_lock_ >= 0) {
    // This process alone serves the directory: after a crash the next serve
    // takes its runs' leases back at once instead of waiting for them to lapse.
    std::error_code ec;
    auto dir = std::filesystem::absolute(options_.data_dir, ec);
    eo.owner = "serve:" + (ec ? options_.data_dir : dir.lexically_normal().string());
  }
  engine_ = std::make_unique<Engine>(loop_->executor(), store_.get(), directory_.get(), caller_.get(), eo);
  loop_->Start();
  ConsumerOptions co;
  co.max_active_runs = options_.max_active_runs;
  consumer_ = std::make_unique<ExecutionConsumer>(queue_.get(), engine_.get(), co);
  AF_RETURN_IF_ERROR(consumer_->Start());
  cli::ExposeConsumerMetrics(registry_, consumer_.get());
  return Status::Ok();
}

void Platform::Stop() {
  if (health_checker_) health_checker_->Stop();
  if (api_) api_->Stop();  // its waiters resume on the server's io threads: before those stop
  if (server_) server_->Stop();
  cli::ClearConsumerMetrics(registry_);
  cli::ClearOutboxMetrics(registry_);
  if (dispatcher_) dispatcher_->Stop();
  if (consumer_) consumer_->Stop();
  if (engine_ && loop_) engine_->Shutdown();
  if (loop_) loop_->Stop();
  if (demo_) demo_->Stop();
  server_.reset();
  ops_.reset();
  consumer_.reset();
  engine_.reset();
  caller_.reset();
  loop_.reset();
  dispatcher_.reset();
  if (data_dir_lock_ >= 0) {
    ::close(data_dir_lock_);
    data_dir_lock_ = -1;
  }
  started_ = false;
}

uint16_t Platform::port() const { return server_ ? server_->port() : 0; }

std::string Platform::url() const {
  std::string host = options_.host == "0.0.0.0" ? "127.0.0.1" : options_.host;
  return "http://" + host + ":" + std::to_string(port());
}

Status Platform::LoadSampleWorkflows() {
  for (const auto& [name, text] : SampleWorkflows()) {
    auto existing = store_->GetWorkflowByName(name);
    if (existing.ok()) continue;
    json doc = json::parse(text, nullptr, false);
    auto plan = ParsePlan(doc);
    if (!plan.ok()) return Status::Internal("sample workflow '" + name + "' is invalid: " + plan.status().message());
    auto created = store_->CreateWorkflow(NewWorkflow{plan->name, plan->description, doc});
    if (!created.ok() && created.status().code() != Code::kAlreadyExists) return created.status();
  }
  return Status::Ok();
}

}  // namespace af
