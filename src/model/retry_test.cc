#include "model/retry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace af {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

RetryPolicy Parse(const json& j, std::vector<std::string>* problems) { return RetryPolicy::FromJson(j, problems); }

TEST(RetryPolicyTest, DefaultsWhenEmpty) {
  std::vector<std::string> problems;
  RetryPolicy p = Parse(json::object(), &problems);
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_EQ(p.max_attempts, 3);
  EXPECT_EQ(p.initial_backoff_ms, 100);
  EXPECT_EQ(p.backoff_multiplier, 2.0);
  EXPECT_EQ(p.max_backoff_ms, 10000);
}

TEST(RetryPolicyTest, ParsesAllFields) {
  std::vector<std::string> problems;
  RetryPolicy p =
      Parse({{"max_attempts", 5}, {"initial_backoff_ms", 250}, {"backoff_multiplier", 1.5}, {"max_backoff_ms", 4000}},
            &problems);
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_EQ(p.max_attempts, 5);
  EXPECT_EQ(p.initial_backoff_ms, 250);
  EXPECT_EQ(p.backoff_multiplier, 1.5);
  EXPECT_EQ(p.max_backoff_ms, 4000);
}

TEST(RetryPolicyTest, AcceptsBounds) {
  std::vector<std::string> problems;
  Parse({{"max_attempts", 1}, {"initial_backoff_ms", 0}, {"backoff_multiplier", 1}, {"max_backoff_ms", 0}}, &problems);
  Parse({{"max_attempts", 100},
         {"initial_backoff_ms", 3600000},
         {"backoff_multiplier", 100.0},
         {"max_backoff_ms", 3600000}},
        &problems);
  EXPECT_THAT(problems, IsEmpty());
}

TEST(RetryPolicyTest, ToJsonRoundTrips) {
  RetryPolicy p;
  p.max_attempts = 7;
  p.initial_backoff_ms = 20;
  p.backoff_multiplier = 3.0;
  p.max_backoff_ms = 900;
  json j = p.ToJson();
  EXPECT_EQ(
      j, json({{"max_attempts", 7}, {"initial_backoff_ms", 20}, {"backoff_multiplier", 3.0}, {"max_backoff_ms", 900}}));
  std::vector<std::string> problems;
  RetryPolicy q = Parse(j, &problems);
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_EQ(q.ToJson(), j);
}

struct BadCase {
  json doc;
  std::string message_prefix;
};

TEST(RetryPolicyTest, RejectsBadValuesNamingTheField) {
  const std::vector<BadCase> cases = {
      {{{"max_attempts", 0}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"max_attempts", 101}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"max_attempts", 2.5}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"max_attempts", "3"}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"max_attempts", true}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"max_attempts", 18446744073709551615ull}}, "retry.max_attempts: must be an integer 1..100"},
      {{{"initial_backoff_ms", -1}}, "retry.initial_backoff_ms: must be an integer 0..3600000"},
      {{{"initial_backoff_ms", 3600001}}, "retry.initial_backoff_ms: must be an integer 0..3600000"},
      {{{"initial_backoff_ms", 1.5}}, "retry.initial_backoff_ms: must be an integer 0..3600000"},
      {{{"backoff_multiplier", 0.5}}, "retry.backoff_multiplier: must be a number 1..100"},
      {{{"backoff_multiplier", 101}}, "retry.backoff_multiplier: must be a number 1..100"},
      {{{"backoff_multiplier", "2"}}, "retry.backoff_multiplier: must be a number 1..100"},
      {{{"max_backoff_ms", 3600001}}, "retry.max_backoff_ms: must be an integer >= initial_backoff_ms (100)"},
      {{{"max_backoff_ms", 50}}, "retry.max_backoff_ms: must be an integer >= initial_backoff_ms (100)"},
      {{{"initial_backoff_ms", 500}, {"max_backoff_ms", 400}},
       "retry.max_backoff_ms: must be an integer >= initial_backoff_ms (500)"},
      {{{"max_backoff_ms", nullptr}}, "retry.max_backoff_ms: must be an integer"},
      {{{"foo", 1}}, "retry.foo: unknown field"},
  };
  for (const BadCase& c : cases) {
    std::vector<std::string> problems;
    RetryPolicy p = Parse(c.doc, &problems);
    ASSERT_EQ(problems.size(), 1u) << c.doc.dump();
    EXPECT_EQ(problems[0].rfind(c.message_prefix, 0), 0u) << problems[0];
    // Bad fields keep their defaults.
    RetryPolicy d;
    if (!c.doc.contains("initial_backoff_ms")) {
      EXPECT_EQ(p.initial_backoff_ms, d.initial_backoff_ms);
    }
    if (c.doc.contains("max_attempts")) {
      EXPECT_EQ(p.max_attempts, d.max_attempts);
    }
  }
}

TEST(RetryPolicyTest, ReportsEveryProblem) {
  std::vector<std::string> problems;
  Parse({{"max_attempts", 0}, {"initial_backoff_ms", -5}, {"backoff_multiplier", 0}, {"bogus", 1}, {"other", 2}},
        &problems);
  ASSERT_EQ(problems.size(), 5u);
  EXPECT_THAT(problems[0], HasSubstr("retry.bogus: unknown field"));
  EXPECT_THAT(problems[1], HasSubstr("retry.other: unknown field"));
  EXPECT_THAT(problems[2], HasSubstr("retry.max_attempts"));
  EXPECT_THAT(problems[3], HasSubstr("retry.initial_backoff_ms"));
  EXPECT_THAT(problems[4], HasSubstr("retry.backoff_multiplier"));
}

TEST(RetryPolicyTest, NotAnObject) {
  std::vector<std::string> problems;
  Parse(json::array({1}), &problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("retry: must be an object"));
  // A null problems pointer is allowed.
  RetryPolicy p = RetryPolicy::FromJson(json(3), nullptr);
  EXPECT_EQ(p.max_attempts, 3);
}

TEST(RetryPolicyTest, CapFollowsARaisedInitialBackoff) {
  std::vector<std::string> problems;
  RetryPolicy p = Parse({{"initial_backoff_ms", 20000}}, &problems);
  EXPECT_THAT(problems, IsEmpty());
  EXPECT_EQ(p.max_backoff_ms, 20000);
}

RetryPolicy Policy(int64_t initial, double mult, int64_t cap) {
  RetryPolicy p;
  p.initial_backoff_ms = initial;
  p.backoff_multiplier = mult;
  p.max_backoff_ms = cap;
  return p;
}

TEST(BackoffTest, GrowsExponentiallyWithEqualJitterBounds) {
  RetryPolicy p = Policy(100, 2.0, 100000);
  // jitter 0 gives base/2, jitter ~1 gives ~base.
  EXPECT_EQ(BackoffMs(p, 2, 0.0), 50);
  EXPECT_EQ(BackoffMs(p, 3, 0.0), 100);
  EXPECT_EQ(BackoffMs(p, 4, 0.0), 200);
  EXPECT_EQ(BackoffMs(p, 5, 0.0), 400);
  EXPECT_EQ(BackoffMs(p, 2, 0.5), 75);
  EXPECT_EQ(BackoffMs(p, 3, 0.5), 150);
  EXPECT_EQ(BackoffMs(p, 2, 0.999999), 99);
  EXPECT_EQ(BackoffMs(p, 4, 0.999999), 399);
}

TEST(BackoffTest, DelayAlwaysWithinHalfBaseAndBase) {
  RetryPolicy p = Policy(300, 1.7, 5000);
  for (int attempt = 2; attempt <= 20; ++attempt) {
    double base = std::min(5000.0, 300.0 * std::pow(1.7, attempt - 2));
    for (double j : {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.9999}) {
      int64_t d = BackoffMs(p, attempt, j);
      EXPECT_GE(d, static_cast<int64_t>(base / 2)) << attempt << " " << j;
      EXPECT_LE(d, static_cast<int64_t>(base)) << attempt << " " << j;
    }
    // Monotonic in jitter.
    EXPECT_LE(BackoffMs(p, attempt, 0.2), BackoffMs(p, attempt, 0.8));
  }
}

TEST(BackoffTest, CappedByMaxBackoff) {
  RetryPolicy p = Policy(100, 2.0, 1000);
  EXPECT_EQ(BackoffMs(p, 10, 0.0), 500);
  EXPECT_EQ(BackoffMs(p, 10, 0.999), 999);
  // Huge exponents saturate at the cap instead of overflowing.
  EXPECT_EQ(BackoffMs(p, 100000, 0.0), 500);
  RetryPolicy big = Policy(3600000, 100.0, 3600000);
  EXPECT_EQ(BackoffMs(big, 1000, 0.0), 1800000);
}

TEST(BackoffTest, MultiplierOneIsConstant) {
  RetryPolicy p = Policy(400, 1.0, 10000);
  for (int attempt = 2; attempt < 10; ++attempt) EXPECT_EQ(BackoffMs(p, attempt, 0.0), 200);
}

TEST(BackoffTest, OutOfRangeInputsAreClamped) {
  RetryPolicy p = Policy(100, 2.0, 10000);
  EXPECT_EQ(BackoffMs(p, 1, 0.0), 50);  // before the first retry: treated as 2
  EXPECT_EQ(BackoffMs(p, 0, 0.0), 50);
  EXPECT_EQ(BackoffMs(p, 2, -1.0), 50);
  EXPECT_EQ(BackoffMs(p, 2, 5.0), 100);
  EXPECT_EQ(BackoffMs(Policy(0, 2.0, 0), 5, 0.5), 0);
}

TEST(BackoffTest, RetryAfterRaisesUpToTheCap) {
  RetryPolicy p = Policy(100, 2.0, 1000);
  EXPECT_EQ(BackoffMs(p, 2, 0.0, 30), 50);        // smaller Retry-After: the backoff wins
  EXPECT_EQ(BackoffMs(p, 2, 0.0, 700), 700);      // larger: Retry-After wins
  EXPECT_EQ(BackoffMs(p, 2, 0.0, 60000), 1000);   // above max_backoff_ms: capped
  EXPECT_EQ(BackoffMs(p, 2, 0.0, std::nullopt), 50);
  EXPECT_EQ(BackoffMs(p, 2, 0.0, -5), 50);
}

TEST(ShouldRetryTest, CountsAttemptsIncludingTheFirst) {
  RetryPolicy p;
  p.max_attempts = 3;
  EXPECT_TRUE(ShouldRetry(p, 1));
  EXPECT_TRUE(ShouldRetry(p, 2));
  EXPECT_FALSE(ShouldRetry(p, 3));
  p.max_attempts = 1;
  EXPECT_FALSE(ShouldRetry(p, 1));
}

}  // namespace
}  // namespace af
