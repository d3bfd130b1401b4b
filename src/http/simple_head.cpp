#include "http/simple_head.h"

#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "disco/http/message.h"

namespace disco::http::detail {
namespace {

constexpr std::uint8_t kToken = 1;  // tchar (RFC 9110 5.6.2)
constexpr std::uint8_t kText = 2;   // field-value / reason-phrase byte: HTAB, SP, VCHAR, obs-text

constexpr std::array<std::uint8_t, 256> MakeClasses() {
  std::array<std::uint8_t, 256> classes{};
  for (int c = 0x21; c <= 0x7e; ++c) classes[static_cast<std::size_t>(c)] = kText;
  for (int c = 0x80; c <= 0xff; ++c) classes[static_cast<std::size_t>(c)] = kText;
  classes['\t'] = classes[' '] = kText;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~0123456789"
                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    classes[c] |= kToken;
  return classes;
}
constexpr std::array<std::uint8_t, 256> kClasses = MakeClasses();

bool All(const char* begin, const char* end, std::uint8_t cls) {
  for (const char* p = begin; p != end; ++p) {
    if (!(kClasses[static_cast<unsigned char>(*p)] & cls)) return false;
  }
  return true;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// The next line in [p, end): its content (without CRLF) and where the next
// line starts. False unless the line is CRLF-terminated and its content
// only text bytes (HTAB, SP, VCHAR, obs-text): the first byte that is not
// text must be the CR of a CRLF. Sixteen bytes at a time where there are
// as many: lines are short, and a memchr call plus a byte loop cost more.
bool NextLine(const char*& p, const char* end, std::string_view& line) {
  const char* q = p;
#if defined(__SSE2__)
  const __m128i below_space = _mm_set1_epi8(0x1f);
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - q >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    // Control bytes: v <= 0x1f (unsigned) except HTAB, and DEL.
    const __m128i control =
        _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(_mm_min_epu8(v, below_space), v));
    const int mask = _mm_movemask_epi8(_mm_or_si128(control, _mm_cmpeq_epi8(v, del)));
    if (mask != 0) {
      q += __builtin_ctz(static_cast<unsigned>(mask));
      goto found;
    }
    q += 16;
  }
#endif
  while (q != end && (kClasses[static_cast<unsigned char>(*q)] & kText)) ++q;
#if defined(__SSE2__)
found:
#endif
  if (end - q < 2 || q[0] != '\r' || q[1] != '\n') return false;
  line = std::string_view(p, static_cast<std::size_t>(q - p));
  p = q + 2;
  return true;
}

// Connection's value, when it is a plain list of "close" / "keep-alive"
// tokens; sets `close` if one is "close". False for anything else (an
// upgrade, odd separators), which Beast then handles.
bool ConnectionTokens(std::string_view value, bool& close) {
  for (;;) {
    while (!value.empty() && IsSpace(value.front())) value.remove_prefix(1);
    std::size_t n = 0;
    while (n < value.size() && (kClasses[static_cast<unsigned char>(value[n])] & kToken)) ++n;
    const std::string_view token = value.substr(0, n);
    if (HeaderNameEquals(token, "close"))
      close = true;
    else if (!HeaderNameEquals(token, "keep-alive"))
      return false;
    value.remove_prefix(n);
    while (!value.empty() && IsSpace(value.front())) value.remove_prefix(1);
    if (value.empty()) return true;
    if (value.front() != ',') return false;
    value.remove_prefix(1);
  }
}

// The header fields after the start line, up to the blank line, and the
// body: shared by both directions. `p` is just past the start line.
// `length_required`: a message without Content-Length is deferred (an
// answer delimited by the end of the connection); else it has no body (a
// request). `request`: Expect is deferred too (100-continue is Beast's).
SimpleParse ParseFieldsAndBody(std::string_view data, const char* p, const char* end,
                               std::size_t body_limit, bool request, SimpleMessage& out) {
  std::string_view line;
  std::size_t count = 0;
  bool have_length = false;
  std::uint64_t length = 0;
  bool close = false;
  int hosts = 0;
  for (;;) {
    if (!NextLine(p, end, line)) return SimpleParse::kDefer;
    if (line.empty()) break;  // end of the head
    if (count == SimpleMessage::kMaxFields) return SimpleParse::kDefer;
    // name ":" OWS value OWS; a line starting with a space (obs-fold) fails here.
    const std::size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return SimpleParse::kDefer;
    const std::string_view name = line.substr(0, colon);
    if (!All(name.data(), name.data() + name.size(), kToken)) return SimpleParse::kDefer;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && IsSpace(value.front())) value.remove_prefix(1);
    while (!value.empty() && IsSpace(value.back())) value.remove_suffix(1);

    if (HeaderNameEquals(name, "Content-Length")) {
      if (have_length || value.empty() || value.size() > 18) return SimpleParse::kDefer;
      for (char c : value) {
        if (c < '0' || c > '9') return SimpleParse::kDefer;
        length = length * 10 + static_cast<std::uint64_t>(c - '0');
      }
      have_length = true;
    } else if (HeaderNameEquals(name, "Connection")) {
      if (!ConnectionTokens(value, close)) return SimpleParse::kDefer;
    } else if (request && HeaderNameEquals(name, "Host")) {
      ++hosts;
    } else if (HeaderNameEquals(name, "Transfer-Encoding") || HeaderNameEquals(name, "Upgrade") ||
               HeaderNameEquals(name, "Proxy-Connection") ||
               (request && HeaderNameEquals(name, "Expect"))) {
      return SimpleParse::kDefer;
    }
    out.fields[count++] = {name, value};
  }

  // A body delimited by the end of the connection, one over the limit or
  // not all here yet: Beast's.
  if (!have_length && !request) return SimpleParse::kDefer;
  // A request without exactly one Host breaks RFC 9112 §3.2: the server
  // refuses it on Beast's path.
  if (request && hosts != 1) return SimpleParse::kDefer;
  if (length > body_limit) return SimpleParse::kDefer;
  const auto head = static_cast<std::size_t>(p - data.data());
  if (data.size() - head < length) return SimpleParse::kDefer;
  out.field_count = count;
  out.head_size = head;
  out.body = data.substr(head, static_cast<std::size_t>(length));
  out.keep_alive = !close;
  out.size = head + static_cast<std::size_t>(length);
  return SimpleParse::kDone;
}

}  // namespace

SimpleParse ParseSimpleResponse(std::string_view data, std::size_t header_limit,
                                std::size_t body_limit, SimpleMessage& out) {
  const char* p = data.data();
  const char* const end = p + std::min(data.size(), header_limit);

  // Status line: "HTTP/1.1 NNN reason".
  std::string_view line;
  if (!NextLine(p, end, line)) return SimpleParse::kDefer;
  if (line.size() < 13 || line.substr(0, 9) != "HTTP/1.1 " || line[12] != ' ')
    return SimpleParse::kDefer;
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return SimpleParse::kDefer;
    status = status * 10 + (line[i] - '0');
  }
  // Interim answers, and the statuses whose body rules differ: Beast's.
  if (status < 200 || status > 599 || status == 204 || status == 304) return SimpleParse::kDefer;
  out.status = status;
  return ParseFieldsAndBody(data, p, end, body_limit, false, out);
}

SimpleParse ParseSimpleRequest(std::string_view data, std::size_t header_limit,
                               std::size_t body_limit, SimpleMessage& out) {
  const char* p = data.data();
  const char* const end = p + std::min(data.size(), header_limit);

  // Request line: method SP target SP "HTTP/1.1", the target printable
  // ASCII only (no obs-text: Beast's call).
  std::string_view line;
  if (!NextLine(p, end, line)) return SimpleParse::kDefer;
  constexpr std::string_view kVersion = " HTTP/1.1";
  if (line.size() < 3 + kVersion.size() || line.substr(line.size() - kVersion.size()) != kVersion)
    return SimpleParse::kDefer;
  line.remove_suffix(kVersion.size());
  const std::size_t space = line.find(' ');
  if (space == 0 || space == std::string_view::npos) return SimpleParse::kDefer;
  const std::string_view method = line.substr(0, space);
  const std::string_view target = line.substr(space + 1);
  if (target.empty() || !All(method.data(), method.data() + method.size(), kToken))
    return SimpleParse::kDefer;
  for (char c : target) {
    if (c <= 0x20 || c >= 0x7f) return SimpleParse::kDefer;
  }
  out.method = method;
  out.target = target;
  return ParseFieldsAndBody(data, p, end, body_limit, true, out);
}

}  // namespace disco::http::detail
