#include "common/log.h"

#include <cstdlib>
#include <memory>
#include <mutex>

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/json_text.h"
#include "common/time.h"

namespace af::log {
namespace {

struct State {
  std::mutex mu;
  std::shared_ptr<spdlog::logger> logger;
  Level level = Level::kInfo;
  bool json = false;
};

State& GetState() {
  static State* s = [] {
    auto* st = new State();
    st->logger = std::make_shared<spdlog::logger>("agentflow", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    st->logger->set_pattern("%v");
    st->logger->set_level(spdlog::level::trace);
    st->logger->flush_on(spdlog::level::trace);
    return st;
  }();
  return *s;
}

Level ParseLevel(std::string_view v) {
  std::string s(v);
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (s == "DEBUG" || s == "TRACE") return Level::kDebug;
  if (s == "WARNING" || s == "WARN") return Level::kWarning;
  if (s == "ERROR" || s == "CRITICAL") return Level::kError;
  return Level::kInfo;
}

const char* LevelName(Level l) {
  switch (l) {
    case Level::kDebug: return "DEBUG";
    case Level::kInfo: return "INFO";
    case Level::kWarning: return "WARNING";
    case Level::kError: return "ERROR";
  }
  return "INFO";
}

}  // namespace

void Init(std::string_view level, std::string_view format) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.level = ParseLevel(level);
  s.json = (format == "json" || format == "JSON");
}

void InitFromEnv() {
  const char* level = std::getenv("LOG_LEVEL");
  const char* format = std::getenv("LOG_FORMAT");
  Init(level ? level : "INFO", format ? format : "text");
}

bool Enabled(Level level) { return level >= GetState().level; }

void Write(Level level, std::string_view msg, const Fields& f) {
  State& s = GetState();
  if (level < s.level) return;
  std::string line;
  if (s.json) {
    nlohmann::ordered_json j;  // keeps ts, level, msg first
    j["ts"] = FormatIso8601(NowMs());
    j["level"] = LevelName(level);
    j["msg"] = std::string(msg);
    if (!f.run_id.empty()) j["run_id"] = std::string(f.run_id);
    if (!f.step_id.empty()) j["step_id"] = std::string(f.step_id);
    if (!f.agent.empty()) j["agent"] = std::string(f.agent);
    if (!f.trace_id.empty()) j["trace_id"] = std::string(f.trace_id);
    line = JsonText(j);
  } else {
    line = fmt::format("{} {:<7} {}", FormatIso8601(NowMs()), LevelName(level), msg);
    if (!f.run_id.empty()) line += fmt::format(" run_id={}", f.run_id);
    if (!f.step_id.empty()) line += fmt::format(" step_id={}", f.step_id);
    if (!f.agent.empty()) line += fmt::format(" agent={}", f.agent);
    if (!f.trace_id.empty()) line += fmt::format(" trace_id={}", f.trace_id);
  }
  s.logger->info(line);
}

}  // namespace af::log
