// Structured logging on spdlog. LOG_LEVEL (DEBUG, INFO, WARNING, ERROR) and
// LOG_FORMAT (text or json) choose the output; in json every line is one
// object with ts, level, msg and, where known, run_id, step_id, agent and
// trace_id (the run's W3C trace id, common/trace.h).
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <spdlog/fmt/fmt.h>

namespace af::log {

enum class Level { kDebug, kInfo, kWarning, kError };

// Context attached to a line; empty fields are left out.
struct Fields {
  std::string_view run_id;
  std::string_view step_id;
  std::string_view agent;
  std::string_view trace_id;
};

// Reads LOG_LEVEL and LOG_FORMAT from the environment (defaults INFO, text).
// Safe to call more than once; later calls replace earlier settings.
void InitFromEnv();
// Explicit settings; unknown values fall back to INFO / text.
void Init(std::string_view level, std::string_view format);
bool Enabled(Level level);

void Write(Level level, std::string_view msg, const Fields& fields = {});

inline void Debug(std::string_view msg, const Fields& f = {}) { Write(Level::kDebug, msg, f); }
inline void Info(std::string_view msg, const Fields& f = {}) { Write(Level::kInfo, msg, f); }
inline void Warn(std::string_view msg, const Fields& f = {}) { Write(Level::kWarning, msg, f); }
inline void Error(std::string_view msg, const Fields& f = {}) { Write(Level::kError, msg, f); }

}  // namespace af::log
