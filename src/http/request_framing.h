// RFC 9112 checks on a request's framing that Beast leaves to its user.
// Private to src/http (the server's request parser).
#pragma once

#include <optional>
#include <string_view>

#include "disco/http/message.h"

namespace disco::http::detail {

// The error answer for a request head that breaks a framing rule, given
// what the head said: its HTTP version (10, 11), how many Host fields it
// had (§3.2: HTTP/1.1 needs exactly one), its Transfer-Encoding codings in
// order, joined by commas (§6.1, §6.3), whether it had a Transfer-Encoding
// field at all and whether it also had Content-Length. nullopt: fine.
//
// A Transfer-Encoding other than "chunked" alone is refused with 400
// ("identity", "chunked, identity"): read as Beast would read it ("identity":
// no body), its body would become the next request on the connection —
// request smuggling. A coding before "chunked" ("gzip, chunked") is
// well-formed but not implemented: 501.
std::optional<Response> FramingProblem(unsigned version, int hosts, std::string_view codings,
                                       bool has_transfer_encoding, bool has_length);

}  // namespace disco::http::detail
