#include "common/json_text.h"

namespace af {

namespace {
constexpr auto kReplaceInvalidUtf8 = nlohmann::json::error_handler_t::replace;
}  // namespace

void AppendJsonString(std::string& out, std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c == '"' || c == '\\' || static_cast<unsigned char>(c) >= 0x80) {
      out += nlohmann::json(s).dump(-1, ' ', false, kReplaceInvalidUtf8);
      return;
    }
  }
  out += '"';
  out += s;
  out += '"';
}

std::string JsonText(const nlohmann::json& j) { return j.dump(-1, ' ', false, kReplaceInvalidUtf8); }

void AppendJson(std::string& out, const nlohmann::json& j) {
  if (j.is_string()) {
    AppendJsonString(out, j.get_ref<const std::string&>());
    return;
  }
  out += j.dump(-1, ' ', false, kReplaceInvalidUtf8);
}

}  // namespace af
