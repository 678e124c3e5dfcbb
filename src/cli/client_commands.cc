// CLI commands that talk to a running agentflow API over HTTP:
// workflow create|list|get, run start|get|list|steps|cancel|retry|watch,
// agent register|list|get|delete.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/output.h"
#include "http/http.h"
#include "http/sse.h"
#include "model/types.h"

namespace af::cli {
namespace {

// A request to the API at g.server, with g's API key.
http::ClientRequest ApiRequest(const GlobalOptions& g, std::string method, const std::string& path) {
  http::ClientRequest req;
  req.method = std::move(method);
  std::string base = g.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  req.url = base + path;
  if (!g.api_key.empty()) req.headers.emplace_back("Authorization", "Bearer " + g.api_key);
  return req;
}

// The API could not be reached at all.
Status Unreachable(const GlobalOptions& g, const Status& s) {
  std::string cause = s.message();
  cause = cause.substr(0, cause.find(". Hint:"));  // ours below says what to do here
  return Status(s.code(), "cannot reach the agentflow API at " + g.server + ": " + cause +
                              ". Hint: start it with 'agentflow serve' or pass --server URL");
}

// A non-2xx answer as a Status carrying the server's message.
Status Refusal(int status, const std::string& body) {
  json parsed = body.empty() ? json(nullptr) : json::parse(body, nullptr, false);
  std::string msg = "HTTP " + std::to_string(status);
  json details;
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
    msg = parsed["error"].value("message", msg);
    details = parsed["error"].value("details", json(nullptr));
  }
  Code code = status == 404   ? Code::kNotFound
              : status == 401 ? Code::kUnauthenticated
              : status == 403 ? Code::kPermissionDenied
              : status == 409 ? Code::kFailedPrecondition
              : status < 500  ? Code::kInvalidArgument
                              : Code::kUnavailable;
  return Status(code, msg, details);
}

// Calls the API; non-2xx answers become a Status carrying the server's message.
Result<json> Call(const GlobalOptions& g, const std::string& method, const std::string& path,
                  const json& body = nullptr, http::Headers headers = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  http::ClientRequest req = ApiRequest(g, method, path);
  for (auto& h : headers) req.headers.push_back(std::move(h));
  if (!body.is_null()) {
    req.body = body.dump();
    req.headers.emplace_back("Content-Type", "application/json");
  }
  req.timeout = timeout;
  auto res = http::FetchSync(req);
  if (!res.ok()) return Unreachable(g, res.status());
  if (res->status < 200 || res->status >= 300) return Refusal(res->status, res->body);
  json parsed = res->body.empty() ? json(nullptr) : json::parse(res->body, nullptr, false);
  if (parsed.is_discarded()) return Status::Internal("the API answered with a non-JSON body");
  return parsed;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  const json& d = s.details();
  if (d.is_object() && d.contains("problems") && d["problems"].is_array()) {
    for (const auto& p : d["problems"]) {
      std::fprintf(stderr, "  - %s\n", p.value("message", p.dump()).c_str());
    }
  }
  return 1;
}

void PrintJson(const json& j) { std::printf("%s\n", j.dump(2, ' ', false, json::error_handler_t::replace).c_str()); }

// "--input '{...}'" or "--input @file.json".
Result<json> ReadJsonArg(const std::string& arg, const char* what) {
  std::string text = arg;
  if (!arg.empty() && arg[0] == '@') {
    std::ifstream in(arg.substr(1));
    if (!in) return Status::InvalidArgument(std::string("cannot read ") + what + " file '" + arg.substr(1) + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return Status::InvalidArgument(std::string(what) + " is not valid JSON. Hint: quote it, e.g. --input '{\"topic\": \"x\"}', or use @file.json");
  }
  return j;
}

std::string Str(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

void PrintRun(const json& run) {
  std::printf("run_id:        %s\n", Str(run, "run_id").c_str());
  std::printf("workflow:      %s (version %s)\n", Str(run, "workflow_id").c_str(), Str(run, "workflow_version").c_str());
  std::printf("status:        %s\n", Str(run, "status").c_str());
  std::printf("created_at:    %s\n", Str(run, "created_at").c_str());
  std::printf("started_at:    %s\n", Str(run, "started_at").c_str());
  std::printf("completed_at:  %s\n", Str(run, "completed_at").c_str());
  std::printf("duration:      %s\n",
              FormatDuration(JsonDurationMs(run.value("started_at", json(nullptr)),
                                            run.value("completed_at", json(nullptr))))
                  .c_str());
  std::printf("input:         %s\n", Cell(run.value("input", json(nullptr)), 1000).c_str());
  std::printf("output:        %s\n", Cell(run.value("output", json(nullptr)), 1000).c_str());
  if (run.contains("error_message") && !run["error_message"].is_null()) {
    std::printf("error_message: %s\n", Str(run, "error_message").c_str());
  }
}

std::vector<std::string> StepRow(const json& s) {
  std::string item = s["item_index"].is_null() ? "" : std::to_string(s["item_index"].get<int>());
  return {Str(s, "step_id"),
          item,
          Str(s, "agent_name"),
          Str(s, "attempt"),
          Str(s, "status"),
          FormatDuration(JsonDurationMs(s.value("started_at", json(nullptr)), s.value("completed_at", json(nullptr)))),
          Cell(s.value("error_message", json(nullptr)), 80)};
}

// Follows a run step by step until it ends, from its event stream (GET
// /runs/{id}/events, server-sent events). Exit code 0 only if COMPLETED. A
// dropped connection is opened again; the stream then starts with the
// whole run, and lines already printed are not printed again.
int Watch(const GlobalOptions& g, const std::string& run_id) {
  std::map<int64_t, std::string> seen;  // step execution id → last printed status
  http::ClientRequest req = ApiRequest(g, "GET", "/api/v1/runs/" + run_id + "/events");
  req.headers.emplace_back("Accept", "text/event-stream");
  req.timeout = std::chrono::seconds(60);  // the server sends a keep-alive every 15 s
  std::optional<json> final_run;
  std::optional<Status> stream_error;
  for (int reconnects = 0; !final_run && reconnects < 10; ++reconnects) {
    http::SseParser parser;
    auto res = http::StreamSync(req, [&](std::string_view data) {
      for (const http::SseEvent& e : parser.Feed(data)) {
        json doc = json::parse(e.data, nullptr, false);
        if (doc.is_discarded()) continue;
        if (e.event == "end") {
          final_run = doc;
          return false;
        }
        if (e.event == "error") {
          stream_error = Status::Unavailable(doc.value("message", std::string("the event stream failed")));
          continue;
        }
        if (e.event != "step") continue;
        int64_t id = doc.value("id", int64_t{0});
        std::string status = Str(doc, "status");
        auto it = seen.find(id);
        if (it != seen.end() && it->second == status) continue;
        seen[id] = status;
        if (g.json) {
          std::printf("%s\n", json{{"event", "step"}, {"step", doc}}.dump().c_str());
        } else {
          std::string item = doc["item_index"].is_null() ? "" : "[" + std::to_string(doc["item_index"].get<int>()) + "]";
          std::string extra;
          if (status == "COMPLETED") extra = "  " + FormatDuration(JsonDurationMs(doc["started_at"], doc["completed_at"]));
          if (!doc["error_message"].is_null()) extra += "  " + Cell(doc["error_message"], 120);
          std::printf("%-9s %s%s  agent=%s  attempt=%s%s\n", status.c_str(), Str(doc, "step_id").c_str(), item.c_str(),
                      Str(doc, "agent_name").c_str(), Str(doc, "attempt").c_str(), extra.c_str());
        }
        std::fflush(stdout);
      }
      return true;
    });
    if (final_run) break;
    // A refusal (unknown run, no key) is reported as any other call's.
    if (res.ok() && res->status != 200) return Fail(Refusal(res->status, res->body));
    if (!res.ok() && res.status().code() != Code::kDeadlineExceeded && reconnects == 0) {
      return Fail(Unreachable(g, res.status()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // then reconnect
  }
  if (!final_run) return Fail(stream_error.value_or(Status::Unavailable("the run's event stream kept failing")));
  const json& run = *final_run;
  std::string status = Str(run, "status");
  if (g.json) {
    std::printf("%s\n", json{{"event", "run"}, {"run", run}}.dump().c_str());
  } else {
    std::printf("run %s %s in %s\n", run_id.c_str(), status.c_str(),
                FormatDuration(JsonDurationMs(run["started_at"], run["completed_at"])).c_str());
    if (status == "COMPLETED") {
      std::printf("output: %s\n", run["output"].dump(2).c_str());
    } else {
      std::printf("error: %s\n", Str(run, "error_message").c_str());
    }
  }
  return status == "COMPLETED" ? 0 : 1;
}

}  // namespace

void AddClientCommands(CLI::App& app, GlobalOptions& g, int* exit_code) {
  // ---- workflow ----
  auto* wf = app.add_subcommand("workflow", "create, list and show workflow plans");
  wf->require_subcommand(1);
  {
    auto* create = wf->add_subcommand("create", "create a workflow from a plan file");
    static std::string file_arg;
    auto* file = &file_arg;
    create->add_option("-f,--file", *file, "plan JSON file")->required();
    create->callback([&g, file, exit_code] {
      auto doc = ReadJsonArg("@" + *file, "plan");
      if (!doc.ok()) {
        *exit_code = Fail(doc.status());
        return;
      }
      auto res = Call(g, "POST", "/api/v1/workflows", *doc);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) {
        PrintJson(*res);
      } else {
        std::printf("created workflow %s (%s), version %s\n", Str(*res, "workflow_id").c_str(),
                    Str(*res, "name").c_str(), Str(*res, "version").c_str());
        for (const auto& w : (*res)["warnings"]) std::printf("warning: %s\n", w.get<std::string>().c_str());
      }
    });

    auto* list = wf->add_subcommand("list", "list workflows");
    static int limit_arg(50);
    auto* limit = &limit_arg;
    list->add_option("--limit", *limit, "page size");
    list->callback([&g, limit, exit_code] {
      auto res = Call(g, "GET", "/api/v1/workflows?limit=" + std::to_string(*limit));
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      std::vector<std::vector<std::string>> rows;
      for (const auto& w : (*res)["items"]) {
        rows.push_back({Str(w, "workflow_id"), Str(w, "name"), Str(w, "version"),
                        std::to_string(w["plan"]["steps"].size()), Str(w, "updated_at")});
      }
      PrintTable({"WORKFLOW_ID", "NAME", "VERSION", "STEPS", "UPDATED"}, rows);
    });

    auto* get = wf->add_subcommand("get", "show a workflow and its plan");
    static std::string id_arg;
    auto* id = &id_arg;
    get->add_option("ID", *id, "workflow id or name")->required();
    get->callback([&g, id, exit_code] {
      auto res = Call(g, "GET", "/api/v1/workflows/" + *id);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      std::printf("workflow_id: %s\nname:        %s\nversion:     %s\ndescription: %s\nplan:\n%s\n",
                  Str(*res, "workflow_id").c_str(), Str(*res, "name").c_str(), Str(*res, "version").c_str(),
                  Str(*res, "description").c_str(), (*res)["plan"].dump(2).c_str());
    });
  }

  // ---- run ----
  auto* run = app.add_subcommand("run", "start, follow, cancel and retry runs");
  run->require_subcommand(1);
  {
    auto* start = run->add_subcommand("start", "start a run of a workflow");
    static std::string workflow_arg;
    auto* workflow = &workflow_arg;
    static std::string input_arg("{}");
    auto* input = &input_arg;
    static bool watch_arg(false);
    auto* watch = &watch_arg;
    static std::string key_arg;
    auto* key = &key_arg;
    start->add_option("WORKFLOW", *workflow, "workflow id or name")->required();
    start->add_option("--input", *input, "run input: JSON text or @file.json");
    start->add_flag("--watch", *watch, "follow the run until it ends (exit code 0 only if COMPLETED)");
    start->add_option("--idempotency-key", *key, "the same key returns the same run");
    start->callback([&g, workflow, input, watch, key, exit_code] {
      auto in = ReadJsonArg(*input, "--input");
      if (!in.ok()) {
        *exit_code = Fail(in.status());
        return;
      }
      http::Headers headers;
      if (!key->empty()) headers.emplace_back("Idempotency-Key", *key);
      json body{{"input", *in}};
      auto res = Call(g, "POST", "/api/v1/workflows/" + *workflow + "/runs", body, headers);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      std::string run_id = Str(*res, "run_id");
      if (g.json && !*watch) return PrintJson(*res);
      if (!g.json) std::printf("run %s %s\n", run_id.c_str(), Str(*res, "status").c_str());
      if (*watch) *exit_code = Watch(g, run_id);
    });

    auto* get = run->add_subcommand("get", "show a run");
    static std::string id_arg;
    auto* id = &id_arg;
    static double wait_arg(0);
    auto* wait = &wait_arg;
    get->add_option("RUN_ID", *id, "run id")->required();
    get->add_option("--wait", *wait, "wait up to this many seconds for the run to end");
    get->callback([&g, id, wait, exit_code] {
      std::string path = "/api/v1/runs/" + *id;
      if (*wait > 0) path += "?wait=" + std::to_string(*wait);
      auto res = Call(g, "GET", path, nullptr, {}, std::chrono::milliseconds(static_cast<int64_t>(*wait * 1000) + 30000));
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      PrintRun(*res);
    });

    auto* list = run->add_subcommand("list", "list runs, newest first");
    static std::string wf_filter_arg;
    auto* wf_filter = &wf_filter_arg;
    static std::string status_arg;
    auto* status = &status_arg;
    static int limit_arg(20);
    auto* limit = &limit_arg;
    list->add_option("--workflow", *wf_filter, "workflow id or name");
    list->add_option("--status", *status, "PENDING, RUNNING, COMPLETED, FAILED or CANCELLED");
    list->add_option("--limit", *limit, "page size");
    list->callback([&g, wf_filter, status, limit, exit_code] {
      std::string path = "/api/v1/runs?limit=" + std::to_string(*limit);
      if (!wf_filter->empty()) path += "&workflow_id=" + *wf_filter;
      if (!status->empty()) path += "&status=" + *status;
      auto res = Call(g, "GET", path);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : (*res)["items"]) {
        rows.push_back({Str(r, "run_id"), Str(r, "workflow_id"), Str(r, "status"), Str(r, "created_at"),
                        FormatDuration(JsonDurationMs(r["started_at"], r["completed_at"]))});
      }
      PrintTable({"RUN_ID", "WORKFLOW_ID", "STATUS", "CREATED", "DURATION"}, rows);
    });

    auto* steps = run->add_subcommand("steps", "show a run's step executions");
    static std::string sid_arg;
    auto* sid = &sid_arg;
    steps->add_option("RUN_ID", *sid, "run id")->required();
    steps->callback([&g, sid, exit_code] {
      auto res = Call(g, "GET", "/api/v1/runs/" + *sid + "/steps");
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      std::vector<std::vector<std::string>> rows;
      for (const auto& s : (*res)["items"]) rows.push_back(StepRow(s));
      PrintTable({"STEP", "ITEM", "AGENT", "ATTEMPT", "STATUS", "DURATION", "ERROR"}, rows);
    });

    auto* cancel = run->add_subcommand("cancel", "cancel a run");
    static std::string cid_arg;
    auto* cid = &cid_arg;
    static std::string reason_arg;
    auto* reason = &reason_arg;
    static std::string by_arg;
    auto* by = &by_arg;
    cancel->add_option("RUN_ID", *cid, "run id")->required();
    cancel->add_option("--reason", *reason, "why");
    cancel->add_option("--by", *by, "who (default: $USER)");
    cancel->callback([&g, cid, reason, by, exit_code] {
      std::string who = *by;
      if (who.empty()) {
        const char* user = std::getenv("USER");
        who = user ? user : "cli";
      }
      auto res = Call(g, "POST", "/api/v1/runs/" + *cid + "/cancel", json{{"reason", *reason}, {"cancelled_by", who}});
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json) return PrintJson(*res);
      std::printf("cancellation of run %s requested (status %s)\n", cid->c_str(), Str(*res, "status").c_str());
    });

    auto* retry = run->add_subcommand("retry", "retry a FAILED or CANCELLED run from the failed step");
    static std::string rid_arg;
    auto* rid = &rid_arg;
    static std::string rinput_arg;
    auto* rinput = &rinput_arg;
    static bool rwatch_arg(false);
    auto* rwatch = &rwatch_arg;
    retry->add_option("RUN_ID", *rid, "run id")->required();
    retry->add_option("--input", *rinput, "replace the run input (JSON text or @file)");
    retry->add_flag("--watch", *rwatch, "follow the run until it ends");
    retry->callback([&g, rid, rinput, rwatch, exit_code] {
      json body = json::object();
      if (!rinput->empty()) {
        auto in = ReadJsonArg(*rinput, "--input");
        if (!in.ok()) {
          *exit_code = Fail(in.status());
          return;
        }
        body["input"] = *in;
      }
      auto res = Call(g, "POST", "/api/v1/runs/" + *rid + "/retry", body);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (g.json && !*rwatch) return PrintJson(*res);
      if (!g.json) std::printf("run %s %s (attempt %s)\n", rid->c_str(), Str(*res, "status").c_str(), Str(*res, "attempt").c_str());
      if (*rwatch) *exit_code = Watch(g, *rid);
    });

    auto* watch_cmd = run->add_subcommand("watch", "follow a run step by step until it ends");
    static std::string wid_arg;
    auto* wid = &wid_arg;
    watch_cmd->add_option("RUN_ID", *wid, "run id")->required();
    watch_cmd->callback([&g, wid, exit_code] { *exit_code = Watch(g, *wid); });
  }

  // ---- agent ----
  // Agent commands talk to the agent registry: --registry / AGENT_REGISTRY_URL
  // (agentflow registry), else --server (serve and api serve it too).
  auto* agent = app.add_subcommand("agent", "register, list, show and delete agents");
  agent->require_subcommand(1);
  static std::string registry_arg;
  agent->add_option("--registry", registry_arg,
                    "agent registry URL (default: --server), e.g. http://127.0.0.1:8080")
      ->envname("AGENT_REGISTRY_URL");
  // The options agent commands call with.
  auto registry = [&g]() {
    GlobalOptions r = g;
    if (!registry_arg.empty()) r.server = registry_arg;
    return r;
  };
  {
    auto* reg = agent->add_subcommand(
        "register", "register an agent, or update the given fields of a registered one");
    struct RegisterArgs {
      std::string name, url, transport, topic, health_url, metadata;
      int64_t timeout_ms = 0;
      int max_concurrency = -1;
    };
    static RegisterArgs a;
    reg->add_option("--name", a.name, "agent name")->required();
    reg->add_option("--url", a.url, "HTTP agent: the URL calls are POSTed to");
    reg->add_option("--transport", a.transport, "http (default) or kafka");
    reg->add_option("--topic", a.topic, "Kafka agent: its request topic (default agent.<name>.requests)");
    reg->add_option("--health-url", a.health_url, "URL the registry GETs to check the agent's health");
    reg->add_option("--timeout-ms", a.timeout_ms, "default call timeout");
    reg->add_option("--max-concurrency", a.max_concurrency, "calls in flight per executor process (0 = unlimited)");
    reg->add_option("--metadata", a.metadata, "free JSON object, e.g. '{\"capabilities\": [\"summarize\"]}'");
    reg->callback([registry, exit_code] {
      GlobalOptions r = registry();
      // Start from the registered record, so that an update keeps what it does not name.
      json body = json::object();
      auto existing = Call(r, "GET", "/api/v1/agents/" + a.name);
      if (existing.ok()) {
        for (const char* f : {"transport", "url", "topic", "health_url", "timeout_ms", "max_concurrency", "metadata"}) {
          if (existing->contains(f) && !(*existing)[f].is_null()) body[f] = (*existing)[f];
        }
      } else if (existing.status().code() != Code::kNotFound) {
        *exit_code = Fail(existing.status());
        return;
      }
      body["name"] = a.name;
      if (!a.transport.empty()) body["transport"] = a.transport;
      if (!a.url.empty()) body["url"] = a.url;
      if (!a.topic.empty()) body["topic"] = a.topic;
      if (!a.health_url.empty()) body["health_url"] = a.health_url;
      if (a.timeout_ms > 0) body["timeout_ms"] = a.timeout_ms;
      if (a.max_concurrency >= 0) body["max_concurrency"] = a.max_concurrency;
      if (!a.metadata.empty()) {
        json m = json::parse(a.metadata, nullptr, false);
        if (m.is_discarded() || !m.is_object()) {
          *exit_code = Fail(Status::InvalidArgument("--metadata must be a JSON object"));
          return;
        }
        body["metadata"] = m;
      }
      // A transport switch drops the other transport's target.
      if (body.value("transport", "http") == "kafka") {
        body.erase("url");
      } else {
        body.erase("topic");
      }
      auto res = Call(r, "PUT", "/api/v1/agents/" + a.name, body);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (r.json) return PrintJson(*res);
      std::string target = Str(*res, "transport") == "kafka" ? "topic " + Str(*res, "topic") : Str(*res, "url");
      std::printf("agent %s %s (%s %s)\n", a.name.c_str(), existing.ok() ? "updated" : "registered",
                  Str(*res, "transport").c_str(), target.c_str());
    });

    auto* list = agent->add_subcommand("list", "list registered agents with their health");
    list->callback([registry, exit_code] {
      GlobalOptions r = registry();
      auto res = Call(r, "GET", "/api/v1/agents");
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (r.json) return PrintJson(*res);
      std::vector<std::vector<std::string>> rows;
      for (const auto& x : (*res)["items"]) {
        std::string target = Str(x, "transport") == "kafka" ? Str(x, "topic") : Str(x, "url");
        rows.push_back({Str(x, "name"), Str(x, "transport"), target, Str(x, "health"), Str(x, "last_seen_at"),
                        Str(x, "timeout_ms"), Str(x, "max_concurrency")});
      }
      PrintTable({"NAME", "TRANSPORT", "URL/TOPIC", "HEALTH", "LAST_SEEN", "TIMEOUT_MS", "MAX_CONCURRENCY"}, rows);
    });

    auto* get = agent->add_subcommand("get", "show one agent (health error included)");
    static std::string get_name;
    get->add_option("NAME", get_name, "agent name")->required();
    get->callback([registry, exit_code] {
      GlobalOptions r = registry();
      auto res = Call(r, "GET", "/api/v1/agents/" + get_name);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      PrintJson(*res);
    });

    auto* del = agent->add_subcommand("delete", "remove an agent from the registry");
    static std::string del_name;
    del->add_option("NAME", del_name, "agent name")->required();
    del->callback([registry, exit_code] {
      GlobalOptions r = registry();
      auto res = Call(r, "DELETE", "/api/v1/agents/" + del_name);
      if (!res.ok()) {
        *exit_code = Fail(res.status());
        return;
      }
      if (!r.json) std::printf("agent %s deleted\n", del_name.c_str());
    });
  }
}

}  // namespace af::cli
