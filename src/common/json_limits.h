// Guards for JSON from outside the process (request bodies, queue messages,
// agent replies). nlohmann-json copies and prints values recursively, so a
// document nested 100,000 levels deep would overflow the stack: check the
// nesting of the text before parsing it.
// Pure; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace af {

// Documents nested deeper than this are refused wherever JSON enters.
inline constexpr int kMaxJsonDepth = 100;

// The deepest nesting of [ and { in `text`, ignoring brackets inside
// strings. Stops counting (and returns) as soon as `limit` is exceeded.
int JsonNestingDepth(std::string_view text, int limit = kMaxJsonDepth);

// InvalidArgument naming `what` if `text` nests deeper than `limit`.
Status CheckJsonDepth(std::string_view text, std::string_view what, int limit = kMaxJsonDepth);

// The length of j.dump() (compact, invalid UTF-8 replaced as the API and the
// agent callers print it), counted without building the string: size limits
// on documents already in memory (plans, step inputs) cost no copy.
size_t JsonSerializedSize(const nlohmann::json& j);

}  // namespace af
