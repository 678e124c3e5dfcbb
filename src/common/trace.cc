#include "common/trace.h"

#include <random>

namespace af::trace {
namespace {

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool AllLowerHex(std::string_view s) {
  for (char c : s) {
    if (!IsLowerHex(c)) return false;
  }
  return true;
}

bool AllZero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

std::string RandomHex(size_t digits) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(digits, '0');
  while (true) {
    for (size_t i = 0; i < digits; i += 16) {
      uint64_t v = rng();
      for (size_t k = 0; k < 16 && i + k < digits; ++k, v >>= 4) out[i + k] = kHex[v & 0xf];
    }
    if (!AllZero(out)) return out;
  }
}

uint64_t Fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = seed;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

std::optional<TraceParent> ParseTraceParent(std::string_view header) {
  while (!header.empty() && (header.front() == ' ' || header.front() == '\t')) header.remove_prefix(1);
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t')) header.remove_suffix(1);
  if (header.size() < 55) return std::nullopt;
  std::string_view version = header.substr(0, 2);
  if (!AllLowerHex(version) || version == "ff") return std::nullopt;
  if (version == "00" ? header.size() != 55 : (header.size() > 55 && header[55] != '-')) return std::nullopt;
  if (header[2] != '-' || header[35] != '-' || header[52] != '-') return std::nullopt;
  std::string_view trace_id = header.substr(3, 32);
  std::string_view parent_id = header.substr(36, 16);
  std::string_view flags = header.substr(53, 2);
  if (!AllLowerHex(trace_id) || !AllLowerHex(parent_id) || !AllLowerHex(flags)) return std::nullopt;
  if (AllZero(trace_id) || AllZero(parent_id)) return std::nullopt;
  TraceParent tp;
  tp.trace_id = std::string(trace_id);
  tp.parent_id = std::string(parent_id);
  tp.flags = static_cast<uint8_t>(HexValue(flags[0]) * 16 + HexValue(flags[1]));
  return tp;
}

std::string FormatTraceParent(const TraceParent& tp) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "00-";
  out += tp.trace_id;
  out += '-';
  out += tp.parent_id;
  out += '-';
  out += kHex[tp.flags >> 4];
  out += kHex[tp.flags & 0xf];
  return out;
}

std::string NewTraceId() { return RandomHex(32); }
std::string NewSpanId() { return RandomHex(16); }

TraceParent NewTrace() {
  TraceParent tp;
  tp.trace_id = NewTraceId();
  tp.parent_id = NewSpanId();
  tp.flags = 0x01;
  return tp;
}

std::string ChildTraceParent(const TraceParent& tp) {
  TraceParent child = tp;
  child.parent_id = NewSpanId();
  return FormatTraceParent(child);
}

std::string TraceIdForRunId(std::string_view run_id) {
  std::string_view rest = run_id;
  if (rest.starts_with("run-")) rest.remove_prefix(4);
  std::string hex;
  for (char c : rest) {
    if (c != '-') hex += c;
  }
  if (hex.size() == 32 && AllLowerHex(hex) && !AllZero(hex)) return hex;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  uint64_t a = Fnv1a(run_id, 1469598103934665603ull), b = Fnv1a(run_id, 0x9e3779b97f4a7c15ull);
  for (int i = 0; i < 16; ++i, a >>= 4, b >>= 4) {
    out[i] = kHex[a & 0xf];
    out[16 + i] = kHex[b & 0xf];
  }
  if (AllZero(out)) out[31] = '1';
  return out;
}

}  // namespace af::trace
