#include "cli/output.h"

#include <algorithm>
#include <cstdio>

#include "common/json_text.h"
#include "common/time.h"

namespace af::cli {

void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto print_row = [&](const std::vector<std::string>& r) {
    std::string line;
    for (size_t i = 0; i < width.size(); ++i) {
      std::string cell = i < r.size() ? r[i] : "";
      line += cell;
      if (i + 1 < width.size()) line += std::string(width[i] - cell.size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  };
  print_row(header);
  for (const auto& r : rows) print_row(r);
}

std::string FormatDuration(std::optional<int64_t> ms) {
  if (!ms) return "-";
  char buf[64];
  if (*ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(*ms));
  } else if (*ms < 60000) {
    std::snprintf(buf, sizeof buf, "%.2fs", *ms / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(*ms / 60000),
                  static_cast<long long>((*ms / 1000) % 60));
  }
  return buf;
}

std::optional<int64_t> JsonDurationMs(const json& from, const json& to) {
  if (!from.is_string()) return std::nullopt;
  auto a = ParseIso8601(from.get<std::string>());
  std::optional<TimeMs> b = to.is_string() ? ParseIso8601(to.get<std::string>()) : std::optional<TimeMs>(NowMs());
  if (!a || !b) return std::nullopt;
  return *b - *a;
}

std::string Cell(const json& v, size_t max_width) {
  std::string s = v.is_null() ? std::string("-") : v.is_string() ? v.get<std::string>() : JsonText(v);
  std::replace(s.begin(), s.end(), '\n', ' ');
  if (s.size() > max_width && max_width > 3) {
    s.resize(max_width - 3);
    s.append("...");
  }
  return s;
}

}  // namespace af::cli
