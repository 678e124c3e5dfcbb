// CLI commands that run agentflow itself: serve (the embedded default),
// executor (one plan, standalone) and demo-agents.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>

#include <pthread.h>

#include "agent/agent.h"
#include "agent/demo_agents.h"
#include "agent/kafka/agent_messages.h"
#include "cli/access.h"
#include "cli/agent_callers.h"
#include "cli/commands.h"
#include "cli/limit_flags.h"
#include "cli/reliability_flags.h"
#include "cli/output.h"
#include "cli/platform.h"
#include "common/json_limits.h"
#include "common/log.h"
#include "common/redact.h"
#include "common/trace.h"
#include "executor/engine.h"
#include "executor/loop.h"
#include "http/http.h"
#include "model/plan.h"
#include "storage/store.h"

namespace af::cli {
namespace {

// Blocks SIGINT/SIGTERM in this thread (and the threads it starts later) so
// that WaitForSignal can take them synchronously.
sigset_t BlockTerminationSignals() {
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

std::string EnvOr(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? v : def;
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void PrintProblems(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  const json& d = s.details();
  if (d.is_object() && d.contains("problems")) {
    for (const auto& p : d["problems"]) std::fprintf(stderr, "  - %s\n", p.value("message", p.dump()).c_str());
  }
}

struct ServeArgs {
  PlatformOptions platform;
  AccessFlags access;  // --auth, --agent-hosts
};

int Serve(ServeArgs& args) {
  PlatformOptions& o = args.platform;
  std::string db = EnvOr("DATABASE_URL", "");
  if (!db.empty()) o.database_url = db;
  auto access = ParseAccess(args.access);
  if (!access.ok()) {
    PrintProblems(access.status());
    return 2;
  }
  o.auth_mode = access->auth_mode;
  o.agent_hosts = access->agent_hosts;
  sigset_t signals = BlockTerminationSignals();
  Platform platform(o);
  Status s = platform.Start();
  if (!s.ok()) {
    PrintProblems(s);
    return 1;
  }
  std::string storage = o.database_url.empty() ? o.data_dir + "/agentflow.db" : RedactUrl(o.database_url);
  std::printf("agentflow is running on the embedded default (SQLite %s, embedded queue in %s)\n", storage.c_str(),
              o.data_dir.c_str());
  std::printf("  API:          %s/api/v1   (health: %s/healthz, %s/readyz; metrics: %s/metrics)\n",
              platform.url().c_str(), platform.url().c_str(), platform.url().c_str(), platform.url().c_str());
  if (const DemoAgents* demo = platform.demo_agents()) {
    std::printf("  Demo agents:  %s/agents/{echo,upper,sleep,fail,flaky}\n", demo->base_url().c_str());
    std::printf("  Workflows:    summarize, research (examples/)\n\n");
    std::printf("Try, in another terminal:\n");
    std::printf("  build/agentflow --server %s run start summarize --input '{\"topic\": \"hello agents\"}' --watch\n",
                platform.url().c_str());
    std::printf(
        "  build/agentflow --server %s run start research --input '{\"topics\": [\"a\", \"b\", \"c\"], \"urgent\": "
        "true}' --watch\n",
        platform.url().c_str());
  } else {
    std::printf("\nNext: register an agent and create a workflow:\n");
    std::printf("  build/agentflow --server %s agent register --name echo --url http://127.0.0.1:9000/agents/echo\n",
                platform.url().c_str());
    std::printf("  build/agentflow --server %s workflow create -f examples/summarize.json\n", platform.url().c_str());
  }
  if (!o.execute) {
    std::printf("Accept-only: runs are stored and queued, not executed; restart without --accept-only to run them.\n");
  }
  if (o.auth_mode == auth::AuthMode::kRequired) {
    std::printf("Authentication is required: create a key with 'agentflow apikey create --role admin --data-dir %s' "
                "and export AGENTFLOW_API_KEY=<the key>.\n",
                o.data_dir.c_str());
  }
  std::printf("Stop with Ctrl-C.\n");
  std::fflush(stdout);
  log::Info("agentflow serve listening on " + platform.url());
  LogAccess("agentflow serve", o.host, platform.port(), *access);
  int sig = WaitForSignal(signals);
  log::Info(std::string("stopping on signal ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"));
  platform.Stop();
  return 0;
}

struct ExecutorArgs {
  std::string plan_file;
  std::string input = "{}";
  std::vector<std::string> agents;  // NAME=URL
  std::string registry;             // an agent registry to resolve agents through
  std::string database_url;         // record the run there (default: in memory)
  std::string kafka_brokers;        // KAFKA_BROKERS: call kafka agents through these
  std::vector<std::string> kafka_properties;  // KEY=VALUE
  std::string agent_reply_topic = kAgentReplyTopic;  // KAFKA_AGENT_REPLY_TOPIC
  bool demo = false;
  bool json = false;
  AccessFlags access;  // --agent-hosts
};

int RunStandalone(ExecutorArgs& args) {
  auto text = ReadFile(args.plan_file);
  if (!text.ok()) {
    PrintProblems(text.status());
    return 2;
  }
  if (Status deep = CheckJsonDepth(*text, "the plan"); !deep.ok()) {
    PrintProblems(deep);
    return 2;
  }
  json doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded()) {
    std::fprintf(stderr, "error: %s is not valid JSON\n", args.plan_file.c_str());
    return 2;
  }
  auto plan = ParsePlan(doc);
  if (!plan.ok()) {
    PrintProblems(plan.status());
    return 2;
  }
  std::string input_text = args.input;
  if (!input_text.empty() && input_text[0] == '@') {
    auto in = ReadFile(input_text.substr(1));
    if (!in.ok()) {
      PrintProblems(in.status());
      return 2;
    }
    input_text = *in;
  }
  json input = JsonNestingDepth(input_text) > kMaxJsonDepth ? json(json::value_t::discarded)
                                                             : json::parse(input_text, nullptr, false);
  if (input.is_discarded() || !input.is_object()) {
    std::fprintf(stderr, "error: --input must be a JSON object\n");
    return 2;
  }

  auto access = ParseAccess(args.access);
  if (!access.ok()) {
    PrintProblems(access.status());
    return 2;
  }
  std::vector<AgentEndpoint> endpoints;
  std::unique_ptr<DemoAgents> demo;
  if (args.demo) {
    auto started = StartDemoAgents("127.0.0.1", 0);
    if (!started.ok()) {
      PrintProblems(started.status());
      return 1;
    }
    demo = std::move(started).value();
    for (const Agent& a : demo->Records()) endpoints.push_back(ToEndpoint(a));
  }
  for (const std::string& spec : args.agents) {
    auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::fprintf(stderr, "error: --agent takes NAME=URL, got '%s'\n", spec.c_str());
      return 2;
    }
    AgentEndpoint e;
    e.name = spec.substr(0, eq);
    e.url = spec.substr(eq + 1);
    endpoints.push_back(std::move(e));
  }

  StoreOptions so;
  so.url = args.database_url.empty() ? ":memory:" : args.database_url;
  auto store = OpenStore(so);
  if (!store.ok()) {
    PrintProblems(store.status());
    return 1;
  }
  auto wf = (*store)->CreateWorkflow(NewWorkflow{plan->name, plan->description, doc});
  if (!wf.ok()) {
    PrintProblems(wf.status());
    return 1;
  }
  NewRun nr;
  nr.workflow_id = wf->id;
  nr.workflow_version = wf->version;
  nr.input = input;
  nr.traceparent = trace::FormatTraceParent(trace::NewTrace());  // the run's trace, sent to its agents
  auto created = (*store)->CreateRun(nr);
  if (!created.ok()) {
    PrintProblems(created.status());
    return 1;
  }
  const std::string run_id = created->run.id;

  EventLoop loop(1);
  // Agents given on the command line first, then the registry's (--registry /
  // AGENT_REGISTRY_URL), else those registered in the database.
  std::unique_ptr<AgentDirectory> directory = NewStaticAgentDirectory(endpoints);
  if (!args.registry.empty()) {
    RegistryDirectoryOptions ro;
    ro.registry_url = args.registry;
    ro.api_key = ApiKeyFromEnv();
    directory = NewLayeredAgentDirectory(std::move(directory), NewRegistryAgentDirectory(loop.executor(), ro));
  } else if (!args.database_url.empty()) {
    StoreDirectoryOptions dir_options;
    dir_options.read_off_thread = true;  // a cache miss never stalls the executor's loop
    directory = NewLayeredAgentDirectory(std::move(directory), NewStoreAgentDirectory(store->get(), dir_options));
  }
  std::optional<QueueOptions> kafka;  // kafka agents need brokers
  if (!args.kafka_brokers.empty()) {
    auto flags = KafkaFlags(args.kafka_brokers, args.kafka_properties, "agentflow-executor");
    if (!flags.ok()) {
      PrintProblems(flags.status());
      return 2;
    }
    kafka = *flags;
  }
  auto caller = NewExecutorAgentCaller(loop.executor(), kafka, args.agent_reply_topic);
  if (!caller.ok()) {
    PrintProblems(caller.status());
    return 1;
  }
  std::unique_ptr<AgentCaller> checked = auth::NewHostCheckingAgentCaller(std::move(caller).value(), access->agent_hosts);
  Engine engine(loop.executor(), store->get(), directory.get(), checked.get());
  loop.Start();
  std::promise<RunOutcome> finished;
  ExecutionRequest er;
  er.run_id = run_id;
  er.workflow_plan = doc;
  er.input_data = input;
  er.workflow_id = wf->id;
  er.workflow_version = wf->version;
  er.timestamp = NowMs();
  engine.Submit(er, [&finished](const RunOutcome& o) { finished.set_value(o); });
  finished.get_future().wait();
  engine.Shutdown();
  loop.Stop();
  if (demo) demo->Stop();

  auto run = (*store)->GetRun(run_id);
  auto steps = (*store)->ListSteps(run_id);
  if (!run.ok() || !steps.ok()) {
    std::fprintf(stderr, "error: cannot read the run's result\n");
    return 1;
  }
  json out = ToJson(*run);
  json items = json::array();
  for (const auto& s : *steps) items.push_back(ToJson(s));
  out["steps"] = items;
  if (args.json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : *steps) {
      rows.push_back({s.step_id, s.item_index ? std::to_string(*s.item_index) : "", s.agent_name,
                      std::to_string(s.attempt), ToString(s.status),
                      FormatDuration(s.completed_at ? std::optional<int64_t>(*s.completed_at - s.started_at)
                                                    : std::nullopt),
                      Cell(s.error_message.empty() ? json(nullptr) : json(s.error_message), 80)});
    }
    PrintTable({"STEP", "ITEM", "AGENT", "ATTEMPT", "STATUS", "DURATION", "ERROR"}, rows);
    std::printf("\nrun %s %s\n", run_id.c_str(), ToString(run->status));
    if (run->status == RunStatus::kCompleted) {
      std::printf("output: %s\n", run->output.dump(2).c_str());
    } else {
      std::printf("error: %s\n", run->error_message.c_str());
    }
  }
  return run->status == RunStatus::kCompleted ? 0 : 1;
}

struct DemoArgs {
  std::string host = "127.0.0.1";
  uint16_t port = 9000;
  std::string register_url;
  // The base URL other hosts reach the agents at, as registered with
  // --register; empty: http://HOST:PORT, which names 127.0.0.1 when HOST is
  // 0.0.0.0 and so only works on the same host (not across containers).
  std::string advertise_url;
  std::string api_key;  // --api-key / AGENTFLOW_API_KEY: an admin key when the registry requires auth
};

int RunDemoAgents(DemoArgs& args) {
  sigset_t signals = BlockTerminationSignals();
  auto demo = StartDemoAgents(args.host, args.port);
  if (!demo.ok()) {
    PrintProblems(demo.status());
    return 1;
  }
  std::printf("demo agents on %s/agents/{echo,upper,sleep,fail,flaky}\n", (*demo)->base_url().c_str());
  if (!args.register_url.empty()) {
    std::string base = args.register_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    std::string local = (*demo)->base_url();
    std::string advertised = args.advertise_url;
    while (!advertised.empty() && advertised.back() == '/') advertised.pop_back();
    for (Agent a : (*demo)->Records()) {
      if (!advertised.empty()) {
        // Records() builds every URL as base_url() + path.
        if (a.url.rfind(local, 0) == 0) a.url = advertised + a.url.substr(local.size());
        if (a.health_url.rfind(local, 0) == 0) a.health_url = advertised + a.health_url.substr(local.size());
      }
      http::ClientRequest req;
      req.method = "PUT";
      req.url = base + "/api/v1/agents/" + a.name;
      req.headers.emplace_back("Content-Type", "application/json");
      if (!args.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + args.api_key);
      req.body = json{{"name", a.name},
                      {"url", a.url},
                      {"timeout_ms", a.timeout_ms},
                      {"metadata", a.metadata},
                      {"health_url", a.health_url}}
                     .dump();
      auto res = http::FetchSync(req);
      if (!res.ok() || res->status >= 300) {
        std::fprintf(stderr, "error: registering %s with %s failed: %s\n", a.name.c_str(), base.c_str(),
                     res.ok() ? res->body.c_str() : res.status().message().c_str());
        return 1;
      }
    }
    std::printf("registered with %s\n", base.c_str());
  }
  std::fflush(stdout);
  WaitForSignal(signals);
  (*demo)->Stop();
  return 0;
}

}  // namespace

void AddServerCommands(CLI::App& app, GlobalOptions& global, int* exit_code) {
  static ServeArgs serve_args;
  serve_args.platform.data_dir = EnvOr("AGENTFLOW_DATA_DIR", ".agentflow");
  auto* serve = app.add_subcommand("serve", "run API, queue, executor and registry in one process (embedded default)");
  serve->add_option("--host", serve_args.platform.host, "bind address")->capture_default_str();
  serve->add_option("--port", serve_args.platform.port, "API port")->capture_default_str();
  serve->add_option("--data-dir", serve_args.platform.data_dir, "SQLite database and queue directory (env AGENTFLOW_DATA_DIR)")
      ->capture_default_str();
  serve->add_flag("--demo", serve_args.platform.demo, "start demo agents and load sample workflows");
  serve->add_option("--demo-port", serve_args.platform.demo_port, "demo agents' port (0: any free port)")
      ->capture_default_str();
  serve->add_option("--api-threads", serve_args.platform.api_threads, "HTTP server threads")->capture_default_str();
  serve->add_option("--max-body-bytes", serve_args.platform.max_body_bytes, "request body limit")
      ->capture_default_str();
  serve->add_option("--max-runs", serve_args.platform.max_active_runs, "runs executing at once in this process")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  AddHttpLimitFlags(serve, serve_args.platform.limits);
  AddPlanLimitFlags(serve, serve_args.platform.limits);
  AddStepLimitFlags(serve, serve_args.platform.limits);
  AddLeaseFlags(serve, serve_args.platform.reliability);
  AddDispatchFlags(serve, serve_args.platform.reliability);
  serve->add_flag("!--accept-only", serve_args.platform.execute,
                  "accept and queue runs without executing them (no executor in this process; a later serve "
                  "without the flag runs them)");
  serve->add_flag("--full-sync", serve_args.platform.sqlite_full_sync,
                  "SQLite synchronous=FULL: survive power loss, not only process crashes (slower)");
  serve->add_option("--health-interval", serve_args.platform.health_interval_seconds,
                    "seconds between health checks of agents that have a health_url (0: no checks)")
      ->capture_default_str();
  AddAccessOptions(serve, serve_args.access, /*with_auth=*/true);
  serve->callback([exit_code] { *exit_code = Serve(serve_args); });

  static ExecutorArgs exec_args;
  auto* exec = app.add_subcommand("executor", "run one plan directly and print the run's result");
  exec->add_option("--plan", exec_args.plan_file, "plan JSON file")->required();
  exec->add_option("--input", exec_args.input, "run input: JSON object or @file")->capture_default_str();
  exec->add_option("--agent", exec_args.agents, "an agent as NAME=URL (repeatable)");
  exec->add_option("--registry", exec_args.registry,
                   "resolve agents not given with --agent through this agent registry (agentflow registry, serve "
                   "or api), e.g. http://127.0.0.1:8080")
      ->envname("AGENT_REGISTRY_URL");
  exec->add_flag("--demo", exec_args.demo, "start the demo agents in-process and use them");
  exec->add_option("--kafka-brokers", exec_args.kafka_brokers, "Kafka brokers, to call agents of the kafka transport")
      ->envname("KAFKA_BROKERS");
  exec->add_option("--kafka-property", exec_args.kafka_properties, "extra librdkafka property KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  exec->add_option("--agent-reply-topic", exec_args.agent_reply_topic, "topic kafka agents' replies are read from")
      ->envname("KAFKA_AGENT_REPLY_TOPIC")
      ->capture_default_str();
  exec->add_option("--database-url", exec_args.database_url,
                   "record the run in this database (postgresql://… or a SQLite path; default: in memory); "
                   "agents not given with --agent are read from it")
      ->envname("DATABASE_URL");
  AddAccessOptions(exec, exec_args.access, /*with_auth=*/false);
  exec->callback([exit_code, &global] {
    exec_args.json = global.json;  // --json prints the run with its steps as JSON
    *exit_code = RunStandalone(exec_args);
  });

  static DemoArgs demo_args;
  auto* demo = app.add_subcommand("demo-agents", "serve the sample agents (echo, upper, sleep, fail, flaky)");
  demo->add_option("--host", demo_args.host, "bind address")->capture_default_str();
  demo->add_option("--port", demo_args.port, "port (0: any free port)")->capture_default_str();
  demo->add_option("--register", demo_args.register_url, "register the agents with this agentflow API");
  demo->add_option("--advertise-url", demo_args.advertise_url,
                   "base URL registered for the agents, e.g. http://demo-agents:9000 (default: http://HOST:PORT; set "
                   "it when binding 0.0.0.0)");
  demo->callback([exit_code, &global] {
    demo_args.api_key = global.api_key;
    *exit_code = RunDemoAgents(demo_args);
  });
}

}  // namespace af::cli
