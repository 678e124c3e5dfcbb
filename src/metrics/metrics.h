// Metrics: counters, gauges and histograms with fixed label sets, rendered in
// the Prometheus text exposition format 0.0.4 (what `GET /metrics` serves).
//
//   metrics::Registry registry;
//   auto& steps = registry.GetCounterFamily("agentflow_step_executions_total",
//                                           "Step executions by agent and status.", {"agent", "status"});
//   steps.Labels({"echo", "COMPLETED"}).Inc();
//   std::string text = registry.Render();
//
// Hot paths pay only atomics: Counter::Inc, Gauge::Add/Set and
// Histogram::Observe are lock-free and never allocate, and Family::Labels
// finds an existing series in a lock-free open-addressing table without
// allocating (it allocates once, the first time a label set is seen).
// Rendering (a scrape) takes the registry's mutex and reads the atomics.
//
// Why not prometheus-cpp (Debian 12 packages 1.0.1): its Histogram::Observe
// takes a mutex, Family::Add takes a std::map of labels (allocations and a
// mutex per lookup), and its pull module brings civetweb as a second HTTP
// server. See docs/architecture.md, "Library choices".
//
// Thread-safety: everything here is safe from any thread. Families and their
// series live as long as the registry and are never removed, so references
// returned by Get*/Labels stay valid; callbacks may be replaced or removed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace af::metrics {

enum class Type { kCounter, kGauge, kHistogram };

// A monotonically increasing count of events.
class Counter {
 public:
  void Inc(uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
  void Sub(double d) noexcept { value_.fetch_sub(d, std::memory_order_relaxed); }
  double Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets with fixed upper bounds (inclusive, as
// Prometheus' `le`), plus their sum and count. NaN observations are ignored.
class Histogram {
 public:
  // `bounds` (strictly increasing, finite) must outlive the histogram; the
  // +Inf bucket is implicit.
  explicit Histogram(const std::vector<double>* bounds);
  void Observe(double v) noexcept;

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  // Read while observations go on: each bucket is exact, and count is the
  // +Inf bucket, so the snapshot is always self-consistent; sum may include
  // an observation whose bucket it does not yet show.
  Snapshot Snap() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative; last = +Inf
  std::atomic<double> sum_{0.0};
};

// Bucket bounds: `count` values start, start*factor, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);

namespace internal {

// One label set of a family. `values` never change after creation.
struct Series {
  virtual ~Series() = default;
  std::vector<std::string> values;
  uint64_t hash = 0;
};

// Lock-free get-or-insert of series by label values (open addressing,
// linear probing, slots only ever filled). Beyond `max_series` label sets,
// new ones share one overflow series whose label values are all
// "_overflow" (and a warning is logged once).
class SeriesTable {
 public:
  using Factory = std::function<std::unique_ptr<Series>()>;
  SeriesTable(size_t label_count, size_t max_series, Factory factory, std::string family_name);
  ~SeriesTable();
  SeriesTable(const SeriesTable&) = delete;
  SeriesTable& operator=(const SeriesTable&) = delete;

  // Throws std::invalid_argument if values.size() is not the family's label count.
  Series* Find(std::span<const std::string_view> values);
  // Every series, sorted by label values (for rendering).
  std::vector<const Series*> All() const;

 private:
  size_t label_count_;
  size_t max_series_;
  size_t mask_;  // capacity - 1 (capacity a power of two >= 2 * max_series)
  std::unique_ptr<std::atomic<Series*>[]> slots_;
  std::atomic<size_t> size_{0};
  Factory factory_;
  std::string family_name_;
  std::once_flag overflow_once_;
  std::unique_ptr<Series> overflow_owner_;    // set once, inside call_once
  std::atomic<Series*> overflow_{nullptr};  // published for All()
};

// The metric of a series: histograms get their family's bounds.
template <typename T>
struct Holder {
  explicit Holder(const std::vector<double>*) {}
  T metric;
};
template <>
struct Holder<Histogram> {
  explicit Holder(const std::vector<double>* b) : metric(b) {}
  Histogram metric;
};

}  // namespace internal

class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  Type type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends this family's lines (HELP, TYPE, samples) to `out`.
  virtual void Render(std::string& out) const = 0;

 protected:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), type_(type), label_names_(std::move(label_names)) {}

 private:
  std::string name_, help_;
  Type type_;
  std::vector<std::string> label_names_;
};

// The series of one metric name, one per label set.
template <typename T>
class Family final : public FamilyBase {
 public:
  // The series for these label values (in the order of label_names()),
  // created on first use. Lock-free; allocates only on first use.
  T& Labels(std::initializer_list<std::string_view> values) {
    return Get(std::span<const std::string_view>(values.begin(), values.size()));
  }
  T& Labels(std::span<const std::string_view> values) { return Get(values); }
  const std::vector<double>& buckets() const { return buckets_; }
  void Render(std::string& out) const override;

  // Use Registry::Get*Family.
  Family(std::string name, std::string help, Type type, std::vector<std::string> label_names,
         std::vector<double> buckets, size_t max_series);

 private:
  struct TypedSeries final : internal::Series, internal::Holder<T> {
    explicit TypedSeries(const std::vector<double>* b) : internal::Holder<T>(b) {}
  };
  T& Get(std::span<const std::string_view> values) {
    return static_cast<TypedSeries*>(table_.Find(values))->metric;
  }

  std::vector<double> buckets_;  // histograms only; before table_ (series point at it)
  internal::SeriesTable table_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// A value read at scrape time (from a callback).
struct Sample {
  std::vector<std::string> label_values;  // in the order of the family's label names
  double value = 0;
};

// Owns metric families and renders them. Get* return the existing family
// when one with the same name, type, labels (and buckets) exists, so two
// components may declare the same metric; a conflicting redeclaration, an
// invalid metric or label name, or "le" as a label is a programming error
// and throws std::invalid_argument.
class Registry {
 public:
  static constexpr size_t kDefaultMaxSeries = 1000;  // label sets per family; see SeriesTable

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  CounterFamily& GetCounterFamily(const std::string& name, const std::string& help,
                                  const std::vector<std::string>& label_names,
                                  size_t max_series = kDefaultMaxSeries);
  GaugeFamily& GetGaugeFamily(const std::string& name, const std::string& help,
                              const std::vector<std::string>& label_names, size_t max_series = kDefaultMaxSeries);
  HistogramFamily& GetHistogramFamily(const std::string& name, const std::string& help,
                                      const std::vector<std::string>& label_names, const std::vector<double>& buckets,
                                      size_t max_series = kDefaultMaxSeries);
  // Families without labels: their one series.
  Counter& GetCounter(const std::string& name, const std::string& help);
  Gauge& GetGauge(const std::string& name, const std::string& help);
  Histogram& GetHistogram(const std::string& name, const std::string& help, const std::vector<double>& buckets);

  // A counter or gauge family whose samples `fn` returns at every scrape
  // (for values another component already keeps, such as queue lag). `fn`
  // runs on the scraping thread with the registry's mutex held: it must be
  // quick and must not call the registry. Replaces an earlier callback of
  // the same name. Throws std::invalid_argument for kHistogram or a name
  // taken by a non-callback family.
  void SetCallback(const std::string& name, const std::string& help, Type type,
                   const std::vector<std::string>& label_names, std::function<std::vector<Sample>()> fn);
  // The family stays (HELP/TYPE only) but `fn` is dropped: call before what
  // it reads goes away.
  void ClearCallback(const std::string& name);

  // Every family, sorted by name, in the text format 0.0.4.
  std::string Render() const;

 private:
  FamilyBase* Find(const std::string& name, Type type, const std::vector<std::string>& label_names,
                   const std::vector<double>* buckets);
  class CallbackFamily;

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_;
};

// The Content-Type of Render()'s output.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Text-format helpers (exposed for tests).
std::string EscapeLabelValue(std::string_view v);  // \ → \\, " → \", newline → \n
std::string EscapeHelp(std::string_view v);        // \ → \\, newline → \n
std::string FormatValue(double v);                 // shortest round-trip; +Inf, -Inf, NaN
bool ValidMetricName(std::string_view name);       // [a-zA-Z_:][a-zA-Z0-9_:]*
bool ValidLabelName(std::string_view name);        // [a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed

}  // namespace af::metrics
