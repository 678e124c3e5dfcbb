// The distributed topology's services (the seed's): `agentflow api` (the
// Workflow Management API on PostgreSQL + Kafka), `agentflow consumer` (the
// Execution Consumer running Centralized Executors), `agentflow registry`
// (the Agent Registry) and `agentflow migrate`.
// Every setting is a flag and, as in the seed, an environment variable.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <map>

#include <pthread.h>

#include "agent/agent.h"
#include "api/agents_api.h"
#include "api/api.h"
#include "agent/kafka/agent_messages.h"
#include "api/auth_guard.h"
#include "api/store_worker.h"
#include "auth/agent_hosts.h"
#include "auth/auth.h"
#include "cli/access.h"
#include "cli/agent_callers.h"
#include "cli/commands.h"
#include "cli/limit_flags.h"
#include "cli/reliability_flags.h"
#include "cli/observability.h"
#include "common/log.h"
#include "common/redact.h"
#include "executor/consumer.h"
#include "executor/engine.h"
#include "executor/loop.h"
#include "http/http.h"
#include "ui/console.h"
#include "metrics/agentflow_metrics.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "queue/queue.h"
#include "registry/health_checker.h"
#include "storage/change_feed.h"
#include "storage/postgres/postgres_store.h"
#include "storage/store.h"

namespace af::cli {
namespace {

// "1 s", "0.5 s": the shortest form of a seconds value for a log line.
std::string FormatSeconds(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", seconds);
  return buf;
}

struct ServiceConfig {
  std::string database_url;        // DATABASE_URL
  std::string kafka_brokers;       // KAFKA_BROKERS
  std::string agent_registry_url;  // AGENT_REGISTRY_URL
  std::string group_id = "execution-consumer-group";     // KAFKA_GROUP_ID
  std::string execution_topic = kExecutionTopic;         // KAFKA_EXECUTION_TOPIC
  std::string cancellation_topic = kCancellationTopic;   // KAFKA_CANCELLATION_TOPIC
  std::string agent_reply_topic = kAgentReplyTopic;      // KAFKA_AGENT_REPLY_TOPIC (consumer)
  std::string dead_letter_topic = kDeadLetterTopic;      // KAFKA_DLQ_TOPIC (consumer)
  std::string log_level = "INFO";  // LOG_LEVEL
  std::string log_format = "text"; // LOG_FORMAT
  std::vector<std::string> kafka_properties;  // key=value, repeatable
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  // api
  int api_threads = 1;
  int store_threads = 1;  // threads committing trigger batches (ApiOptions::store_threads)
  int read_threads = 2;   // threads making the handlers' other store calls (ApiOptions::read_threads)
  int run_end_poll_ms = 10;  // ApiOptions::run_end_poll (api/run_watcher.h)
  int wait_reread_ms = 500;  // ApiOptions::wait_poll_interval
  bool notify_run_ends = false;  // StoreOptions::notify_run_ends (AGENTFLOW_NOTIFY_RUN_ENDS)
  size_t max_body_bytes = 1 << 20;
  LimitFlags limits;  // api: plans and request timeouts; consumer: steps (cli/limit_flags.h)
  ReliabilityFlags reliability;  // api: dispatch; consumer: leases and dispatch (cli/reliability_flags.h)
  // consumer
  // 10000 like serve's: a run in flight costs ~25 KiB and no thread
  // (slow-agents, issue 7: 248 MiB peak with 10,000 waiting on agents, 24
  // threads), so waiting runs are cheap and a low cap only queues them.
  size_t max_active_runs = 10000;
  int write_groups = 2;  // EngineOptions::write_groups_in_flight (docs/benchmarks.md, item 16)
  double grace_seconds = 30;
  AccessFlags access;  // --auth (api), --agent-hosts (api, consumer)
};

void AddCommonOptions(CLI::App* cmd, ServiceConfig& c) {
  cmd->add_option("--database-url", c.database_url, "postgresql://user:pass@host:port/db (or a SQLite path)")
      ->envname("DATABASE_URL");
  cmd->add_option("--kafka-brokers", c.kafka_brokers, "Kafka bootstrap servers host:port[,host:port]")
      ->envname("KAFKA_BROKERS");
  cmd->add_option("--agent-registry-url", c.agent_registry_url,
                  "agent registry URL, e.g. http://agent-registry:8080 (unset: agents are read from the database)")
      ->envname("AGENT_REGISTRY_URL");
  cmd->add_option("--execution-topic", c.execution_topic, "execution requests topic")
      ->envname("KAFKA_EXECUTION_TOPIC")
      ->capture_default_str();
  cmd->add_option("--cancellation-topic", c.cancellation_topic, "cancellation requests topic")
      ->envname("KAFKA_CANCELLATION_TOPIC")
      ->capture_default_str();
  cmd->add_option("--kafka-property", c.kafka_properties, "extra librdkafka property KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--log-level", c.log_level, "DEBUG, INFO, WARNING or ERROR")->envname("LOG_LEVEL")->capture_default_str();
  cmd->add_option("--log-format", c.log_format, "text or json")->envname("LOG_FORMAT")->capture_default_str();
  cmd->add_option("--host", c.host, "bind address")->capture_default_str();
  cmd->add_flag("--notify-run-ends", c.notify_run_ends,
                "PostgreSQL: NOTIFY after every commit that ends a run, so an api's ?wait answers at once instead of "
                "within its 10 ms read (one more connection; lowered chain10 throughput with 64 in flight in most "
                "measured runs)")
      ->envname("AGENTFLOW_NOTIFY_RUN_ENDS");
}

// Blocks SIGINT/SIGTERM here and in threads started later; WaitForSignal takes them.
sigset_t BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int WaitForSignal(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  log::Error(s.ToString());
  return 1;
}

Result<std::unique_ptr<Store>> OpenServiceStore(const ServiceConfig& c) {
  if (c.database_url.empty()) {
    return Status::InvalidArgument(
        "no database configured. Hint: set DATABASE_URL=postgresql://user:pass@host:port/db (or pass "
        "--database-url); for one process with no setup, use 'agentflow serve'");
  }
  StoreOptions so;
  so.url = c.database_url;
  so.notify_run_ends = c.notify_run_ends;
  return OpenStore(so);
}

Result<std::unique_ptr<Queue>> OpenServiceQueue(const ServiceConfig& c) {
  if (c.kafka_brokers.empty()) {
    return Status::InvalidArgument(
        "no Kafka brokers configured. Hint: set KAFKA_BROKERS=host:port (or pass --kafka-brokers); for one "
        "process with an embedded queue, use 'agentflow serve'");
  }
  QueueOptions qo;
  qo.kafka_brokers = c.kafka_brokers;
  for (const std::string& kv : c.kafka_properties) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--kafka-property takes KEY=VALUE, got '" + kv + "'");
    }
    qo.kafka_properties[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return OpenQueue(qo);
}

int RunApi(ServiceConfig& c) {
  log::Init(c.log_level, c.log_format);
  auto access = ParseAccess(c.access);
  if (!access.ok()) return Fail(access.status());
  sigset_t signals = BlockSignals();
  auto feed = std::make_shared<ChangeFeed>();
  auto store = OpenServiceStore(c);
  if (!store.ok()) return Fail(store.status());
  Store* backend = store->get();  // the dispatcher's fast path attaches under the change feed
  std::unique_ptr<Store> db = WithChangeFeed(std::move(store).value(), feed);
  auto queue = OpenServiceQueue(c);
  if (!queue.ok()) return Fail(queue.status());

  metrics::Registry registry;
  metrics::ApiRunMetrics run_metrics(registry);
  ApiOptions ao;
  ao.execution_topic = c.execution_topic;
  ao.cancellation_topic = c.cancellation_topic;
  ao.plan_limits = c.limits.plan;
  ao.metrics = &run_metrics;
  ao.agent_hosts = access->agent_hosts;
  ao.auth_mode = access->auth_mode;
  ao.store_threads = c.store_threads;
  ao.read_threads = c.read_threads;
  // The consumers end runs in other processes: ?wait hears of it by reading
  // the waited-for runs together this often (0: only each wait's own
  // re-read, every 500 ms).
  ao.run_end_poll = std::chrono::milliseconds(std::max(0, c.run_end_poll_ms));
  ao.wait_poll_interval = std::chrono::milliseconds(c.wait_reread_ms);
  ao.listen_for_run_ends = c.notify_run_ends;  // the same flag on api and consumers
  // With the watcher, a stream hears of the consumers' writes through it;
  // its own re-read is a safety net (as in serve). Without, it is how the
  // stream sees them.
  if (ao.run_end_poll.count() > 0) ao.events_poll_interval = std::chrono::seconds(2);
  // Triggers commit their request to the outbox; this relay publishes it
  // (and any other process's backlog), and its sweeper re-dispatches runs
  // that no executor holds.
  Dispatcher dispatcher(db.get(), queue->get(), c.reliability.dispatcher(c.execution_topic));
  dispatcher.AttachWriter(backend);  // triggers publish without a claim commit
  dispatcher.Start();
  ExposeOutboxMetrics(registry, &dispatcher);
  ao.on_dispatch = [&dispatcher] { dispatcher.Kick(); };
  Api api(db.get(), queue->get(), feed, ao);
  ops::EndpointsOptions oo;
  oo.checks = {DatabaseCheck(db.get()), QueueCheck("kafka", queue->get())};
  ops::Endpoints endpoints(&registry, std::move(oo));
  http::Router router;
  api.Register(router);
  endpoints.Register(router);
  ui::RegisterConsole(router);
  auth::Authenticator authenticator(db.get(), auth::AuthenticatorOptions{access->auth_mode});
  InstallAuthGuard(router, &authenticator, api.Readers());
  http::ServerOptions so;
  so.host = c.host;
  so.port = c.port;
  so.threads = c.api_threads;
  so.max_body_bytes = c.max_body_bytes;
  so.header_timeout = c.limits.header_timeout();
  so.body_timeout = c.limits.body_timeout();
  auto server = http::StartServer(so, endpoints.Instrument(router.AsHandler()));
  if (!server.ok()) {
    ClearOutboxMetrics(registry);
    return Fail(server.status());
  }
  std::string url = "http://" + c.host + ":" + std::to_string((*server)->port());
  std::printf("agentflow api listening on %s/api/v1\n", url.c_str());
  std::fflush(stdout);
  log::Info("agentflow api listening on " + url + " (topics " + c.execution_topic + ", " + c.cancellation_topic +
            ")");
  LogAccess("agentflow api", c.host, (*server)->port(), *access);
  int sig = WaitForSignal(signals);
  log::Info(std::string("agentflow api stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  api.Stop();  // its waiters resume on the server's io threads: before those stop
  (*server)->Stop();
  ClearOutboxMetrics(registry);
  dispatcher.Stop();  // what is not published yet stays in the outbox for the next relay
  return 0;
}

int RunConsumer(ServiceConfig& c) {
  log::Init(c.log_level, c.log_format);
  auto access = ParseAccess(c.access);
  if (!access.ok()) return Fail(access.status());
  sigset_t signals = BlockSignals();
  auto store = OpenServiceStore(c);
  if (!store.ok()) return Fail(store.status());
  auto queue = OpenServiceQueue(c);
  if (!queue.ok()) return Fail(queue.status());

  EventLoop loop(1);
  std::unique_ptr<AgentDirectory> directory;
  if (c.agent_registry_url.empty()) {
    StoreDirectoryOptions dir_options;
    dir_options.read_off_thread = true;  // a cache miss never stalls the executor's loop
    directory = NewStoreAgentDirectory(store->get(), dir_options);
    log::Info("agents are resolved from the database (AGENT_REGISTRY_URL is not set)");
  } else {
    RegistryDirectoryOptions ro;
    ro.registry_url = c.agent_registry_url;
    ro.api_key = ApiKeyFromEnv();
    directory = NewRegistryAgentDirectory(loop.executor(), ro);
    log::Info("agents are resolved through the agent registry at " + RedactUrl(c.agent_registry_url));
  }
  // Kafka agents are called over the same brokers (docs/agents.md, "Kafka transport").
  auto kafka = KafkaFlags(c.kafka_brokers, c.kafka_properties, "agentflow-consumer");
  if (!kafka.ok()) return Fail(kafka.status());
  HttpAgentCallerOptions http = c.limits.http_caller();
  http.one_thread = true;  // `loop` has one thread
  auto caller = NewExecutorAgentCaller(loop.executor(), *kafka, c.agent_reply_topic, http);
  if (!caller.ok()) return Fail(caller.status());
  // Agents on hosts outside --agent-hosts are not called (the step fails).
  std::unique_ptr<AgentCaller> checked = auth::NewHostCheckingAgentCaller(std::move(caller).value(), access->agent_hosts);
  if (!access->agent_hosts.allows_all()) {
    log::Info("agentflow consumer: agent URLs are limited to the hosts " + access->agent_hosts.ToString());
  }
  metrics::Registry registry;  // before the engine: it outlives it
  metrics::ExecutorMetrics executor_metrics(registry);
  EngineOptions eo;
  eo.limits = c.limits.step;
  eo.metrics = &executor_metrics;
  eo.lease_ttl = c.reliability.lease_ttl();
  eo.write_groups_in_flight = c.write_groups;
  Engine engine(loop.executor(), store->get(), directory.get(), checked.get(), eo);
  loop.Start();
  // The consumer relays the outbox and sweeps too: runs accepted by an api
  // that died before publishing still reach the queue.
  Dispatcher dispatcher(store->get(), queue->get(), c.reliability.dispatcher(c.execution_topic));
  dispatcher.AttachWriter(store->get());  // the sweeper's re-dispatches go out without a claim commit
  dispatcher.Start();
  ExposeOutboxMetrics(registry, &dispatcher);

  ConsumerOptions co;
  co.group = c.group_id;
  co.execution_topic = c.execution_topic;
  co.cancellation_topic = c.cancellation_topic;
  co.max_active_runs = c.max_active_runs;
  co.max_message_bytes = c.limits.max_message_bytes;
  co.dead_letter_topic = c.dead_letter_topic;
  ExecutionConsumer consumer(queue->get(), &engine, co);
  Status started = consumer.Start();
  if (!started.ok()) {
    ClearOutboxMetrics(registry);
    dispatcher.Stop();
    engine.Shutdown();
    return Fail(started);
  }

  // Health, readiness and metrics on a small port of its own.
  ExposeConsumerMetrics(registry, &consumer);
  ops::EndpointsOptions oo;
  oo.checks = {DatabaseCheck(store->get()), QueueCheck("kafka", queue->get())};
  if (!c.agent_registry_url.empty()) oo.checks.push_back(RegistryCheck(c.agent_registry_url));
  oo.health_details = [&engine] { return json{{"active_runs", engine.ActiveRuns()}}; };
  ops::Endpoints endpoints(&registry, std::move(oo));
  http::Router router;
  endpoints.Register(router);
  http::ServerOptions so;
  so.host = c.host;
  so.port = c.port;
  auto server = http::StartServer(so, endpoints.Instrument(router.AsHandler()));
  if (!server.ok()) {
    ClearConsumerMetrics(registry);
    ClearOutboxMetrics(registry);
    dispatcher.Stop();
    consumer.Stop();
    engine.Shutdown();
    return Fail(server.status());
  }
  std::string url = "http://" + c.host + ":" + std::to_string((*server)->port());
  std::printf("agentflow consumer running (group %s); health on %s/healthz, %s/readyz, metrics on %s/metrics\n",
              c.group_id.c_str(), url.c_str(), url.c_str(), url.c_str());
  std::fflush(stdout);
  log::Info("agentflow consumer started: group " + c.group_id + ", topics " + c.execution_topic + ", " +
            c.cancellation_topic + "; health on " + url);

  int sig = WaitForSignal(signals);
  // Graceful stop: take nothing new, let runs in flight finish within the
  // grace period, hand the rest back (their requests stay unacked and go to
  // another consumer of the group), commit, leave the group.
  log::Info(std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": " +
            std::to_string(engine.ActiveRuns()) + " run(s) in flight, grace period " +
            std::to_string(c.grace_seconds) + " s");
  consumer.StopTaking();
  bool idle = engine.WaitIdle(std::chrono::milliseconds(static_cast<int64_t>(c.grace_seconds * 1000)));
  if (!idle) log::Info(std::to_string(engine.ActiveRuns()) + " run(s) handed back to the queue");
  engine.Shutdown();
  (*server)->Stop();
  ClearConsumerMetrics(registry);
  ClearOutboxMetrics(registry);
  dispatcher.Stop();
  consumer.Stop();
  loop.Stop();
  log::Info("agentflow consumer stopped");
  return 0;
}

struct RegistryConfig {
  std::string database_url;  // DATABASE_URL
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string log_level = "INFO";
  std::string log_format = "text";
  double health_interval_seconds = 10;
  double health_timeout_seconds = 2;
  double heartbeat_ttl_seconds = 0;
  AccessFlags access;  // --auth, --agent-hosts
};

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// The Agent Registry: /api/v1/agents on the shared database, plus health
// checks of the registered agents.
int RunRegistry(RegistryConfig& c) {
  log::Init(c.log_level, c.log_format);
  auto access = ParseAccess(c.access);
  if (!access.ok()) return Fail(access.status());
  sigset_t signals = BlockSignals();
  ServiceConfig sc;
  sc.database_url = c.database_url;
  auto store = OpenServiceStore(sc);
  if (!store.ok()) return Fail(store.status());
  Store* db = store->get();

  AgentsApi agents(db, AgentsApiOptions{access->agent_hosts});
  // The routes' store calls and the key checks run here, off the io thread
  // (as in `agentflow api`, whose default of two threads this keeps).
  auto readers = std::make_shared<StoreWorker>(db, ReaderOptions(*db, 2));
  metrics::Registry registry;
  ops::EndpointsOptions oo;
  oo.checks = {DatabaseCheck(db)};
  ops::Endpoints endpoints(&registry, std::move(oo));
  http::Router router;
  agents.Register(router, readers);
  endpoints.Register(router);
  auth::Authenticator authenticator(db, auth::AuthenticatorOptions{access->auth_mode});
  InstallAuthGuard(router, &authenticator, readers);
  http::ServerOptions so;
  so.host = c.host;
  so.port = c.port;
  auto server = http::StartServer(so, endpoints.Instrument(router.AsHandler()));
  if (!server.ok()) return Fail(server.status());

  std::unique_ptr<HealthChecker> checker;
  if (c.health_interval_seconds > 0) {
    HealthCheckOptions ho;
    ho.interval = Millis(c.health_interval_seconds);
    ho.timeout = Millis(c.health_timeout_seconds);
    ho.heartbeat_ttl = Millis(c.heartbeat_ttl_seconds);
    checker = NewHealthChecker(db, ho);
    checker->Start();
  }
  std::string url = "http://" + c.host + ":" + std::to_string((*server)->port());
  std::printf("agentflow registry listening on %s/api/v1/agents\n", url.c_str());
  std::fflush(stdout);
  log::Info("agentflow registry listening on " + url + "; health checks every " +
            (checker ? FormatSeconds(c.health_interval_seconds) : std::string("(off)")));
  LogAccess("agentflow registry", c.host, (*server)->port(), *access);
  int sig = WaitForSignal(signals);
  log::Info(std::string("agentflow registry stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  if (checker) checker->Stop();
  readers->Stop();  // its waiters resume on the server's io threads: before those stop
  (*server)->Stop();
  return 0;
}

int RunMigrate(const std::string& url) {
  if (url.empty()) return Fail(Status::InvalidArgument("--database-url (or DATABASE_URL) is required"));
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    Status s = MigratePostgres(url);
    if (!s.ok()) return Fail(s);
  } else {
    StoreOptions so;
    so.url = url;
    auto store = OpenStore(so);  // applies SQLite migrations
    if (!store.ok()) return Fail(store.status());
  }
  std::printf("migrations applied\n");
  return 0;
}

}  // namespace

void AddServiceCommands(CLI::App& app, int* exit_code) {
  static ServiceConfig api_cfg;
  auto* api = app.add_subcommand("api", "the Workflow Management API service (PostgreSQL + Kafka)");
  AddCommonOptions(api, api_cfg);
  api->add_option("--port", api_cfg.port, "API port (0: any free port)")->capture_default_str();
  api->add_option("--api-threads", api_cfg.api_threads, "HTTP server threads")->capture_default_str();
  api->add_option("--store-threads", api_cfg.store_threads,
                  "threads committing batches of triggers (each holds one database connection while it commits)")
      ->capture_default_str();
  api->add_option("--read-threads", api_cfg.read_threads,
                  "threads making the API's other database calls (reads, cancel, retry, key checks), off the HTTP threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  api->add_option("--run-end-poll-ms", api_cfg.run_end_poll_ms,
                  "how often the runs a ?wait waits for or an event stream shows are read (together) to see what "
                  "the consumers did to them; a run's end is also read at once on its NOTIFY, when consumers send "
                  "it (--notify-run-ends) (0: off; each wait then re-reads its run every --wait-reread-ms, each stream "
                  "every 250 ms)")
      ->capture_default_str();
  api->add_option("--wait-reread-ms", api_cfg.wait_reread_ms,
                  "how often each ?wait also re-reads its own run, a safety net under the run end poll and the "
                  "database's run end notifications")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  AddHttpLimitFlags(api, api_cfg.limits);
  AddPlanLimitFlags(api, api_cfg.limits);
  AddDispatchFlags(api, api_cfg.reliability);
  api->add_option("--max-body-bytes", api_cfg.max_body_bytes, "request body limit")->capture_default_str();
  AddAccessOptions(api, api_cfg.access, /*with_auth=*/true);
  api->callback([exit_code] { *exit_code = RunApi(api_cfg); });

  static ServiceConfig consumer_cfg;
  consumer_cfg.port = 8081;
  auto* consumer = app.add_subcommand("consumer", "the Execution Consumer service: runs workflow executions from Kafka");
  AddCommonOptions(consumer, consumer_cfg);
  consumer->add_option("--group-id", consumer_cfg.group_id, "Kafka consumer group")
      ->envname("KAFKA_GROUP_ID")
      ->capture_default_str();
  consumer->add_option("--port", consumer_cfg.port, "health endpoint port (0: any free port)")->capture_default_str();
  consumer->add_option("--max-runs", consumer_cfg.max_active_runs, "runs executing at once in this process")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  consumer->add_option("--write-groups", consumer_cfg.write_groups,
                       "group commits of the runs' step writes in flight at once (each on its own connection)")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  AddStepLimitFlags(consumer, consumer_cfg.limits);
  AddQueueLimitFlags(consumer, consumer_cfg.limits);
  AddLeaseFlags(consumer, consumer_cfg.reliability);
  AddDispatchFlags(consumer, consumer_cfg.reliability);
  consumer->add_option("--dlq-topic", consumer_cfg.dead_letter_topic,
                       "topic unusable messages are set aside on, with the reason (empty: only logged)")
      ->envname("KAFKA_DLQ_TOPIC")
      ->capture_default_str();
  consumer->add_option("--agent-reply-topic", consumer_cfg.agent_reply_topic,
                       "topic this consumer reads kafka agents' replies from")
      ->envname("KAFKA_AGENT_REPLY_TOPIC")
      ->capture_default_str();
  consumer->add_option("--grace-period", consumer_cfg.grace_seconds,
                       "seconds to let runs in flight finish on SIGTERM before handing them back")
      ->capture_default_str();
  AddAccessOptions(consumer, consumer_cfg.access, /*with_auth=*/false);
  consumer->callback([exit_code] { *exit_code = RunConsumer(consumer_cfg); });

  static RegistryConfig registry_cfg;
  auto* registry = app.add_subcommand("registry", "the Agent Registry service: agents, their health checks and heartbeats");
  registry->add_option("--database-url", registry_cfg.database_url, "postgresql://user:pass@host:port/db (or a SQLite path)")
      ->envname("DATABASE_URL");
  registry->add_option("--host", registry_cfg.host, "bind address")->capture_default_str();
  registry->add_option("--port", registry_cfg.port, "port (0: any free port)")->capture_default_str();
  registry->add_option("--health-interval", registry_cfg.health_interval_seconds,
                       "seconds between health checks of the agents (0: no checks)")
      ->capture_default_str();
  registry->add_option("--health-timeout", registry_cfg.health_timeout_seconds, "seconds one health check may take")
      ->capture_default_str();
  registry->add_option("--heartbeat-ttl", registry_cfg.heartbeat_ttl_seconds,
                       "seconds without a heartbeat before an agent without health_url is unhealthy (0: 3 x "
                       "--health-interval)")
      ->capture_default_str();
  registry->add_option("--log-level", registry_cfg.log_level, "DEBUG, INFO, WARNING or ERROR")
      ->envname("LOG_LEVEL")
      ->capture_default_str();
  registry->add_option("--log-format", registry_cfg.log_format, "text or json")->envname("LOG_FORMAT")->capture_default_str();
  AddAccessOptions(registry, registry_cfg.access, /*with_auth=*/true);
  registry->callback([exit_code] { *exit_code = RunRegistry(registry_cfg); });

  static std::string migrate_url;
  auto* migrate = app.add_subcommand("migrate", "apply the database schema migrations (idempotent)");
  migrate->add_option("--database-url", migrate_url, "postgresql://… or a SQLite path")->envname("DATABASE_URL");
  migrate->callback([exit_code] { *exit_code = RunMigrate(migrate_url); });
}

}  // namespace af::cli
