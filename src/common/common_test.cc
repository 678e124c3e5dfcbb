#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/status.h"
#include "common/time.h"

namespace af {
namespace {

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = Status::NotFound("run x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.ToString(), "NOT_FOUND: run x");
  EXPECT_TRUE(Status::Unavailable("x").IsRetryable());
  EXPECT_FALSE(Status::InvalidArgument("x").IsRetryable());
}

TEST(ResultTest, ValueOrStatus) {
  Result<int> r = 5;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 5);
  Result<int> e = Status::Internal("boom");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(), "boom");
  Result<int> bad = Status::Ok();
  EXPECT_FALSE(bad.ok()) << "a Result cannot be built from OK without a value";
}

TEST(TimeTest, RoundTrip) {
  TimeMs t = 1790000000123;
  std::string s = FormatIso8601(t);
  EXPECT_EQ(s, "2026-09-21T14:13:20.123Z");
  EXPECT_EQ(ParseIso8601(s), t);
  EXPECT_EQ(ParseIso8601("2026-09-21T14:13:20Z"), 1790000000000);
  EXPECT_FALSE(ParseIso8601("yesterday").has_value());
}

// ParseIso8601 reads exactly what FormatIso8601 writes, so every value it
// accepts formats back to text it reads again (tests/fuzz found sscanf's
// leniency: "9999-12-31T23:59:60Z" became year 10000, unreadable).
TEST(TimeTest, ParseIsStrictAndItsRangeRoundTrips) {
  for (const char* bad : {"9999-12-31T23:59:60Z", "-999--9-01T00:00:00Z", "2026-13-01T00:00:00Z",
                          "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-1-2T3:4:5Z",
                          " 2026-11-26T12:00:30Z", "+026-11-26T12:00:30Z", "2026-11-26T24:00:00Z",
                          "2026-11-26T12:00:30.250Zjunk", "2026-11-26T12:00:30.Z", "2026-11-26T12:00:30",
                          "2026-11-26t12:00:30Z", "2026-11-26T12:00:30.1234567890Z", ""}) {
    EXPECT_FALSE(ParseIso8601(bad).has_value()) << bad;
  }
  EXPECT_EQ(ParseIso8601("2024-02-29T00:00:00Z"), 1709164800000);
  EXPECT_EQ(ParseIso8601("2026-09-21T14:13:20.5Z"), 1790000000500) << "a fraction is not a count of ms";
  EXPECT_EQ(ParseIso8601("2026-09-21T14:13:20.123456Z"), 1790000000123);
  EXPECT_EQ(ParseIso8601("0000-01-01T00:00:00.000Z"), kMinIso8601Ms);
  EXPECT_EQ(ParseIso8601("9999-12-31T23:59:59.999Z"), kMaxIso8601Ms);
  for (TimeMs t : {kMinIso8601Ms, kMaxIso8601Ms, TimeMs{0}, TimeMs{-1}}) {
    EXPECT_EQ(ParseIso8601(FormatIso8601(t)), t) << FormatIso8601(t);
  }
}

// FormatIso8601 computes the calendar itself within the four-digit years.
// The reference is the standard library's proleptic Gregorian calendar
// (what gmtime_r follows too), not FormatIso8601's own fallback.
std::string FormatByChrono(TimeMs t) {
  using namespace std::chrono;
  const sys_time<milliseconds> tp{milliseconds{t}};
  const sys_days day = floor<days>(tp);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{tp - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()), static_cast<int>(hms.subseconds().count()));
  return buf;
}

TEST(TimeTest, FormatAgreesWithTheCalendarAcrossItsRange) {
  std::vector<TimeMs> times = {kMinIso8601Ms, kMinIso8601Ms + 1, kMaxIso8601Ms, kMaxIso8601Ms - 1, 0, -1, 1,
                               951782400000 /* 2000-02-29 */, 951868799999, 4107542400000 /* 2100-03-01 */,
                               -2203891200000 /* 1900-02-28 */, 1790000000123,
                               // just outside, through the fallback: "-001-12-31T…", "10000-01-01T…"
                               kMinIso8601Ms - 1, kMaxIso8601Ms + 1};
  // Every day boundary, and a point inside the day, across 1600..2400 (leap
  // rules of 4, 100 and 400 years), then random times over the whole range.
  for (TimeMs day = -11676096000000; day < 13569465600000; day += 86400000) {
    times.push_back(day);
    times.push_back(day - 1);
    times.push_back(day + 45296789);
  }
  std::mt19937_64 rng(20261129);
  std::uniform_int_distribution<TimeMs> any(kMinIso8601Ms, kMaxIso8601Ms);
  for (int i = 0; i < 200000; ++i) times.push_back(any(rng));
  int mismatches = 0;
  for (TimeMs t : times) {
    if (FormatIso8601(t) != FormatByChrono(t) && ++mismatches <= 5) {
      ADD_FAILURE() << t << ": " << FormatIso8601(t) << " against " << FormatByChrono(t);
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << times.size();
}

TEST(IdsTest, UuidShapeAndValidation) {
  std::string u = NewUuid();
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_NE(NewUuid(), u);
  EXPECT_TRUE(IsValidId(NewRunId()));
  EXPECT_FALSE(IsValidId(""));
  EXPECT_FALSE(IsValidId(".."));
  EXPECT_FALSE(IsValidId("../etc/passwd"));
  EXPECT_FALSE(IsValidId(std::string(129, 'a')));
  EXPECT_FALSE(IsValidId("a b"));
}

TEST(IdsTest, KafkaTopicNames) {
  EXPECT_TRUE(IsValidKafkaTopic("agent.echo.requests"));
  EXPECT_TRUE(IsValidKafkaTopic("a_b-C.9"));
  EXPECT_TRUE(IsValidKafkaTopic(std::string(249, 't')));
  EXPECT_FALSE(IsValidKafkaTopic(std::string(250, 't')));
  EXPECT_FALSE(IsValidKafkaTopic(""));
  EXPECT_FALSE(IsValidKafkaTopic(".."));
  EXPECT_FALSE(IsValidKafkaTopic("a:b"));  // ':' is valid in ids, not in topics
  EXPECT_FALSE(IsValidKafkaTopic("a/b"));
}

}  // namespace
}  // namespace af

#include "common/json_limits.h"

namespace af {
namespace {

TEST(JsonLimitsTest, CountsNestingOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth("{}"), 1);
  EXPECT_EQ(JsonNestingDepth(R"({"a": [1, {"b": []}]})"), 4);
  EXPECT_EQ(JsonNestingDepth(R"({"a": "[[[[{{{{", "b": "\"[["})"), 1);
  EXPECT_EQ(JsonNestingDepth("5"), 0);
  std::string deep(100000, '[');
  EXPECT_GT(JsonNestingDepth(deep), kMaxJsonDepth);
  EXPECT_FALSE(CheckJsonDepth(deep, "request body").ok());
  EXPECT_EQ(CheckJsonDepth(deep, "request body").code(), Code::kInvalidArgument);
  std::string ok_depth = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(CheckJsonDepth(ok_depth, "x").ok());
  EXPECT_FALSE(CheckJsonDepth("[" + ok_depth + "]", "x").ok());
}

}  // namespace
}  // namespace af

namespace af {
namespace {

TEST(JsonLimitsTest, SerializedSizeIsTheLengthOfDump) {
  const nlohmann::json docs[] = {
      nullptr,
      42,
      -1.5e300,
      "h\xc3\xa9llo \"quoted\" \\ \n\t\x01",
      nlohmann::json::parse(R"({"a": [1, 2.5, true, null, {"b": "c"}], "d": {}, "e": []})"),
      nlohmann::json::array({std::string(100000, 'x'), nlohmann::json::object()}),
  };
  for (const auto& j : docs) EXPECT_EQ(JsonSerializedSize(j), j.dump().size()) << j.dump().substr(0, 80);
  // Invalid UTF-8 counts as its replacement, as the API prints it.
  nlohmann::json bad = std::string("a\xff" "b");
  EXPECT_EQ(JsonSerializedSize(bad), bad.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size());
}

}  // namespace
}  // namespace af
