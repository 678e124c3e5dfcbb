// The project's JSON text: compact, invalid UTF-8 replaced rather than thrown
// on. AppendJsonString and AppendJson write it directly, for documents on hot
// paths (a run's answer, an agent call's body) where building a json tree
// only to print it showed in the profile. All three functions print what
// nlohmann-json's dump(-1, ' ', false, error_handler_t::replace) prints, byte
// for byte (json_text_test.cc). Pure; thread-safe.
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

// `j` as compact JSON text, invalid UTF-8 replaced rather than thrown on: how
// the project writes every document it stores, sends or logs.
std::string JsonText(const nlohmann::json& j);

}  // namespace af
