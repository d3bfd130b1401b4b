#include "http/trace_context.h"

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "util/fast_random.h"

namespace disco::http::detail {
namespace {

constexpr char kHex[] = "0123456789abcdef";

// Byte → its two lowercase hex digits, and character → whether it is one:
// a lookup per byte instead of a shift, mask and branch per digit (every
// span a server starts writes 48 digits and checks 55 characters).
struct HexTables {
  char pairs[256][2];
  bool is_lower_hex[256];
};

constexpr HexTables MakeHexTables() {
  HexTables t{};
  for (int b = 0; b < 256; ++b) {
    t.pairs[b][0] = kHex[b >> 4];
    t.pairs[b][1] = kHex[b & 0xf];
    t.is_lower_hex[b] = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'f');
  }
  return t;
}

constexpr HexTables kTables = MakeHexTables();

bool IsLowerHex(std::string_view text) {
  std::size_t i = 0;
#if defined(__SSE2__)
  // Sixteen at a time (a trace id is two such blocks, a span id one). Signed
  // compares: a byte from 0x80 up is negative, outside both ranges.
  const __m128i below_0 = _mm_set1_epi8('0' - 1), above_9 = _mm_set1_epi8('9' + 1);
  const __m128i below_a = _mm_set1_epi8('a' - 1), above_f = _mm_set1_epi8('f' + 1);
  for (; i + 16 <= text.size(); i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(text.data() + i));
    const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, below_0), _mm_cmplt_epi8(v, above_9));
    const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(v, below_a), _mm_cmplt_epi8(v, above_f));
    if (_mm_movemask_epi8(_mm_or_si128(digit, letter)) != 0xffff) return false;
  }
#endif
  bool ok = true;
  for (; i < text.size(); ++i) ok &= kTables.is_lower_hex[static_cast<unsigned char>(text[i])];
  return ok;
}

bool AllZeros(std::string_view text) { return text.find_first_not_of('0') == std::string_view::npos; }

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

}  // namespace

void PutRandomHex(char* out, std::size_t digits) {
  for (std::size_t i = 0; i < digits; i += 16) {
    std::uint64_t bits = FastRandom();
    for (std::size_t j = 0; j < 16; j += 2) {
      std::memcpy(out + i + j, kTables.pairs[bits & 0xff], 2);
      bits >>= 8;
    }
  }
}

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
  // "00-" trace id (32) "-" span id (16) "-" flags (2): built in place.
  char out[kTraceparentSize];
  std::memcpy(out, "00-", 3);
  if (join)
    std::memcpy(out + 3, incoming.data() + 3, 32);
  else
    PutRandomHex(out + 3, 32);
  out[35] = '-';
  PutRandomHex(out + 36, 16);
  out[52] = '-';
  // Only the sampled bit has a meaning we keep; a new trace is sampled (its
  // lines are all logged anyway).
  const bool sampled = !join || (HexValue(incoming[54]) & 1) != 0;
  out[53] = '0';
  out[54] = sampled ? '1' : '0';
  traceparent.assign(out, kTraceparentSize);
  if (join)
    parent_span_id.assign(incoming.substr(36, 16));
  else
    parent_span_id.clear();
}

}  // namespace disco::http::detail
