#include "common/json_limits.h"

#include <string>

namespace af {

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
