// libFuzzer target: the execution and cancellation requests on the queue
// (queue/messages.h), read as the consumer reads them: ParseQueueMessage,
// then ParsePlan on an execution request's plan. A request that parses must
// survive Serialize → Parse unchanged; an error must be InvalidArgument
// naming its field.
#include <string>
#include <variant>

#include "fuzz_check.h"
#include "model/plan.h"
#include "queue/messages.h"

using namespace af;

namespace {

void CheckSame(const ExecutionRequest& a, const ExecutionRequest& b) {
  FUZZ_CHECK(a.run_id == b.run_id, a.run_id);
  FUZZ_CHECK(a.workflow_plan == b.workflow_plan, "workflow_plan");
  FUZZ_CHECK(a.input_data == b.input_data, "input_data");
  FUZZ_CHECK(a.workflow_id == b.workflow_id, a.workflow_id);
  FUZZ_CHECK(a.workflow_version == b.workflow_version, std::to_string(a.workflow_version));
  FUZZ_CHECK(a.timestamp == b.timestamp, std::to_string(a.timestamp) + " != " + std::to_string(b.timestamp));
}

void CheckSame(const CancellationRequest& a, const CancellationRequest& b) {
  FUZZ_CHECK(a.run_id == b.run_id, a.run_id);
  FUZZ_CHECK(a.cancelled_by == b.cancelled_by, a.cancelled_by);
  FUZZ_CHECK(a.reason == b.reason, a.reason);
  FUZZ_CHECK(a.timestamp == b.timestamp, std::to_string(a.timestamp) + " != " + std::to_string(b.timestamp));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  Result<QueueRequest> parsed = ParseQueueMessage(payload);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.status().code() == Code::kInvalidArgument, parsed.status().ToString());
    FUZZ_CHECK(parsed.status().details().contains("field"), parsed.status().ToString());
    return 0;
  }
  if (const auto* e = std::get_if<ExecutionRequest>(&*parsed)) {
    Result<Plan> plan = ParsePlan(e->workflow_plan);
    FUZZ_CHECK(plan.ok() || plan.status().code() == Code::kInvalidArgument, plan.status().ToString());
    Result<QueueRequest> again = ParseQueueMessage(SerializeExecutionRequest(*e));
    FUZZ_CHECK(again.ok(), again.status().ToString());
    const auto* e2 = std::get_if<ExecutionRequest>(&*again);
    FUZZ_CHECK(e2 != nullptr, "an execution request read back as a cancellation");
    CheckSame(*e, *e2);
  } else {
    const auto& c = std::get<CancellationRequest>(*parsed);
    Result<QueueRequest> again = ParseQueueMessage(SerializeCancellationRequest(c));
    FUZZ_CHECK(again.ok(), again.status().ToString());
    const auto* c2 = std::get_if<CancellationRequest>(&*again);
    FUZZ_CHECK(c2 != nullptr, "a cancellation request read back as an execution");
    CheckSame(c, *c2);
  }
  return 0;
}
