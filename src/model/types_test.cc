// The run's JSON text (RunJsonText) against the tree it stands for
// (ToJson(Run)): the same bytes for every shape of run, so the API's answers
// did not change when they stopped building the tree.
#include "model/types.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace af {
namespace {

std::string TreeText(const Run& r) { return ToJson(r).dump(-1, ' ', false, json::error_handler_t::replace); }

Run Plain() {
  Run r;
  r.id = "0b8f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4";
  r.workflow_id = "wf-7";
  r.workflow_version = 3;
  r.status = RunStatus::kPending;
  r.input = json{{"topic", "tides"}, {"n", 2}};
  r.attempt = 1;
  r.created_at = 1764400000123;
  return r;
}

std::vector<Run> Shapes() {
  std::vector<Run> out;
  out.push_back(Plain());

  Run done = Plain();
  done.status = RunStatus::kCompleted;
  done.started_at = done.created_at + 5;
  done.completed_at = done.created_at + 950;
  done.output = json{{"summary", "ok"}, {"items", json::array({1, 2.5, nullptr, true, "x"})}, {"nested", {{"a", {}}}}};
  done.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  out.push_back(done);

  Run failed = Plain();
  failed.status = RunStatus::kFailed;
  failed.attempt = 4;
  failed.started_at = 0;  // the epoch
  failed.completed_at = -1;  // before it
  failed.error_message = "step \"fetch\" failed:\n\tHTTP 502 \\ upstream \x01 gone";
  out.push_back(failed);

  Run cancelled = Plain();
  cancelled.status = RunStatus::kCancelled;
  cancelled.cancel_requested = true;
  cancelled.cancelled_by = "ops@example.com";
  cancelled.cancel_reason = "";  // null in the answer
  cancelled.idempotency_key = "order-42";
  out.push_back(cancelled);

  Run asked = Plain();
  asked.status = RunStatus::kRunning;
  asked.cancel_requested = true;
  asked.cancel_reason = "superseded";
  out.push_back(asked);

  Run unicode = Plain();
  unicode.status = RunStatus::kFailed;
  unicode.error_message = "agent said: caf\xc3\xa9 \xe2\x9c\x93 and bad bytes \xff\xfe\xc3 end";  // é ✓, then invalid UTF-8
  unicode.idempotency_key = "\xe5\xb0\x8f-\x7f";
  unicode.input = json{{"text", "line\nbreak \xf0\x9f\x8c\x8a"}, {"raw", "\xc0\xaf"}};
  unicode.workflow_id = "wf/\"quoted\"";
  out.push_back(unicode);

  Run empty = Plain();
  empty.input = json();
  empty.output = json::object();
  empty.workflow_version = -1;
  out.push_back(empty);
  return out;
}

TEST(RunJsonTextTest, IsByteForByteTheTreesText) {
  for (const af::Run& r : Shapes()) {
    EXPECT_EQ(RunJsonText(r), TreeText(r)) << "status " << ToString(r.status) << ", error '" << r.error_message << "'";
  }
}

TEST(RunJsonTextTest, IsJsonThatReadsBackAsTheRun) {
  for (const af::Run& r : Shapes()) {
    json parsed = json::parse(RunJsonText(r), nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(parsed.is_discarded()) << RunJsonText(r);
    // Invalid UTF-8 reads back replaced; every other run as its tree.
    if (parsed.dump().find("\xef\xbf\xbd") == std::string::npos) {
      EXPECT_EQ(parsed, ToJson(r));
    }
    EXPECT_EQ(parsed["run_id"], r.id);
    EXPECT_EQ(parsed["status"], ToString(r.status));
  }
}

}  // namespace
}  // namespace af
