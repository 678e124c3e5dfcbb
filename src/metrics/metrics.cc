#include "metrics/metrics.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "common/log.h"

namespace af::metrics {

// ---------------------------------------------------------------- Histogram

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) noexcept {
  if (std::isnan(v)) return;
  // First bound >= v: `le` is inclusive. Past the last bound: +Inf.
  auto it = std::lower_bound(bounds_->begin(), bounds_->end(), v);
  size_t idx = static_cast<size_t>(it - bounds_->begin());
  counts_[idx].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot s;
  s.cumulative.resize(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.count = total;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (start <= 0 || factor <= 1 || count < 1) {
    throw std::invalid_argument("ExponentialBuckets needs start > 0, factor > 1, count >= 1");
  }
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

// ---------------------------------------------------------------- text format

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

namespace {

std::string FormatUint(uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"` without the closing brace (so `le` can follow), or "" when
// there are no labels and no `le`.
void AppendLabels(std::string& out, const std::vector<std::string>& names, const std::vector<std::string>& values,
                  const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += EscapeLabelValue(values[i]);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

void AppendHeader(std::string& out, const FamilyBase& f) {
  out += "# HELP ";
  out += f.name();
  out += ' ';
  out += EscapeHelp(f.help());
  out += "\n# TYPE ";
  out += f.name();
  out += ' ';
  out += TypeName(f.type());
  out += '\n';
}

uint64_t HashValues(std::span<const std::string_view> values) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (std::string_view v : values) {
    for (char c : v) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // separator: ("ab","") differs from ("a","b")
    h *= 1099511628211ull;
  }
  return h;
}

bool SameValues(const internal::Series& s, std::span<const std::string_view> values) {
  if (s.values.size() != values.size()) return false;
  for (size_t i = 0; i < values.size(); ++i) {
    if (s.values[i] != values[i]) return false;
  }
  return true;
}

}  // namespace

bool ValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = IsAlpha(c) || c == '_' || c == ':' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = IsAlpha(c) || c == '_' || (i > 0 && IsDigit(c));
    if (!ok) return false;
  }
  return true;
}

// ---------------------------------------------------------------- SeriesTable

namespace internal {

SeriesTable::SeriesTable(size_t label_count, size_t max_series, Factory factory, std::string family_name)
    : label_count_(label_count),
      max_series_(std::max<size_t>(1, max_series)),
      factory_(std::move(factory)),
      family_name_(std::move(family_name)) {
  size_t capacity = std::bit_ceil(2 * max_series_);
  mask_ = capacity - 1;
  slots_.reset(new std::atomic<Series*>[capacity]);
  for (size_t i = 0; i < capacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
}

SeriesTable::~SeriesTable() {
  for (size_t i = 0; i <= mask_; ++i) delete slots_[i].load(std::memory_order_relaxed);
}

Series* SeriesTable::Find(std::span<const std::string_view> values) {
  if (values.size() != label_count_) {
    throw std::invalid_argument("metric " + family_name_ + " takes " + std::to_string(label_count_) +
                                " label value(s), got " + std::to_string(values.size()));
  }
  const uint64_t hash = HashValues(values);
  std::unique_ptr<Series> fresh;  // made at most once, only for a new label set
  bool full = false;
  for (size_t probe = 0, i = hash & mask_; probe <= mask_ && !full; ++probe, i = (i + 1) & mask_) {
    Series* s = slots_[i].load(std::memory_order_acquire);
    while (s == nullptr) {
      // The end of the probe sequence: the label set is new. Insert it here.
      if (size_.load(std::memory_order_relaxed) >= max_series_) {
        full = true;
        break;
      }
      if (!fresh) {
        fresh = factory_();
        fresh->values.assign(values.begin(), values.end());
        fresh->hash = hash;
      }
      Series* expected = nullptr;
      if (slots_[i].compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        size_.fetch_add(1, std::memory_order_relaxed);
        return fresh.release();
      }
      s = expected;  // another thread filled the slot first: look at what it put there
    }
    if (s != nullptr && s->hash == hash && SameValues(*s, values)) return s;
  }
  std::call_once(overflow_once_, [this] {
    overflow_owner_ = factory_();
    overflow_owner_->values.assign(label_count_, "_overflow");
    overflow_.store(overflow_owner_.get(), std::memory_order_release);
    log::Warn("metric " + family_name_ + " has more than " + std::to_string(max_series_) +
              " label sets; further ones are counted under label values \"_overflow\"");
  });
  return overflow_owner_.get();
}

std::vector<const Series*> SeriesTable::All() const {
  std::vector<const Series*> out;
  for (size_t i = 0; i <= mask_; ++i) {
    if (const Series* s = slots_[i].load(std::memory_order_acquire)) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const Series* a, const Series* b) { return a->values < b->values; });
  if (const Series* o = overflow_.load(std::memory_order_acquire)) out.push_back(o);
  return out;
}

}  // namespace internal

// ---------------------------------------------------------------- Family

namespace {

void AppendSeries(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& values, const Counter& c) {
  out += name;
  AppendLabels(out, label_names, values);
  out += ' ';
  out += FormatUint(c.Value());
  out += '\n';
}

void AppendSeries(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& values, const Gauge& g) {
  out += name;
  AppendLabels(out, label_names, values);
  out += ' ';
  out += FormatValue(g.Value());
  out += '\n';
}

void AppendSeries(std::string& out, const std::string& name, const std::vector<std::string>& label_names,
                  const std::vector<std::string>& values, const Histogram& h) {
  Histogram::Snapshot snap = h.Snap();
  const std::vector<double>& bounds = h.bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    std::string le = i < bounds.size() ? FormatValue(bounds[i]) : "+Inf";
    out += name;
    out += "_bucket";
    AppendLabels(out, label_names, values, &le);
    out += ' ';
    out += FormatUint(snap.cumulative[i]);
    out += '\n';
  }
  out += name;
  out += "_sum";
  AppendLabels(out, label_names, values);
  out += ' ';
  out += FormatValue(snap.sum);
  out += '\n';
  out += name;
  out += "_count";
  AppendLabels(out, label_names, values);
  out += ' ';
  out += FormatUint(snap.count);
  out += '\n';
}

}  // namespace

template <typename T>
Family<T>::Family(std::string name, std::string help, Type type, std::vector<std::string> label_names,
                  std::vector<double> buckets, size_t max_series)
    : FamilyBase(name, std::move(help), type, label_names),
      buckets_(std::move(buckets)),
      table_(label_names.size(), max_series, [this] { return std::make_unique<TypedSeries>(&buckets_); },
             name) {}

template <typename T>
void Family<T>::Render(std::string& out) const {
  AppendHeader(out, *this);
  for (const internal::Series* s : table_.All()) {
    AppendSeries(out, name(), label_names(), s->values, static_cast<const TypedSeries*>(s)->metric);
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------- Registry

class Registry::CallbackFamily final : public FamilyBase {
 public:
  CallbackFamily(std::string name, std::string help, Type type, std::vector<std::string> label_names)
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)) {}
  std::function<std::vector<Sample>()> fn;  // guarded by the registry's mutex

  void Render(std::string& out) const override {
    AppendHeader(out, *this);
    if (!fn) return;
    std::vector<Sample> samples;
    try {
      samples = fn();
    } catch (const std::exception& e) {
      log::Warn("metric " + name() + ": its callback threw: " + e.what());
      return;
    }
    std::sort(samples.begin(), samples.end(),
              [](const Sample& a, const Sample& b) { return a.label_values < b.label_values; });
    const std::vector<std::string>* prev = nullptr;
    for (const Sample& s : samples) {
      if (s.label_values.size() != label_names().size()) continue;  // a bug in the callback: skip, do not break the page
      if (prev != nullptr && *prev == s.label_values) continue;    // duplicate series
      prev = &s.label_values;
      out += name();
      AppendLabels(out, label_names(), s.label_values);
      out += ' ';
      out += FormatValue(s.value);
      out += '\n';
    }
  }
};

Registry::Registry() = default;
Registry::~Registry() = default;

FamilyBase* Registry::Find(const std::string& name, Type type, const std::vector<std::string>& label_names,
                           const std::vector<double>* buckets) {
  if (!ValidMetricName(name)) throw std::invalid_argument("invalid metric name '" + name + "'");
  for (const std::string& l : label_names) {
    if (!ValidLabelName(l)) throw std::invalid_argument("metric " + name + ": invalid label name '" + l + "'");
    if (type == Type::kHistogram && l == "le") {
      throw std::invalid_argument("metric " + name + ": 'le' is reserved for histogram buckets");
    }
  }
  if (buckets != nullptr) {
    for (size_t i = 0; i < buckets->size(); ++i) {
      if (!std::isfinite((*buckets)[i]) || (i > 0 && (*buckets)[i] <= (*buckets)[i - 1])) {
        throw std::invalid_argument("metric " + name + ": buckets must be finite and strictly increasing");
      }
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) return nullptr;
  FamilyBase* f = it->second.get();
  bool same = f->type() == type && f->label_names() == label_names;
  if (same && type == Type::kHistogram && buckets != nullptr) {
    same = static_cast<HistogramFamily*>(f)->buckets() == *buckets;
  }
  if (!same) throw std::invalid_argument("metric " + name + " is already registered with another type or labels");
  return f;
}

CounterFamily& Registry::GetCounterFamily(const std::string& name, const std::string& help,
                                          const std::vector<std::string>& label_names, size_t max_series) {
  std::lock_guard lock(mu_);
  if (FamilyBase* f = Find(name, Type::kCounter, label_names, nullptr)) {
    if (auto* c = dynamic_cast<CounterFamily*>(f)) return *c;
    throw std::invalid_argument("metric " + name + " is a callback family");
  }
  auto fam = std::make_unique<CounterFamily>(name, help, Type::kCounter, label_names, std::vector<double>{},
                                             max_series);
  CounterFamily& ref = *fam;
  families_.emplace(name, std::move(fam));
  return ref;
}

GaugeFamily& Registry::GetGaugeFamily(const std::string& name, const std::string& help,
                                      const std::vector<std::string>& label_names, size_t max_series) {
  std::lock_guard lock(mu_);
  if (FamilyBase* f = Find(name, Type::kGauge, label_names, nullptr)) {
    if (auto* g = dynamic_cast<GaugeFamily*>(f)) return *g;
    throw std::invalid_argument("metric " + name + " is a callback family");
  }
  auto fam = std::make_unique<GaugeFamily>(name, help, Type::kGauge, label_names, std::vector<double>{}, max_series);
  GaugeFamily& ref = *fam;
  families_.emplace(name, std::move(fam));
  return ref;
}

HistogramFamily& Registry::GetHistogramFamily(const std::string& name, const std::string& help,
                                              const std::vector<std::string>& label_names,
                                              const std::vector<double>& buckets, size_t max_series) {
  std::lock_guard lock(mu_);
  if (FamilyBase* f = Find(name, Type::kHistogram, label_names, &buckets)) return *static_cast<HistogramFamily*>(f);
  auto fam = std::make_unique<HistogramFamily>(name, help, Type::kHistogram, label_names, buckets, max_series);
  HistogramFamily& ref = *fam;
  families_.emplace(name, std::move(fam));
  return ref;
}

Counter& Registry::GetCounter(const std::string& name, const std::string& help) {
  return GetCounterFamily(name, help, {}).Labels({});
}

Gauge& Registry::GetGauge(const std::string& name, const std::string& help) {
  return GetGaugeFamily(name, help, {}).Labels({});
}

Histogram& Registry::GetHistogram(const std::string& name, const std::string& help,
                                  const std::vector<double>& buckets) {
  return GetHistogramFamily(name, help, {}, buckets).Labels({});
}

void Registry::SetCallback(const std::string& name, const std::string& help, Type type,
                           const std::vector<std::string>& label_names, std::function<std::vector<Sample>()> fn) {
  if (type == Type::kHistogram) throw std::invalid_argument("metric " + name + ": callbacks are counters or gauges");
  std::lock_guard lock(mu_);
  FamilyBase* f = Find(name, type, label_names, nullptr);
  if (f == nullptr) {
    auto fam = std::make_unique<CallbackFamily>(name, help, type, label_names);
    f = fam.get();
    families_.emplace(name, std::move(fam));
  }
  auto* cb = dynamic_cast<CallbackFamily*>(f);
  if (cb == nullptr) throw std::invalid_argument("metric " + name + " is already registered without a callback");
  cb->fn = std::move(fn);
}

void Registry::ClearCallback(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  if (auto* cb = dynamic_cast<CallbackFamily*>(it->second.get())) cb->fn = nullptr;
}

std::string Registry::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(4096);
  for (const auto& [name, family] : families_) family->Render(out);
  return out;
}

}  // namespace af::metrics
