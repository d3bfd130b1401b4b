// HeadWriter: writes an HTTP message head (start line and fields) into
// room reserved beforehand. Private to src/http (the server's responses,
// the client's requests).
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>

#include "http/connection.h"

namespace disco::http::detail {

// Writes through a raw pointer into room reserved beforehand: a head has
// two dozen pieces, and std::string::append cost a call, a capacity check
// and (for a C string) a strlen per piece.
//
// With `checked` false, CheckedField and OwnField write without looking for
// line breaks: WriteCheckedHead below then counts the CR and LF bytes of the
// whole head once and writes it again checked when they are more than the
// lines written make. The same head; for a request head with a proxy's
// forwarded fields, 600 fewer instructions than checking each name and value
// (callgrind, bench/callgrind_per_request.sh gateway).
class HeadWriter {
 public:
  explicit HeadWriter(char* at, bool checked = true) : begin_(at), at_(at), checked_(checked) {}

  void Put(std::string_view piece) {
    std::memcpy(at_, piece.data(), piece.size());
    at_ += piece.size();
  }
  // A CRLF-ended line (a start line, or the blank line): counted.
  void Line(std::string_view text) {
    Put(text);
    Put("\r\n");
    ++lines_;
  }
  void Field(std::string_view name, std::string_view value) {
    Put(name);
    Put(": ");
    Put(value);
    Put("\r\n");
    ++lines_;
  }
  // A line break would let a value start a header of its own (or the body).
  void CheckedField(std::string_view name, std::string_view value) {
    if (name.empty()) return;
    if (!checked_ || (!detail::HasLineBreak(name) && !detail::HasLineBreak(value)))
      Field(name, value);
  }
  // One of our own names (known to be clean): only the value is checked.
  void OwnField(std::string_view name, std::string_view value) {
    if (!checked_ || !detail::HasLineBreak(value)) Field(name, value);
  }
  std::size_t size() const { return static_cast<std::size_t>(at_ - begin_); }
  // CRLF-ended lines written: a clean head has a CR and an LF for each.
  std::size_t lines() const { return lines_; }

 private:
  char* begin_;
  char* at_;
  bool checked_;
  std::size_t lines_ = 0;
};

// Writes a head into `buffer` with `write(HeadWriter&)` unchecked, counts
// its CR and LF bytes once, and writes it again checked (fields with a line
// break dropped) when a piece held one. Returns the head's size.
template <class Write>
std::size_t WriteCheckedHead(char* buffer, Write&& write) {
  HeadWriter fast(buffer, /*checked=*/false);
  write(fast);
  if (CountLineBreakBytes(std::string_view(buffer, fast.size())) == 2 * fast.lines())
    return fast.size();
  HeadWriter checked(buffer, /*checked=*/true);
  write(checked);
  return checked.size();
}

// Room for a field in the head: name, ": ", value, CRLF.
constexpr std::size_t FieldSize(std::string_view name, std::string_view value) {
  return name.size() + value.size() + 4;
}

}  // namespace disco::http::detail
