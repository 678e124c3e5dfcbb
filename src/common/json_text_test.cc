// common/json_text: the project's JSON writers print what nlohmann-json's
// compact dump with invalid UTF-8 replaced prints, byte for byte, and never
// throw on bytes that are not UTF-8.
#include "common/json_text.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace af {
namespace {

using nlohmann::json;

std::string Reference(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::vector<json> Documents() {
  const std::string bad_utf8 =
      "a\xff\xfe"
      "b";
  const std::string nul("x\0y", 3);
  return {nullptr,
          true,
          -12,
          18446744073709551615ull,
          1.5,
          "",
          "plain",
          "quote \" backslash \\ slash / tab \t newline \n",
          "caf\xc3\xa9 \xe2\x82\xac",
          bad_utf8,
          nul,
          json::array(),
          json::object(),
          json{{"b", 1}, {"a", {1, "two", nullptr}}, {bad_utf8, {{"nested", bad_utf8}}}}};
}

TEST(JsonTextTest, WritesWhatTheJsonLibraryWritesWithInvalidUtf8Replaced) {
  for (const json& j : Documents()) {
    EXPECT_EQ(JsonText(j), Reference(j)) << Reference(j);
    std::string appended = "prefix:";
    AppendJson(appended, j);
    EXPECT_EQ(appended, "prefix:" + Reference(j));
    if (j.is_string()) {
      std::string s;
      AppendJsonString(s, j.get<std::string>());
      EXPECT_EQ(s, Reference(j));
    }
  }
  // Replaced, not thrown on: the text reads back as JSON with U+FFFD.
  json back =
      json::parse(JsonText(json("a\xff"
                                "b")));
  EXPECT_EQ(back.get<std::string>(),
            "a\xef\xbf\xbd"
            "b");
}

}  // namespace
}  // namespace af
