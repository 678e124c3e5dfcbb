#include "cli/platform.h"

#include <filesystem>

#include "agent/routing_caller.h"
#include "api/auth_guard.h"
#include "cli/observability.h"
#include "common/log.h"
#include "model/plan.h"

namespace af {

Platform::Platform(PlatformOptions options) : options_(std::move(options)) {}

Platform::~Platform() { Stop(); }

Status Platform::Start() {
  std::string db_url = options_.database_url;
  if (db_url.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.data_dir, ec);
    if (ec) {
      return Status::InvalidArgument("cannot create data directory '" + options_.data_dir + "': " + ec.message() +
                                     ". Hint: pass --data-dir with a writable path");
    }
    db_url = (std::filesystem::path(options_.data_dir) / "agentflow.db").string();
  }
  feed_ = std::make_shared<ChangeFeed>();
  StoreOptions so;
  so.url = db_url;
  so.sqlite_full_sync = options_.sqlite_full_sync;
  auto store = OpenStore(so);
  if (!store.ok()) return store.status();
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

  loop_ = std::make_unique<EventLoop>(1);
  directory_ = NewStoreAgentDirectory(store_.get());
  // No Kafka here: a step calling a kafka agent fails with a hint to use KAFKA_BROKERS.
  caller_ = auth::NewHostCheckingAgentCaller(NewRoutingAgentCaller(NewHttpAgentCaller(loop_->executor()), nullptr),
                                            options_.agent_hosts);
  EngineOptions eo;
  eo.metrics = &executor_metrics_;
  engine_ = std::make_unique<Engine>(loop_->executor(), store_.get(), directory_.get(), caller_.get(), eo);
  loop_->Start();

  ApiOptions ao;
  ao.metrics = &api_metrics_;
  ao.agent_hosts = options_.agent_hosts;
  ao.auth_mode = options_.auth_mode;
  api_ = std::make_unique<Api>(store_.get(), queue_.get(), feed_, ao);
  // Runs accepted before a crash whose request never reached the queue.
  AF_RETURN_IF_ERROR(api_->RequeueUnfinishedRuns());

  ConsumerOptions co;
  co.max_active_runs = options_.max_active_runs;
  consumer_ = std::make_unique<ExecutionConsumer>(queue_.get(), engine_.get(), co);
  AF_RETURN_IF_ERROR(consumer_->Start());
  cli::ExposeConsumerMetrics(registry_, consumer_.get());

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
  authenticator_ = std::make_unique<auth::Authenticator>(store_.get(), auth::AuthenticatorOptions{options_.auth_mode});
  InstallAuthGuard(*router_, authenticator_.get());
  http::ServerOptions ho;
  ho.host = options_.host;
  ho.port = options_.port;
  ho.threads = options_.api_threads;
  ho.max_body_bytes = options_.max_body_bytes;
  auto server = http::StartServer(ho, ops_->Instrument(router_->AsHandler()));
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
  started_ = true;
  return Status::Ok();
}

void Platform::Stop() {
  if (health_checker_) health_checker_->Stop();
  if (server_) server_->Stop();
  cli::ClearConsumerMetrics(registry_);
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
