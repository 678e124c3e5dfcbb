// Writing JSON text directly, for documents on hot paths (a run's answer, an
// agent call's body) where building a json tree only to print it showed in
// the profile. Both functions print what nlohmann-json's
// dump(-1, ' ', false, error_handler_t::replace) prints, byte for byte.
// Pure; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace af {

// Appends `s` as a JSON string: plain printable ASCII as it is; anything that
// needs escaping or UTF-8 checking goes through the JSON library (invalid
// UTF-8 replaced by U+FFFD).
void AppendJsonString(std::string& out, std::string_view s);

// Appends `j` as compact JSON text, invalid UTF-8 replaced.
void AppendJson(std::string& out, const nlohmann::json& j);

}  // namespace af
