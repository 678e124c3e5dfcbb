// `agentflow bridge`: serves HTTP agents over the Kafka agent transport (the
// seed's "bridge service (for HTTP agents)"). Wiring only: the logic is in
// src/bridge/. Every setting is a flag, and the shared ones an environment
// variable, as for the other services.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <pthread.h>

#include "agent/agent.h"
#include "bridge/bridge.h"
#include "bridge/bridge_config.h"
#include "bridge/heartbeat.h"
#include "cli/agent_callers.h"
#include "cli/commands.h"
#include "cli/observability.h"
#include "common/log.h"
#include "common/redact.h"
#include "executor/loop.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "ops/ops.h"
#include "queue/queue.h"

namespace af::cli {
namespace {

struct BridgeConfig {
  std::vector<std::string> agents;  // NAME=URL
  std::vector<std::string> topics;  // NAME=TOPIC
  std::string group_id = "agentflow-bridge";  // KAFKA_BRIDGE_GROUP_ID
  int max_in_flight = 64;
  double grace_seconds = 30;
  std::string kafka_brokers;                  // KAFKA_BROKERS
  std::vector<std::string> kafka_properties;  // KEY=VALUE
  std::string host = "127.0.0.1";
  uint16_t port = 8082;
  std::string log_level = "INFO";   // LOG_LEVEL
  std::string log_format = "text";  // LOG_FORMAT
  std::string registry_url;         // AGENT_REGISTRY_URL
  bool register_agents = false;
  double heartbeat_seconds = 10;
  int64_t timeout_ms = 30000;
};

sigset_t BlockSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  log::Error(s.ToString());
  return 1;
}

int RunBridge(BridgeConfig& c) {
  log::Init(c.log_level, c.log_format);
  sigset_t signals = BlockSignals();
  auto agents = ParseBridgedAgents(c.agents, c.topics);
  if (!agents.ok()) return Fail(agents.status());
  if (c.register_agents && c.registry_url.empty()) {
    return Fail(Status::InvalidArgument(
        "--register needs the registry. Hint: pass --registry-url URL or set AGENT_REGISTRY_URL"));
  }
  if (c.heartbeat_seconds <= 0) return Fail(Status::InvalidArgument("--heartbeat-interval must be positive"));
  if (c.kafka_brokers.empty()) {
    return Fail(Status::InvalidArgument(
        "no Kafka brokers configured. Hint: set KAFKA_BROKERS=host:port (or pass --kafka-brokers)"));
  }
  auto qo = KafkaFlags(c.kafka_brokers, c.kafka_properties, "agentflow-bridge");
  if (!qo.ok()) return Fail(qo.status());

  // Declared in this order so that they are destroyed the other way round:
  // the queue's last publish completions are posted to the loop.
  EventLoop loop(1);
  auto queue = OpenQueue(*qo);
  if (!queue.ok()) return Fail(queue.status());
  HttpAgentCallerOptions http_options;
  http_options.one_thread = true;  // `loop` has one thread; the bridge awaits its calls on it
  std::unique_ptr<AgentCaller> http = NewHttpAgentCaller(loop.executor(), http_options);
  BridgeOptions bo;
  bo.agents = *agents;
  bo.group = c.group_id;
  bo.max_in_flight = c.max_in_flight;
  loop.Start();
  Bridge bridge(queue->get(), loop.executor(), http.get(), bo);
  if (Status s = bridge.Start(); !s.ok()) {
    bridge.Stop();
    loop.Stop();
    return Fail(s);
  }

  std::unique_ptr<RegistryHeartbeat> heartbeat;
  if (!c.registry_url.empty()) {
    HeartbeatOptions ho;
    ho.registry_url = c.registry_url;
    ho.api_key = std::getenv("AGENTFLOW_API_KEY") ? std::getenv("AGENTFLOW_API_KEY") : "";
    ho.register_agents = c.register_agents;
    ho.interval = std::chrono::milliseconds(static_cast<int64_t>(c.heartbeat_seconds * 1000));
    ho.timeout_ms = c.timeout_ms;
    heartbeat = std::make_unique<RegistryHeartbeat>(loop.executor(), *agents, ho);
    heartbeat->Start();
  }

  // Health, readiness and metrics on a small port of its own.
  metrics::Registry registry;
  ExposeBridgeMetrics(registry, &bridge);
  ops::EndpointsOptions oo;
  oo.checks = {QueueCheck("kafka", queue->get())};
  if (!c.registry_url.empty()) oo.checks.push_back(RegistryCheck(c.registry_url));
  oo.health_details = [&bridge] {
    BridgeStats s = bridge.stats();
    json in_flight = json::object();
    for (const auto& [name, n] : bridge.InFlightByAgent()) in_flight[name] = n;
    return json{{"in_flight", in_flight},
                {"requests", s.requests},
                {"replied", s.replied},
                {"expired", s.expired},
                {"malformed", s.malformed}};
  };
  ops::Endpoints endpoints(&registry, std::move(oo));
  http::Router router;
  endpoints.Register(router);
  http::ServerOptions so;
  so.host = c.host;
  so.port = c.port;
  auto server = http::StartServer(so, endpoints.Instrument(router.AsHandler()));
  if (!server.ok()) {
    ClearBridgeMetrics(registry);
    if (heartbeat) heartbeat->Stop();
    bridge.Stop();
    loop.Stop();
    return Fail(server.status());
  }
  std::string url = "http://" + c.host + ":" + std::to_string((*server)->port());
  std::string served;
  for (const BridgedAgent& a : *agents) {
    served += (served.empty() ? "" : ", ") + a.name + " (" + a.topic + " -> " + a.url + ")";
  }
  std::printf("agentflow bridge running (group %s): %s; health on %s/healthz\n", c.group_id.c_str(), served.c_str(),
              url.c_str());
  std::fflush(stdout);
  log::Info("agentflow bridge started: group " + c.group_id + ", agents " + served + ", at most " +
            std::to_string(c.max_in_flight) + " calls in flight per agent; health on " + url +
            (c.registry_url.empty() ? std::string()
                                    : "; heartbeats to " + RedactUrl(c.registry_url) +
                                          (c.register_agents ? " (agents registered there)" : "")));

  int sig = 0;
  sigwait(&signals, &sig);
  // Graceful stop: take nothing new, let calls in flight finish and their
  // replies be written within the grace period; the rest stay unacked and
  // are answered by another bridge (or this one after a restart).
  log::Info(std::string("stopping on ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") + ": " +
            std::to_string(bridge.InFlight()) + " request(s) in flight, grace period " +
            std::to_string(c.grace_seconds) + " s");
  bridge.StopTaking();
  bool idle = bridge.WaitIdle(std::chrono::milliseconds(static_cast<int64_t>(c.grace_seconds * 1000)));
  if (!idle) log::Info(std::to_string(bridge.InFlight()) + " request(s) left for another bridge");
  if (heartbeat) heartbeat->Stop();
  (*server)->Stop();
  ClearBridgeMetrics(registry);
  bridge.Stop();
  loop.Stop();
  log::Info("agentflow bridge stopped");
  return 0;
}

}  // namespace

void AddBridgeCommand(CLI::App& app, int* exit_code) {
  static BridgeConfig cfg;
  auto* cmd = app.add_subcommand("bridge", "serve HTTP agents over the Kafka agent transport");
  cmd->add_option("--agent", cfg.agents, "an HTTP agent to serve, NAME=URL (repeatable)")
      ->required()
      ->allow_extra_args(false);
  cmd->add_option("--topic", cfg.topics, "request topic of an agent, NAME=TOPIC (default agent.NAME.requests)")
      ->allow_extra_args(false);
  cmd->add_option("--group-id", cfg.group_id, "Kafka consumer group of the bridge instances")
      ->envname("KAFKA_BRIDGE_GROUP_ID")
      ->capture_default_str();
  cmd->add_option("--max-in-flight", cfg.max_in_flight, "HTTP calls in flight per agent")->capture_default_str();
  cmd->add_option("--grace-period", cfg.grace_seconds,
                  "seconds to let calls in flight finish on SIGTERM before leaving them to another bridge")
      ->capture_default_str();
  cmd->add_option("--kafka-brokers", cfg.kafka_brokers, "Kafka bootstrap servers host:port[,host:port]")
      ->envname("KAFKA_BROKERS");
  cmd->add_option("--kafka-property", cfg.kafka_properties, "extra librdkafka property KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--host", cfg.host, "bind address of the health endpoint")->capture_default_str();
  cmd->add_option("--port", cfg.port, "health endpoint port (0: any free port)")->capture_default_str();
  cmd->add_option("--log-level", cfg.log_level, "DEBUG, INFO, WARNING or ERROR")
      ->envname("LOG_LEVEL")
      ->capture_default_str();
  cmd->add_option("--log-format", cfg.log_format, "text or json")->envname("LOG_FORMAT")->capture_default_str();
  cmd->add_option("--registry-url", cfg.registry_url, "agent registry URL; heartbeats are sent there")
      ->envname("AGENT_REGISTRY_URL");
  cmd->add_flag("--register", cfg.register_agents, "register each agent in the registry as a kafka agent");
  cmd->add_option("--heartbeat-interval", cfg.heartbeat_seconds, "seconds between heartbeats")->capture_default_str();
  cmd->add_option("--timeout-ms", cfg.timeout_ms, "timeout_ms registered for each agent (with --register)")
      ->capture_default_str();
  cmd->callback([exit_code] { *exit_code = RunBridge(cfg); });
}

}  // namespace af::cli
