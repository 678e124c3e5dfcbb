// A strict parser of the Prometheus text exposition format 0.0.4, written
// for the tests (not used by agentflow itself): the metrics unit tests, the
// end-to-end and the distributed tests parse every /metrics page with it.
//
// Beyond the grammar (HELP/TYPE comments, metric and label names, label
// value escapes \\ \" \n, float values, optional timestamps) it checks what
// a scraper relies on:
//  - every sample belongs to a family declared by # TYPE before it, and the
//    lines of a family are contiguous; HELP and TYPE at most once each;
//  - no series (name + label set) appears twice; counters are >= 0;
//  - histograms: per label set, `le` buckets in strictly increasing order
//    with non-decreasing counts, the last one le="+Inf", _count equal to
//    the +Inf bucket, and a _sum.
//
// Thread-safety: plain values.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace af::test {

using PromLabels = std::map<std::string, std::string>;

struct PromSample {
  std::string name;  // as written: "x_bucket", "x_sum", ...
  PromLabels labels;
  double value = 0;
};

struct PromFamily {
  std::string name;
  std::string type;  // counter, gauge, histogram, summary, untyped
  std::string help;  // unescaped
  std::vector<PromSample> samples;
};

struct PromText {
  std::map<std::string, PromFamily> families;

  // The value of the sample `name` whose labels are exactly `labels`.
  std::optional<double> Value(const std::string& name, const PromLabels& labels = {}) const;
  // The sum of the samples `name` whose labels include every pair of `match`
  // (0 if there are none).
  double Sum(const std::string& name, const PromLabels& match = {}) const;
  // The family a sample name belongs to (x for x_bucket of histogram x), or null.
  const PromFamily* FamilyOf(const std::string& sample_name) const;
};

// InvalidArgument naming the line (1-based) and what is wrong.
Result<PromText> ParsePromText(std::string_view text);

}  // namespace af::test
