// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent`
// header, as agentflow uses it. A run belongs to one trace: the API keeps the
// traceparent it was triggered with (or starts a new trace), and every agent
// call of the run carries the run's trace id with a new span id.
//
//   traceparent: 00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace af::trace {

struct TraceParent {
  std::string trace_id;   // 32 lowercase hex digits, not all zero
  std::string parent_id;  // 16 lowercase hex digits, not all zero
  uint8_t flags = 0;      // bit 0: sampled
};

// Parses a traceparent header value by the specification's rules: version
// 00 is exactly 55 characters; a higher version (not ff) may be longer, with
// a '-' after the first 55 characters, and is read as version 00. Hex must be
// lowercase; all-zero trace or parent ids are invalid. Surrounding spaces
// and tabs are ignored. nullopt when invalid.
std::optional<TraceParent> ParseTraceParent(std::string_view header);

// "00-<trace_id>-<parent_id>-<flags>".
std::string FormatTraceParent(const TraceParent& tp);

// Random, non-zero ids (thread-safe; not for security).
std::string NewTraceId();  // 32 hex
std::string NewSpanId();   // 16 hex

// A new trace: random trace id, random parent id, sampled.
TraceParent NewTrace();

// The same trace with a new span id: what a call made on behalf of `tp`
// sends as its traceparent.
std::string ChildTraceParent(const TraceParent& tp);

// The trace id of a run stored without a traceparent (created before
// traceparents were kept, or by a path that did not set one): derived from
// the run id so that every executor and log line agrees on it. For
// "run-<uuid>" it is the uuid's 32 hex digits; otherwise a hash of the id.
std::string TraceIdForRunId(std::string_view run_id);

}  // namespace af::trace
