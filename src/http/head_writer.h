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
class HeadWriter {
 public:
  explicit HeadWriter(char* at) : begin_(at), at_(at) {}

  void Put(std::string_view piece) {
    std::memcpy(at_, piece.data(), piece.size());
    at_ += piece.size();
  }
  void Field(std::string_view name, std::string_view value) {
    Put(name);
    Put(": ");
    Put(value);
    Put("\r\n");
  }
  // A line break would let a value start a header of its own (or the body).
  void CheckedField(std::string_view name, std::string_view value) {
    if (!name.empty() && !detail::HasLineBreak(name) && !detail::HasLineBreak(value))
      Field(name, value);
  }
  // One of our own names (known to be clean): only the value is checked.
  void OwnField(std::string_view name, std::string_view value) {
    if (!detail::HasLineBreak(value)) Field(name, value);
  }
  std::size_t size() const { return static_cast<std::size_t>(at_ - begin_); }

 private:
  char* begin_;
  char* at_;
};

// Room for a field in the head: name, ": ", value, CRLF.
constexpr std::size_t FieldSize(std::string_view name, std::string_view value) {
  return name.size() + value.size() + 4;
}

}  // namespace disco::http::detail
