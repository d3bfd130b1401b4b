#include "http/request_framing.h"

#include <cctype>

namespace disco::http::detail {

std::optional<Response> FramingProblem(unsigned version, int hosts, std::string_view codings,
                                       bool has_transfer_encoding, bool has_length) {
  if (hosts > 1) return Response::Error(400, "bad_request", "more than one Host header field");
  if (hosts == 0 && version >= 11)
    return Response::Error(400, "bad_request", "an HTTP/1.1 request needs a Host header field");
  if (!has_transfer_encoding) return std::nullopt;
  if (version < 11)
    return Response::Error(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
  if (has_length)
    return Response::Error(400, "bad_request", "both Transfer-Encoding and Content-Length");
  // The codings, in order: "chunked" must be the last, and is the only
  // one implemented.
  const auto bad = Response::Error(400, "bad_request", "malformed Transfer-Encoding");
  std::string_view last;
  bool other = false;
  std::size_t chunked = 0;
  while (!codings.empty()) {
    const std::size_t comma = codings.find(',');
    std::string_view coding = codings.substr(0, comma);
    codings = comma == std::string_view::npos ? std::string_view{} : codings.substr(comma + 1);
    // Transfer parameters: chunked has none, and the only coding we
    // implement is chunked; Beast's reading of them differs from ours.
    if (coding.find(';') != std::string_view::npos) return bad;
    while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t'))
      coding.remove_prefix(1);
    while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t'))
      coding.remove_suffix(1);
    if (coding.empty()) continue;  // empty list elements are allowed
    for (char c : coding) {
      // A coding is a token (RFC 9110 §5.6.2): anything else is not one
      // we could agree with another parser on.
      const bool tchar = std::isalnum(static_cast<unsigned char>(c)) ||
                         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
      if (!tchar) return bad;
    }
    last = coding;
    if (HeaderNameEquals(coding, "chunked"))
      ++chunked;
    else
      other = true;
  }
  if (!HeaderNameEquals(last, "chunked") || chunked > 1)
    return Response::Error(400, "bad_request",
                           "Transfer-Encoding must be \"chunked\", once and last");
  if (other)
    return Response::Error(501, "not_implemented",
                           "only the chunked transfer coding is implemented");
  return std::nullopt;
}

}  // namespace disco::http::detail
