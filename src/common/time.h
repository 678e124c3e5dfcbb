// Wall-clock timestamps as stored and shown: milliseconds since the Unix epoch
// internally, ISO-8601 UTC ("2026-11-26T12:00:00.123Z") on the wire.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace af {

using TimeMs = int64_t;  // milliseconds since 1970-01-01T00:00:00Z

TimeMs NowMs();
std::string FormatIso8601(TimeMs t);
// Accepts what FormatIso8601 writes (with or without milliseconds, 'Z' only).
std::optional<TimeMs> ParseIso8601(const std::string& s);

}  // namespace af
