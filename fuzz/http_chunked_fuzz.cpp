// Chunked decoding, and the rest of the Beast path of the HTTP layer: every
// message the fast parser defers (chunk sizes, extensions, trailers,
// obs-fold, Expect, HTTP/1.0...). The input
// goes through the code the server and the client run (src/http/connection.h:
// a BodyParser fed by ParseBuffered, header first, then the message), twice:
// once whole, as one read, and once in small reads of sizes drawn from the
// input. Both readings must agree: done or not, error or not, the same
// fields, body and leftover bytes; a finished body is within the limit.
// An input starting with "HTTP/" is an answer, anything else a request.
#include <boost/asio/io_context.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "http/connection.h"

namespace disco::fuzz {
namespace {

namespace bhttp = boost::beast::http;
using http::detail::BodyParser;
using http::detail::ParseBuffered;
using http::detail::ReadUntil;

// What the server and the client take from a message, as their parsers
// (server.cpp RequestParser, client.cpp ResponseParser) do.
template <bool kIsRequest>
class Parser final : public BodyParser<kIsRequest> {
 public:
  Parser() : BodyParser<kIsRequest>(body) {}

  std::string start_line;
  std::vector<std::pair<std::string, std::string>> fields;
  std::string body;

 private:
  void on_request_impl(bhttp::verb, boost::beast::string_view method,
                       boost::beast::string_view target, int version,
                       boost::beast::error_code& ec) override {
    start_line = std::string(method) + " " + std::string(target) + " " + std::to_string(version);
    ec = {};
  }
  void on_response_impl(int status, boost::beast::string_view, int version,
                        boost::beast::error_code& ec) override {
    start_line = std::to_string(status) + " " + std::to_string(version);
    ec = {};
  }
  void on_field_impl(bhttp::field, boost::beast::string_view name, boost::beast::string_view value,
                     boost::beast::error_code& ec) override {
    fields.emplace_back(std::string(name), std::string(value));  // trailers too
    ec = {};
  }
  void on_header_impl(boost::beast::error_code& ec) override { ec = {}; }
};

struct Reading {
  bool done = false;
  boost::system::error_code ec;
  std::string error;
  std::string start_line, body, leftover;
  std::vector<std::pair<std::string, std::string>> fields;
};

// The limits of the server's defaults (include/disco/http/server.h), and
// small ones so that short inputs reach the limit checks.
struct Limits {
  std::uint32_t header;
  std::uint64_t body;
};
constexpr Limits kLimits[] = {{16 * 1024, 1024 * 1024}, {64, 16}};

http::detail::Connection& TheConnection() {
  static boost::asio::io_context io;
  // Never connected: ParseBuffered only reads its buffer.
  static auto connection =
      std::make_shared<http::detail::Connection>(http::detail::Socket(io.get_executor()));
  return *connection;
}

// Feeds `text` to the connection's buffer in reads of `sizes` (cycled; the
// whole text at once when empty) as the server's loop does: the header
// first, then the rest of the message; at the end of the input, the end of
// the stream (which ends an answer delimited by it).
template <bool kIsRequest>
Reading Read(std::string_view text, const Limits& limits, const std::vector<std::size_t>& sizes) {
  auto& connection = TheConnection();
  auto& buffer = connection.buffer();
  buffer.consume(buffer.size());
  Parser<kIsRequest> parser;
  parser.header_limit(limits.header);
  parser.body_limit(limits.body);

  std::size_t fed = 0, turn = 0;
  auto read = [&] {
    if (fed == text.size()) return false;
    const std::size_t n = sizes.empty() ? text.size() - fed
                                        : std::min(sizes[turn++ % sizes.size()], text.size() - fed);
    auto room = buffer.prepare(n);
    std::memcpy(room.data(), text.data() + fed, n);
    buffer.commit(n);
    fed += n;
    return true;
  };
  boost::system::error_code ec;
  for (ReadUntil until : {ReadUntil::kHeader, ReadUntil::kMessage}) {
    bool finished = ParseBuffered(connection, parser, until, ec);
    while (!finished && read()) finished = ParseBuffered(connection, parser, until, ec);
    if (!finished) {
      // The peer closed: what ReadMore does at the end of the stream.
      if (parser.got_some()) parser.put_eof(ec);
      break;
    }
    if (ec) break;
    // The client's own check after the header (client.cpp): Beast 1.74
    // loses its body_limit error for an answer whose body is in the same
    // buffer as its head (finish_header moves to the body state before the
    // check, and the eager loop then reads the body, clearing the error).
    if (!kIsRequest && until == ReadUntil::kHeader &&
        parser.content_length().value_or(0) > limits.body) {
      ec = bhttp::error::body_limit;
      break;
    }
  }
  Reading out;
  out.ec = ec;
  out.error = ec.message();
  out.done = !ec && parser.is_done();
  out.start_line = parser.start_line;
  out.fields = std::move(parser.fields);
  out.body = std::move(parser.body);
  // What follows the message: the rest of the buffer and what was not fed.
  if (out.done) {
    const auto data = buffer.data();
    out.leftover.assign(static_cast<const char*>(data.data()), data.size());
    out.leftover.append(text.substr(fed));
  }
  return out;
}

std::vector<std::size_t> ReadSizes(std::string_view text) {
  // FNV-1a of the input: the same input always splits the same way.
  std::uint64_t h = 1469598103934665603ull;
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 8; ++i, h >>= 5) sizes.push_back(1 + (h & 15));
  return sizes;
}

template <bool kIsRequest>
void CheckBothReadings(std::string_view text) {
  for (const auto& limits : kLimits) {
    const Reading whole = Read<kIsRequest>(text, limits, {});
    const Reading pieces = Read<kIsRequest>(text, limits, ReadSizes(text));
    const std::size_t head_end = text.find("\r\n\r\n");
    for (const Reading* r : {&whole, &pieces}) {
      if (!r->done) continue;
      Check(r->body.size() <= limits.body, "a finished body is over the limit");
      // At most the start line over the limit (see below), itself within it.
      Check(head_end == std::string_view::npos || head_end + 4 <= 2 * limits.header,
            "a head of more than twice the header limit was taken");
    }
    if (whole.done != pieces.done) {
      // Beast 1.74 does not count the start line against header_limit when
      // the whole head is in the buffer at once (basic_parser.ipp: the
      // fields are parsed up to header_limit bytes past the start line),
      // but does when it waits for more: a head of up to header_limit plus
      // the start line passes in one read and gets header_limit in pieces.
      // Known, bounded; anything else is a disagreement.
      const Reading& refused = whole.done ? pieces : whole;
      const bool head_over_limit =
          head_end == std::string_view::npos || head_end + 4 > limits.header;
      if (!(refused.ec == bhttp::error::header_limit && head_over_limit)) {
        Fail("whole and piecewise reads disagree on done: '" + whole.error + "' vs '" +
             pieces.error + "'");
      }
      continue;
    }
    if (!whole.done) continue;
    Check(whole.start_line == pieces.start_line, "start lines differ");
    Check(whole.fields == pieces.fields, "fields differ");
    Check(whole.body == pieces.body, "bodies differ");
    Check(whole.leftover == pieces.leftover, "bytes after the message differ");
  }
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = disco::fuzz::AsText(data, size);
  if (text.starts_with("HTTP/"))
    disco::fuzz::CheckBothReadings<false>(text);
  else
    disco::fuzz::CheckBothReadings<true>(text);
  return 0;
}
