// Identifiers: random UUIDv4 strings, prefixed by kind ("run-…", "wf-…").
// Thread-safe.
#pragma once

#include <string>

namespace af {

std::string NewUuid();                              // "3f2b…-…" (36 chars, v4)
inline std::string NewRunId() { return "run-" + NewUuid(); }
inline std::string NewWorkflowId() { return "wf-" + NewUuid(); }

// Ids that arrive from users are checked before use as keys or in paths:
// 1..128 chars of [A-Za-z0-9._:-], not "." or "..".
bool IsValidId(const std::string& id);

// A Kafka topic name as brokers accept it: 1..249 chars of [A-Za-z0-9._-],
// not "." or "..".
bool IsValidKafkaTopic(const std::string& topic);

}  // namespace af
