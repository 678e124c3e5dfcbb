#include "common/json_limits.h"

#include <memory>
#include <string>

namespace af {

namespace {

// An output adapter that only counts what the serializer writes.
class CountingAdapter final : public nlohmann::detail::output_adapter_protocol<char> {
 public:
  void write_character(char) override { ++count_; }
  void write_characters(const char*, size_t length) override { count_ += length; }
  size_t count() const { return count_; }

 private:
  size_t count_ = 0;
};

}  // namespace

size_t JsonSerializedSize(const nlohmann::json& j) {
  auto counter = std::make_shared<CountingAdapter>();
  nlohmann::detail::serializer<nlohmann::json> s(counter, ' ', nlohmann::json::error_handler_t::replace);
  s.dump(j, /*pretty_print=*/false, /*ensure_ascii=*/false, /*indent_step=*/0);
  return counter->count();
}

int JsonNestingDepth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

Status CheckJsonDepth(std::string_view text, std::string_view what, int limit) {
  if (JsonNestingDepth(text, limit) <= limit) return Status::Ok();
  return Status::InvalidArgument(std::string(what) + " is nested more than " + std::to_string(limit) +
                                 " levels deep. Hint: flatten the document");
}

}  // namespace af
