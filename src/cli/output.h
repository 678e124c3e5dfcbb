// Human-readable output for the CLI: aligned tables and durations.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model/types.h"

namespace af::cli {

// Prints rows under a header, columns padded to the widest cell.
void PrintTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

// "1.23s", "340ms", "2m03s"; "-" when unknown.
std::string FormatDuration(std::optional<int64_t> ms);

// Milliseconds between two ISO-8601 JSON timestamps (null/absent → nullopt).
std::optional<int64_t> JsonDurationMs(const json& from, const json& to);

// A JSON value as short text for a table cell (strings raw, null as "-").
std::string Cell(const json& v, size_t max_width = 60);

}  // namespace af::cli
