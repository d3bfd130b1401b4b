// Bearer-token authentication for handlers: one function, one set of answers.
//
// Thread safety: pure functions over immutable inputs.
#pragma once

#include <variant>

#include "disco/http/message.h"
#include "jwt.h"

namespace disco::service {

// The verified claims, or the 401 response to send (with WWW-Authenticate).
std::variant<JwtClaims, http::Response> Authenticate(const http::Request& request,
                                                     const JwtCodec& jwt);

// 503 {"error":"storage_unavailable"} for a database error; never shows SQL.
http::Response StorageFailure(const Error& error, const http::Request& request);

// Parses a positive decimal id from a path segment (1–18 digits); 0 if not one.
std::int64_t ParseId(std::string_view text);

}  // namespace disco::service
