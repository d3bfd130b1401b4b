// JsonWriter: the one way the demo services write a JSON response body.
//
// It appends straight to a string instead of building an nlohmann document
// first: these bodies (a user, an order, a token) are on the path of every
// request, and a document costs an allocation per key and per value. The
// measured difference is in docs/benchmarks.md ("JSON response bodies").
// Strings go through http::JsonQuote (control characters escaped, UTF-8
// passed through: the services validate their text on the way in). Keys are
// written as given: they are the services' own ASCII literals.
//
// Keys are written in the order of the calls; the services keep the order
// an nlohmann document would (sorted), so that bodies did not change.
//
// Thread safety: one writer per string, on one thread.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "disco/http/message.h"

namespace disco::service {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& BeginObject() {
    Separate();
    out_ += '{';
    comma_ = false;
    return *this;
  }
  JsonWriter& EndObject() {
    out_ += '}';
    comma_ = true;
    return *this;
  }
  JsonWriter& BeginArray() {
    Separate();
    out_ += '[';
    comma_ = false;
    return *this;
  }
  JsonWriter& EndArray() {
    out_ += ']';
    comma_ = true;
    return *this;
  }

  // REQUIRES: inside an object; `key` needs no escaping.
  JsonWriter& Key(std::string_view key) {
    Separate();
    out_ += '"';
    out_ += key;
    out_ += "\":";
    comma_ = false;
    return *this;
  }

  JsonWriter& String(std::string_view value) {
    Separate();
    out_ += http::JsonQuote(value);
    comma_ = true;
    return *this;
  }
  JsonWriter& Int(std::int64_t value) {
    Separate();
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    out_.append(digits, end);
    comma_ = true;
    return *this;
  }

  JsonWriter& Field(std::string_view key, std::string_view value) { return Key(key).String(value); }
  JsonWriter& Field(std::string_view key, const char* value) {
    return Key(key).String(std::string_view(value));
  }
  JsonWriter& Field(std::string_view key, std::int64_t value) { return Key(key).Int(value); }

 private:
  void Separate() {
    if (comma_) out_ += ',';
  }

  std::string& out_;
  bool comma_ = false;  // a value was just written: the next one needs a comma
};

}  // namespace disco::service
