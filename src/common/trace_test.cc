// W3C traceparent parsing and formatting, and the trace_id log field.
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/trace.h"

namespace af::trace {
namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceParentTest, ParsesTheSpecificationsExample) {
  auto tp = ParseTraceParent(kValid);
  ASSERT_TRUE(tp.has_value());
  EXPECT_EQ(tp->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(tp->parent_id, "00f067aa0ba902b7");
  EXPECT_EQ(tp->flags, 1);
  EXPECT_EQ(FormatTraceParent(*tp), kValid);
  EXPECT_TRUE(ParseTraceParent(std::string(" \t") + kValid + " ").has_value()) << "optional whitespace";
}

TEST(TraceParentTest, RejectsWhatTheSpecificationRejects) {
  const char* bad[] = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",            // no flags
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",         // upper case
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",         // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",         // zero parent id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // version ff
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",   // version 00 with more
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // separator
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",         // not hex
      "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",         // version one digit
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",        // future version, no '-' after 55
  };
  for (const char* b : bad) EXPECT_FALSE(ParseTraceParent(b).has_value()) << b;
}

TEST(TraceParentTest, AFutureVersionIsReadAsVersionZero) {
  auto tp = ParseTraceParent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds");
  ASSERT_TRUE(tp.has_value());
  EXPECT_EQ(FormatTraceParent(*tp), kValid);
}

TEST(TraceParentTest, NewIdsAreValidDistinctAndChildrenKeepTheTrace) {
  std::set<std::string> spans;
  TraceParent root = NewTrace();
  for (int i = 0; i < 100; ++i) {
    std::string child = ChildTraceParent(root);
    auto parsed = ParseTraceParent(child);
    ASSERT_TRUE(parsed.has_value()) << child;
    EXPECT_EQ(parsed->trace_id, root.trace_id);
    EXPECT_EQ(parsed->flags, root.flags);
    spans.insert(parsed->parent_id);
  }
  EXPECT_EQ(spans.size(), 100u);
  EXPECT_NE(NewTraceId(), NewTraceId());
  EXPECT_EQ(NewTraceId().size(), 32u);
  EXPECT_EQ(NewSpanId().size(), 16u);
}

TEST(TraceParentTest, RunIdsWithoutATraceGetAStableTraceId) {
  EXPECT_EQ(TraceIdForRunId("run-3f2b8a4c-1d2e-4f5a-8b6c-7d8e9f0a1b2c"), "3f2b8a4c1d2e4f5a8b6c7d8e9f0a1b2c");
  std::string other = TraceIdForRunId("my-own-run-id");
  EXPECT_EQ(other, TraceIdForRunId("my-own-run-id"));
  EXPECT_NE(other, TraceIdForRunId("my-own-run-id2"));
  EXPECT_TRUE(ParseTraceParent("00-" + other + "-00f067aa0ba902b7-01").has_value()) << other;
}

TEST(LogFieldsTest, JsonLinesCarryTheTraceIdAndTextLinesToo) {
  log::Init("INFO", "json");
  testing::internal::CaptureStderr();
  log::Info("step done", {"run-1", "fetch", "echo", "4bf92f3577b34da6a3ce929d0e0e4736"});
  std::string out = testing::internal::GetCapturedStderr();
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["run_id"], "run-1");
  EXPECT_EQ(j["step_id"], "fetch");
  EXPECT_EQ(j["agent"], "echo");
  EXPECT_EQ(j["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  log::Init("INFO", "text");
  testing::internal::CaptureStderr();
  log::Info("step done", {"run-1", "", "", "4bf92f3577b34da6a3ce929d0e0e4736"});
  out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find(" run_id=run-1 trace_id=4bf92f3577b34da6a3ce929d0e0e4736"), std::string::npos) << out;
}

}  // namespace
}  // namespace af::trace
