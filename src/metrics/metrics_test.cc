// The metrics module: values, the text format (checked by the strict parser
// in tests/support/prom_text, which these tests also exercise on broken
// input), label escaping, histogram buckets, concurrency, bounded label
// sets, and no allocation on the hot path.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "metrics/agentflow_metrics.h"
#include "metrics/metrics.h"
#include "support/prom_text.h"

// Counts allocations on the calling thread while `g_counting` is set.
namespace {
thread_local bool g_counting = false;
thread_local size_t g_allocations = 0;
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting) ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace af::metrics {
namespace {

using test::ParsePromText;
using test::PromText;

PromText MustParse(const std::string& text) {
  auto parsed = ParsePromText(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << text;
  return parsed.ok() ? *parsed : PromText{};
}

TEST(MetricsTest, CountersGaugesAndHistogramsRenderWithHelpAndType) {
  Registry r;
  r.GetCounter("jobs_total", "Jobs done.").Inc(3);
  auto& by = r.GetCounterFamily("calls_total", "Calls by agent.", {"agent", "status"});
  by.Labels({"echo", "ok"}).Inc();
  by.Labels({"echo", "ok"}).Inc();
  by.Labels({"upper", "failed"}).Inc(5);
  auto& g = r.GetGauge("in_flight", "In flight.");
  g.Add(4);
  g.Sub(1.5);
  r.GetHistogram("latency_seconds", "Latency.", {0.1, 1}).Observe(0.5);

  std::string text = r.Render();
  PromText p = MustParse(text);
  EXPECT_EQ(p.families.at("jobs_total").type, "counter");
  EXPECT_EQ(p.families.at("jobs_total").help, "Jobs done.");
  EXPECT_EQ(p.Value("jobs_total"), 3);
  EXPECT_EQ(p.Value("calls_total", {{"agent", "echo"}, {"status", "ok"}}), 2);
  EXPECT_EQ(p.Value("calls_total", {{"agent", "upper"}, {"status", "failed"}}), 5);
  EXPECT_EQ(p.families.at("in_flight").type, "gauge");
  EXPECT_EQ(p.Value("in_flight"), 2.5);
  EXPECT_EQ(p.families.at("latency_seconds").type, "histogram");
  EXPECT_EQ(p.Value("latency_seconds_count"), 1);
  EXPECT_EQ(p.Value("latency_seconds_sum"), 0.5);
  // Families come sorted by name, each HELP then TYPE then its samples.
  EXPECT_LT(text.find("# HELP calls_total"), text.find("# HELP in_flight"));
  EXPECT_LT(text.find("# HELP calls_total Calls by agent.\n# TYPE calls_total counter\n"), text.find("calls_total{"));
  EXPECT_NE(text.find("calls_total{agent=\"echo\",status=\"ok\"} 2\n"), std::string::npos) << text;
}

TEST(MetricsTest, LabelValuesAndHelpAreEscapedAndParseBackUnchanged) {
  Registry r;
  const std::string nasty = "a\\b \"quoted\"\nnext line, {braces}=x";
  r.GetCounterFamily("escaped_total", "Help with a backslash \\ and a\nnewline.", {"v"}).Labels({nasty}).Inc();
  std::string text = r.Render();
  EXPECT_NE(text.find(R"(escaped_total{v="a\\b \"quoted\"\nnext line, {braces}=x"} 1)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(# HELP escaped_total Help with a backslash \\ and a\nnewline.)"), std::string::npos) << text;
  PromText p = MustParse(text);
  EXPECT_EQ(p.Value("escaped_total", {{"v", nasty}}), 1);
  EXPECT_EQ(p.families.at("escaped_total").help, "Help with a backslash \\ and a\nnewline.");
  EXPECT_EQ(EscapeLabelValue("x\"y\\z\n"), "x\\\"y\\\\z\\n");
  EXPECT_EQ(EscapeHelp("x\"y\\z\n"), "x\"y\\\\z\\n");
}

TEST(MetricsTest, HistogramBucketsAreInclusiveCumulativeAndEndInInfEqualToCount) {
  Registry r;
  auto& h = r.GetHistogramFamily("d_seconds", "D.", {"k"}, {0.01, 0.1, 1});
  Histogram& x = h.Labels({"x"});
  for (double v : {0.01, 0.05, 0.1, 0.1, 0.5, 7.0, 100.0}) x.Observe(v);
  x.Observe(std::nan(""));  // ignored
  Histogram::Snapshot s = x.Snap();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{1, 4, 5, 7}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 0.01 + 0.05 + 0.1 + 0.1 + 0.5 + 7.0 + 100.0);

  std::string text = r.Render();
  EXPECT_NE(text.find("d_seconds_bucket{k=\"x\",le=\"0.01\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{k=\"x\",le=\"0.1\"} 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{k=\"x\",le=\"1\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_bucket{k=\"x\",le=\"+Inf\"} 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("d_seconds_count{k=\"x\"} 7\n"), std::string::npos) << text;
  PromText p = MustParse(text);
  EXPECT_EQ(p.Value("d_seconds_bucket", {{"k", "x"}, {"le", "+Inf"}}), p.Value("d_seconds_count", {{"k", "x"}}));
}

TEST(MetricsTest, ValuesFormatAsPrometheusFloats) {
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(42), "42");
  for (double v : {0.1, 1e-9, 123456789.125, 1e21, -3.5}) {
    EXPECT_EQ(std::strtod(FormatValue(v).c_str(), nullptr), v) << FormatValue(v);
  }
  Registry r;
  r.GetGauge("big", "B.").Set(1e21);
  r.GetGauge("neg_inf", "N.").Set(-INFINITY);
  PromText p = MustParse(r.Render());
  EXPECT_EQ(p.Value("big"), 1e21);
  EXPECT_EQ(p.Value("neg_inf"), -INFINITY);
}

TEST(MetricsTest, RegistryReturnsTheSameFamilyAndRefusesConflictsAndBadNames) {
  Registry r;
  auto& a = r.GetCounterFamily("x_total", "X.", {"a"});
  auto& b = r.GetCounterFamily("x_total", "X again.", {"a"});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&r.GetHistogramFamily("h", "H.", {}, {1, 2}), &r.GetHistogramFamily("h", "H.", {}, {1, 2}));
  EXPECT_THROW(r.GetCounterFamily("x_total", "X.", {"b"}), std::invalid_argument);
  EXPECT_THROW(r.GetGaugeFamily("x_total", "X.", {"a"}), std::invalid_argument);
  EXPECT_THROW(r.GetHistogramFamily("h", "H.", {}, {1, 3}), std::invalid_argument);
  EXPECT_THROW(r.GetCounter("1bad", "B."), std::invalid_argument);
  EXPECT_THROW(r.GetCounter("bad-name", "B."), std::invalid_argument);
  EXPECT_THROW(r.GetCounterFamily("ok_total", "O.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.GetCounterFamily("ok_total", "O.", {"has space"}), std::invalid_argument);
  EXPECT_THROW(r.GetHistogramFamily("h2", "H.", {"le"}, {1}), std::invalid_argument);
  EXPECT_THROW(r.GetHistogramFamily("h3", "H.", {}, {2, 1}), std::invalid_argument);
  EXPECT_THROW(a.Labels({"one", "two"}), std::invalid_argument);
  EXPECT_NO_THROW(r.GetCounter("ns:sub_total", "Colons are allowed in metric names."));
}

TEST(MetricsTest, EmptyLabelledFamiliesRenderOnlyHelpAndType) {
  Registry r;
  r.GetCounterFamily("nothing_yet_total", "N.", {"agent"});
  std::string text = r.Render();
  EXPECT_EQ(text, "# HELP nothing_yet_total N.\n# TYPE nothing_yet_total counter\n");
  PromText p = MustParse(text);
  EXPECT_TRUE(p.families.at("nothing_yet_total").samples.empty());
}

TEST(MetricsTest, CallbacksAreReadAtRenderSortedAndCanBeCleared) {
  Registry r;
  int64_t lag = 7;
  r.SetCallback("lag_messages", "Lag.", Type::kGauge, {"topic"}, [&lag] {
    return std::vector<Sample>{{{"t2"}, static_cast<double>(lag)}, {{"t1"}, 1}, {{"bad", "arity"}, 9}};
  });
  PromText p = MustParse(r.Render());
  EXPECT_EQ(p.Value("lag_messages", {{"topic", "t2"}}), 7);
  EXPECT_EQ(p.Value("lag_messages", {{"topic", "t1"}}), 1);
  EXPECT_EQ(p.families.at("lag_messages").samples.size(), 2u) << "a sample with the wrong label count is dropped";
  lag = 11;
  EXPECT_EQ(MustParse(r.Render()).Value("lag_messages", {{"topic", "t2"}}), 11);
  r.ClearCallback("lag_messages");
  EXPECT_EQ(r.Render(), "# HELP lag_messages Lag.\n# TYPE lag_messages gauge\n");
  EXPECT_THROW(r.SetCallback("h", "H.", Type::kHistogram, {}, nullptr), std::invalid_argument);
  r.GetCounter("plain_total", "P.");
  EXPECT_THROW(r.SetCallback("plain_total", "P.", Type::kCounter, {}, nullptr), std::invalid_argument);
}

TEST(MetricsTest, ConcurrentUpdatesAndNewLabelSetsLoseNothingAndCreateNoDuplicates) {
  Registry r;
  auto& c = r.GetCounterFamily("c_total", "C.", {"agent"});
  auto& h = r.GetHistogramFamily("h_seconds", "H.", {"agent"}, {0.5});
  auto& g = r.GetGauge("g", "G.");
  constexpr int kThreads = 8, kIters = 20000, kAgents = 50;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kIters; ++i) {
        std::string agent = "agent" + std::to_string((i + t) % kAgents);
        c.Labels({agent}).Inc();
        h.Labels({agent}).Observe(i % 2 == 0 ? 0.25 : 1.0);
        g.Add(1);
        g.Sub(1);
      }
    });
  }
  go = true;
  // Scrapes while the counters move must always parse.
  for (int i = 0; i < 20; ++i) MustParse(r.Render());
  for (auto& th : threads) th.join();
  PromText p = MustParse(r.Render());
  EXPECT_EQ(p.Sum("c_total"), kThreads * kIters);
  EXPECT_EQ(p.families.at("c_total").samples.size(), static_cast<size_t>(kAgents));
  EXPECT_EQ(p.Sum("h_seconds_count"), kThreads * kIters);
  EXPECT_EQ(p.Sum("h_seconds_bucket", {{"le", "0.5"}}), kThreads * kIters / 2);
  EXPECT_EQ(p.Value("g"), 0);
}

TEST(MetricsTest, LabelSetsBeyondTheLimitShareOneOverflowSeries) {
  Registry r;
  auto& f = r.GetCounterFamily("bounded_total", "B.", {"id"}, /*max_series=*/3);
  for (int i = 0; i < 10; ++i) f.Labels({"id" + std::to_string(i)}).Inc();
  f.Labels({"id0"}).Inc();  // an existing series still gets its own count
  PromText p = MustParse(r.Render());
  EXPECT_EQ(p.families.at("bounded_total").samples.size(), 4u);
  EXPECT_EQ(p.Value("bounded_total", {{"id", "id0"}}), 2);
  EXPECT_EQ(p.Value("bounded_total", {{"id", "_overflow"}}), 7);
  EXPECT_EQ(p.Sum("bounded_total"), 11);
}

TEST(MetricsTest, HotPathUpdatesOfExistingSeriesDoNotAllocate) {
  Registry r;
  ExecutorMetrics m(r);
  HttpMetrics http(r);
  // First use creates the series (allocates); later uses must not.
  m.step_executions.Labels({"echo", "COMPLETED"}).Inc();
  m.step_duration.Labels({"echo", "COMPLETED"}).Observe(0.01);
  http.Observe("GET", "/api/v1/runs/{run_id}", 200, 0.001);
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < 1000; ++i) {
    m.step_executions.Labels({"echo", "COMPLETED"}).Inc();
    m.step_duration.Labels({"echo", "COMPLETED"}).Observe(0.01 * i);
    m.runs_in_flight.Add(1);
    m.runs_started.Inc();
    http.Observe("GET", "/api/v1/runs/{run_id}", 200, 0.001);
  }
  g_counting = false;
  EXPECT_EQ(g_allocations, 0u);
  EXPECT_EQ(m.step_executions.Labels({"echo", "COMPLETED"}).Value(), 1001u);
}

TEST(MetricsTest, HttpMetricsBoundTheirLabelValues) {
  Registry r;
  HttpMetrics http(r);
  http.Observe("GET", "/api/v1/runs/{run_id}", 200, 0.002);
  http.Observe("BREW", "", 404, 0.001);
  http.Observe("GET", "", 404, 0.001);
  PromText p = MustParse(r.Render());
  EXPECT_EQ(p.Value("agentflow_http_request_duration_seconds_count",
                    {{"method", "GET"}, {"route", "/api/v1/runs/{run_id}"}, {"status", "200"}}),
            1);
  EXPECT_EQ(p.Value("agentflow_http_request_duration_seconds_count",
                    {{"method", "other"}, {"route", "unmatched"}, {"status", "404"}}),
            1);
  EXPECT_EQ(p.Value("agentflow_http_request_duration_seconds_count",
                    {{"method", "GET"}, {"route", "unmatched"}, {"status", "404"}}),
            1);
}

TEST(MetricsTest, TheAgentflowCatalogueRendersAndParses) {
  Registry r;
  ExecutorMetrics e(r);
  ApiRunMetrics a(r);
  HttpMetrics h(r);
  EXPECT_EQ(&e.runs_finished, &a.runs_finished) << "one family, declared by both";
  e.runs_finished.Labels({"COMPLETED"}).Inc();
  a.runs_finished.Labels({"CANCELLED"}).Inc();
  e.run_duration.Labels({"COMPLETED"}).Observe(1.5);
  e.agent_call_errors.Labels({"fail", "retryable"}).Inc();
  PromText p = MustParse(r.Render());
  for (const auto& [name, f] : p.families) {
    EXPECT_EQ(name.rfind("agentflow_", 0), 0u) << name;
    EXPECT_FALSE(f.help.empty()) << name;
    if (f.type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (f.type == "histogram") {
      EXPECT_TRUE(name.ends_with("_seconds")) << name;
    }
  }
  EXPECT_EQ(p.Sum("agentflow_runs_finished_total"), 2);
}

// ---- the test parser itself must reject what a scraper would reject ----

struct Bad {
  const char* why;
  const char* text;
};

TEST(PromTextParserTest, RejectsMalformedExposition) {
  const Bad cases[] = {
      {"no trailing newline", "# TYPE a counter\na 1"},
      {"sample without TYPE", "a 1\n"},
      {"bad escape in a label value", "# TYPE a counter\na{x=\"\\t\"} 1\n"},
      {"unterminated label value", "# TYPE a counter\na{x=\"1} 1\n"},
      {"invalid metric name", "# TYPE 1a counter\n1a 1\n"},
      {"invalid label name", "# TYPE a counter\na{1x=\"1\"} 1\n"},
      {"bad value", "# TYPE a counter\na one\n"},
      {"negative counter", "# TYPE a counter\na -1\n"},
      {"duplicate series", "# TYPE a counter\na{x=\"1\"} 1\na{x=\"1\"} 2\n"},
      {"duplicate label", "# TYPE a counter\na{x=\"1\",x=\"2\"} 1\n"},
      {"non-contiguous family", "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n"},
      {"second TYPE", "# TYPE a gauge\n# TYPE a gauge\na 1\n"},
      {"unknown type", "# TYPE a thing\na 1\n"},
      {"bad HELP escape", "# HELP a bad \\q\n# TYPE a gauge\na 1\n"},
      {"buckets not increasing",
       "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
      {"bucket counts decrease",
       "# TYPE h histogram\nh_bucket{le=\"0.5\"} 2\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"},
      {"no +Inf bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
      {"+Inf differs from _count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"},
      {"no _sum", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n"},
      {"le on _count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count{le=\"1\"} 2\n"},
  };
  for (const Bad& b : cases) {
    auto parsed = ParsePromText(b.text);
    EXPECT_FALSE(parsed.ok()) << b.why << ":\n" << b.text;
  }
}

TEST(PromTextParserTest, AcceptsTheGrammarsOptionalParts) {
  auto parsed = ParsePromText(
      "# a free comment\n\n# HELP a Some help.\n# TYPE a gauge\na{x=\"1\",} 1.5e3 1700000000000\na{x=\"2\"} -Inf\n"
      "# TYPE b untyped\nb NaN\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->Value("a", {{"x", "1"}}), 1500);
  EXPECT_EQ(parsed->Value("a", {{"x", "2"}}), -INFINITY);
  EXPECT_TRUE(std::isnan(*parsed->Value("b")));
}

}  // namespace
}  // namespace af::metrics
