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
// Accepts exactly what FormatIso8601 writes ("YYYY-MM-DDTHH:MM:SS.mmmZ"),
// also without the fraction or with 1..9 fraction digits; 'Z' only, fields
// in range. Its values lie in [kMinIso8601Ms, kMaxIso8601Ms].
std::optional<TimeMs> ParseIso8601(const std::string& s);

// The times FormatIso8601 writes with a four-digit year:
// 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z.
inline constexpr TimeMs kMinIso8601Ms = -62167219200000;
inline constexpr TimeMs kMaxIso8601Ms = 253402300799999;

}  // namespace af
