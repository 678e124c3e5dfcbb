// libFuzzer target: the Kafka agent transport's request and reply
// (agent/kafka/agent_messages.h), read as `agentflow bridge` reads requests
// and the executor reads replies. A message that parses must survive
// Serialize → Parse unchanged; an error must be InvalidArgument naming its
// field.
#include <string>
#include <string_view>

#include "agent/kafka/agent_messages.h"
#include "fuzz_check.h"

namespace af {
// The real definition is in src/agent/http_agent_caller.cc, with the HTTP
// client (Boost.Beast coroutines) that clang 14 does not compile with Boost
// 1.74; this target links only agent_messages.cc, so it carries a copy.
// Keep it identical (agent.h: "<run_id>/<step_id>[/<index>]").
std::string IdempotencyKey(const AgentCall& call) {
  std::string key = call.run_id + "/" + call.step_id;
  if (call.item_index) key += "/" + std::to_string(*call.item_index);
  return key;
}
}  // namespace af

using namespace af;

namespace {

void CheckError(const Status& s) {
  FUZZ_CHECK(s.code() == Code::kInvalidArgument, s.ToString());
  FUZZ_CHECK(s.details().contains("field"), s.ToString());
}

void Request(std::string_view payload) {
  Result<AgentRequestMessage> m = ParseAgentRequest(payload);
  if (!m.ok()) return CheckError(m.status());
  FUZZ_CHECK(!m->idempotency_key.empty(), "idempotency_key");
  Result<AgentRequestMessage> again = ParseAgentRequest(SerializeAgentRequest(*m));
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->run_id == m->run_id && again->step_id == m->step_id, m->run_id + " " + m->step_id);
  FUZZ_CHECK(again->item_index == m->item_index && again->attempt == m->attempt, "item_index/attempt");
  FUZZ_CHECK(again->input == m->input, "input");
  FUZZ_CHECK(again->reply_topic == m->reply_topic, m->reply_topic);
  FUZZ_CHECK(again->correlation_id == m->correlation_id, m->correlation_id);
  FUZZ_CHECK(again->deadline == m->deadline,
             std::to_string(m->deadline) + " read back as " + std::to_string(again->deadline));
  FUZZ_CHECK(again->idempotency_key == m->idempotency_key, m->idempotency_key);
  FUZZ_CHECK(again->traceparent == m->traceparent, m->traceparent);
  AgentCall call = ToAgentCall(*m, 1000);
  FUZZ_CHECK(call.run_id == m->run_id && call.input == m->input, "ToAgentCall");
}

void Reply(std::string_view payload) {
  Result<AgentReplyMessage> m = ParseAgentReply(payload);
  if (!m.ok()) return CheckError(m.status());
  Result<AgentReplyMessage> again = ParseAgentReply(SerializeAgentReply(*m));
  FUZZ_CHECK(again.ok(), again.status().ToString());
  FUZZ_CHECK(again->correlation_id == m->correlation_id && again->ok == m->ok, m->correlation_id);
  FUZZ_CHECK(again->output == m->output && again->error == m->error, "output/error");
  FUZZ_CHECK(again->retryable == m->retryable && again->retry_after_ms == m->retry_after_ms, "retry");
  // The executor's view, and back to the wire as the bridge writes it.
  AgentReply r = ToAgentReply(*m);
  (void)json(r.error).dump();  // throws on a cut UTF-8 sequence
  AgentReplyMessage back = MakeAgentReply(m->correlation_id, r);
  FUZZ_CHECK(ParseAgentReply(SerializeAgentReply(back)).ok(), "MakeAgentReply");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  Request(payload);
  Reply(payload);
  return 0;
}
