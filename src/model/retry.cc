#include "model/retry.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/json_text.h"

namespace af {
namespace {

constexpr int kMaxAttempts = 100;
constexpr int64_t kMaxBackoffMs = 3600000;  // one hour
constexpr double kMaxMultiplier = 100.0;

// The value as an int64 if it is a JSON integer that fits.
std::optional<int64_t> AsInt(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

std::string Shown(const json& v) {
  std::string s = JsonText(v);
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

}  // namespace

RetryPolicy RetryPolicy::FromJson(const json& j, std::vector<std::string>* problems) {
  RetryPolicy p;
  auto problem = [&](const std::string& msg) {
    if (problems) problems->push_back(msg);
  };
  if (!j.is_object()) {
    problem("retry: must be an object like {\"max_attempts\": 3}");
    return p;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key != "max_attempts" && key != "initial_backoff_ms" && key != "backoff_multiplier" &&
        key != "max_backoff_ms") {
      problem("retry." + key +
              ": unknown field. Hint: use max_attempts, initial_backoff_ms, backoff_multiplier or max_backoff_ms");
    }
  }
  if (auto it = j.find("max_attempts"); it != j.end()) {
    std::optional<int64_t> v = AsInt(*it);
    if (v && *v >= 1 && *v <= kMaxAttempts) {
      p.max_attempts = static_cast<int>(*v);
    } else {
      problem("retry.max_attempts: must be an integer 1.." + std::to_string(kMaxAttempts) + " (got " + Shown(*it) +
              ")");
    }
  }
  if (auto it = j.find("initial_backoff_ms"); it != j.end()) {
    std::optional<int64_t> v = AsInt(*it);
    if (v && *v >= 0 && *v <= kMaxBackoffMs) {
      p.initial_backoff_ms = *v;
    } else {
      problem("retry.initial_backoff_ms: must be an integer 0.." + std::to_string(kMaxBackoffMs) + " (got " +
              Shown(*it) + ")");
    }
  }
  if (auto it = j.find("backoff_multiplier"); it != j.end()) {
    double v = it->is_number() ? it->get<double>() : std::nan("");
    if (v >= 1.0 && v <= kMaxMultiplier) {  // false for NaN
      p.backoff_multiplier = v;
    } else {
      problem("retry.backoff_multiplier: must be a number 1..100 (got " + Shown(*it) + ")");
    }
  }
  if (auto it = j.find("max_backoff_ms"); it != j.end()) {
    std::optional<int64_t> v = AsInt(*it);
    if (v && *v >= p.initial_backoff_ms && *v <= kMaxBackoffMs) {
      p.max_backoff_ms = *v;
    } else {
      problem("retry.max_backoff_ms: must be an integer >= initial_backoff_ms (" +
              std::to_string(p.initial_backoff_ms) + ") and <= " + std::to_string(kMaxBackoffMs) + " (got " +
              Shown(*it) + ")");
    }
  } else if (p.max_backoff_ms < p.initial_backoff_ms) {
    // Only the initial delay was raised: let the cap follow it rather than
    // silently shrinking every delay below what the user asked for.
    p.max_backoff_ms = p.initial_backoff_ms;
  }
  return p;
}

json RetryPolicy::ToJson() const {
  return json{{"max_attempts", max_attempts},
              {"initial_backoff_ms", initial_backoff_ms},
              {"backoff_multiplier", backoff_multiplier},
              {"max_backoff_ms", max_backoff_ms}};
}

int64_t BackoffMs(const RetryPolicy& policy, int next_attempt, double jitter, std::optional<int64_t> retry_after_ms) {
  int exponent = std::max(0, next_attempt - 2);
  double cap = static_cast<double>(std::max<int64_t>(0, policy.max_backoff_ms));
  double base = static_cast<double>(std::max<int64_t>(0, policy.initial_backoff_ms)) *
                std::pow(std::max(1.0, policy.backoff_multiplier), exponent);
  if (!(base <= cap)) base = cap;  // also catches inf and NaN
  if (!(jitter >= 0.0)) jitter = 0.0;
  if (jitter > 1.0) jitter = 1.0;
  double half = base / 2.0;
  auto delay = static_cast<int64_t>(std::floor(half + half * jitter));
  if (retry_after_ms && *retry_after_ms > delay) {
    delay = std::max(delay, std::min(*retry_after_ms, static_cast<int64_t>(cap)));
  }
  return delay;
}

}  // namespace af
