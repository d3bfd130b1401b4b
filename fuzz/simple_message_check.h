// Properties of a message the strict fast parser (src/http/simple_head.h)
// took, whatever the input: shared by the request and response targets.
#pragma once

#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "http/simple_head.h"

namespace disco::fuzz {

// The limits the parsers run with in the services: the server's defaults
// (include/disco/http/server.h) and the client's answer limits; and tiny
// ones, so that inputs of a few hundred bytes reach the limit checks too.
struct Limits {
  std::size_t header, body;
};
inline constexpr Limits kLimits[] = {
    {16 * 1024, 1024 * 1024}, {64 * 1024, 8 * 1024 * 1024}, {48, 8}};

inline void CheckSimpleMessage(std::string_view data, const Limits& limits,
                               const http::detail::SimpleMessage& m) {
  using http::detail::SimpleMessage;
  Check(m.head_size >= 4 && m.head_size <= m.size && m.size <= data.size(),
        "head_size <= size <= input");
  Check(m.head_size <= limits.header, "a head over the header limit was taken");
  Check(data.substr(m.head_size - 4, 4) == "\r\n\r\n", "the head ends with a blank line");
  Check(m.body.size() <= limits.body, "a body over the body limit was taken");
  Check(m.body.data() == data.data() + m.head_size && m.head_size + m.body.size() == m.size,
        "the body follows the head and ends the message");
  Check(m.field_count <= SimpleMessage::kMaxFields, "field_count <= kMaxFields");
  const std::string_view head = data.substr(0, m.head_size);
  Check(Within(m.method, head) && Within(m.target, head), "start line views inside the head");
  for (std::size_t i = 0; i < m.field_count; ++i) {
    const auto& f = m.fields[i];
    Check(!f.name.empty() && Within(f.name, head) && Within(f.value, head),
          "field views inside the head");
    Check(f.value.empty() || (f.value.front() != ' ' && f.value.front() != '\t' &&
                              f.value.back() != ' ' && f.value.back() != '\t'),
          "field values are trimmed");
    for (char c : f.value)
      Check(c != '\r' && c != '\n' && c != '\0', "no CR, LF or NUL in a value");
  }
}

}  // namespace disco::fuzz
