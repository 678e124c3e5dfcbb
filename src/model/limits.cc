#include "model/limits.h"

#include <string>

#include "common/json_limits.h"

namespace af {

Status CheckStepInput(const json& input, size_t max_bytes) {
  if (max_bytes == 0) return Status::Ok();
  size_t size = JsonSerializedSize(input);
  if (size <= max_bytes) return Status::Ok();
  return Status::TooLarge("input is " + std::to_string(size) + " bytes, over the limit of " +
                          std::to_string(max_bytes) +
                          " bytes; the agent was not called. Hint: pass the step only the part it needs (e.g. "
                          "${steps.x.output.field}), or raise the limit (--max-step-input-bytes)");
}

Status CheckForEachItems(size_t count, size_t max_items) {
  if (max_items == 0 || count <= max_items) return Status::Ok();
  return Status::TooLarge("for_each has " + std::to_string(count) + " elements, over the limit of " +
                          std::to_string(max_items) +
                          "; no element was started. Hint: split the list over several runs, or raise the limit "
                          "(--max-for-each-items)");
}

}  // namespace af
