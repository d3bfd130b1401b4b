// A strict parser for the common shape of an HTTP/1.1 message: start line,
// plain header fields, a Content-Length body (or, for a request, none), all
// already in memory. Private to src/http (the server's requests, the
// client's answers; the gateway parses one of each per proxied request).
//
// Why: Beast's parser checks every byte through several layers of calls and
// looks each field name up in its table of known fields; for a typical
// answer of four fields that was an eighth of the gateway's instructions per
// request. This one scans each line with memchr and one table lookup per
// byte.
//
// It accepts only a subset of what Beast accepts and never reports an
// error: anything outside that subset (HTTP/1.0, 1xx/204/304 answers, an
// answer without Content-Length, Expect, obs-fold, a Transfer-Encoding, a
// repeated Content-Length, a request without exactly one Host, a bare LF, a control character, a
// target with bytes outside printable ASCII, more than kMaxFields fields, an incomplete message...)
// gives kDefer, and the caller parses the same bytes with Beast, which
// handles every case and reports every error. So correctness rests on one
// property, checked by a differential test against Beast: whenever this
// parser says kDone, Beast reads the same start line, fields, body and
// keep-alive from the same bytes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace disco::http::detail {

struct SimpleMessage {
  static constexpr std::size_t kMaxFields = 24;
  struct Field {
    std::string_view name, value;  // value without surrounding spaces/tabs
  };

  int status = 0;             // a response's
  std::string_view method{};  // a request's
  std::string_view target{};  // a request's
  std::array<Field, kMaxFields> fields;
  std::size_t field_count = 0;
  std::string_view body{};
  bool keep_alive = true;
  std::size_t head_size = 0;  // start line and fields, blank line included
  std::size_t size = 0;       // bytes of `data` the message took (head + body)
};

enum class SimpleParse { kDone, kDefer };

// Parses the message at the start of `data` into `out` (views into
// `data`). kDefer: parse `data` with Beast instead (`out` is then
// unspecified). A head longer than `header_limit` or a body longer than
// `body_limit` is deferred too, so that Beast reports the limit.
SimpleParse ParseSimpleResponse(std::string_view data, std::size_t header_limit,
                                std::size_t body_limit, SimpleMessage& out);
SimpleParse ParseSimpleRequest(std::string_view data, std::size_t header_limit,
                               std::size_t body_limit, SimpleMessage& out);

}  // namespace disco::http::detail
