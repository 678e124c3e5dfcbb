// Retry policy for step attempts: exponential backoff with jitter.
// Pure; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <random>

#include "common/status.h"
#include "model/types.h"

namespace af {

struct RetryPolicy {
  int max_attempts = 3;              // total attempts including the first; >= 1
  int64_t initial_backoff_ms = 100;  // delay before the 2nd attempt
  double backoff_multiplier = 2.0;   // growth per attempt; >= 1
  int64_t max_backoff_ms = 10000;    // cap on any single delay

  // Parses {"max_attempts", "initial_backoff_ms", "backoff_multiplier",
  // "max_backoff_ms"}; every field optional. Problems are appended to
  // `problems` as messages naming the field; returns the policy with defaults
  // for bad fields.
  static RetryPolicy FromJson(const json& j, std::vector<std::string>* problems);
  json ToJson() const;
};

// Delay before attempt `next_attempt` (2 for the first retry), given the
// policy, an optional server Retry-After, and a uniform random in [0,1).
// Result: base = min(max_backoff, initial * multiplier^(next_attempt-2));
// delay = base/2 + base/2 * jitter  ("equal jitter"); with Retry-After the
// delay is max(delay, retry_after), capped at max_backoff_ms: no single wait
// exceeds the cap the plan declares, so a hostile `Retry-After: 86400`
// cannot stall a step for a day.
int64_t BackoffMs(const RetryPolicy& policy, int next_attempt, double jitter,
                  std::optional<int64_t> retry_after_ms = std::nullopt);

// Whether another attempt is allowed after `attempts_made` failed attempts.
inline bool ShouldRetry(const RetryPolicy& p, int attempts_made) { return attempts_made < p.max_attempts; }

}  // namespace af
