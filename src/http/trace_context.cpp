#include "http/trace_context.h"

#include <cstdint>

#include "util/fast_random.h"

namespace disco::http::detail {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool IsLowerHex(std::string_view text) {
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool AllZeros(std::string_view text) { return text.find_first_not_of('0') == std::string_view::npos; }

void AppendRandomHex(std::string& out, std::size_t digits) {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    if (i % 16 == 0) bits = FastRandom();
    out += kHex[bits & 0xf];
    bits >>= 4;
  }
}

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

}  // namespace

bool IsValidTraceparent(std::string_view value) {
  if (value.size() < kTraceparentSize) return false;
  std::string_view version = value.substr(0, 2), trace_id = value.substr(3, 32),
                   parent_id = value.substr(36, 16), flags = value.substr(53, 2);
  if (!IsLowerHex(version) || version == "ff") return false;
  if (version == "00" ? value.size() != kTraceparentSize
                      : value.size() > kTraceparentSize && value[kTraceparentSize] != '-')
    return false;
  return value[2] == '-' && value[35] == '-' && value[52] == '-' && IsLowerHex(trace_id) &&
         IsLowerHex(parent_id) && IsLowerHex(flags) && !AllZeros(trace_id) &&
         !AllZeros(parent_id);
}

void StartServerSpan(std::string_view incoming, std::string& traceparent,
                     std::string& parent_span_id) {
  const bool join = IsValidTraceparent(incoming);
  traceparent.clear();
  traceparent += "00-";
  if (join)
    traceparent += incoming.substr(3, 32);
  else
    AppendRandomHex(traceparent, 32);
  traceparent += '-';
  AppendRandomHex(traceparent, 16);
  traceparent += '-';
  // Only the sampled bit has a meaning we keep; a new trace is sampled (its
  // lines are all logged anyway).
  const bool sampled = !join || (HexValue(incoming[54]) & 1) != 0;
  traceparent += sampled ? "01" : "00";
  if (join)
    parent_span_id.assign(incoming.substr(36, 16));
  else
    parent_span_id.clear();
}

}  // namespace disco::http::detail
