// Bearer-token authentication for handlers: one function, one set of answers,
// and one route wrapper that applies it.
//
// Thread safety: pure functions over immutable inputs; a handler made by
// Authenticated() is as thread-safe as the handler it wraps.
#pragma once

#include <functional>
#include <variant>

#include "disco/http/message.h"
#include "disco/http/router.h"
#include "jwt.h"
#include "revocation.h"

namespace disco::service {

// The verified claims, or the 401 response to send (with WWW-Authenticate).
std::variant<JwtClaims, http::Response> Authenticate(const http::Request& request,
                                                     const JwtCodec& jwt);

// A handler for an authenticated route. The claims come by value, so that
// they live in the handler's own coroutine frame.
using AuthenticatedHandler =
    std::function<http::Awaitable<http::Response>(http::Request&, JwtClaims)>;

// The route handler that authenticates each request (Authenticate) and
// answers its 401 itself, or calls `handler` with the verified claims.
// With `revocations` enabled (--redis), a token revoked by logout is refused
// too: 401 token_revoked, or 503 revocation_check_unavailable when Redis
// cannot say (TokenRevocations explains when).
// REQUIRES: `jwt` and `revocations` outlive the returned handler.
http::Handler Authenticated(const JwtCodec& jwt, AuthenticatedHandler handler,
                            TokenRevocations* revocations = nullptr);

// The answer for a token that Check() did not find valid (kRevoked: 401,
// kUnavailable: 503 with Retry-After).
http::Response RevocationRefusal(TokenRevocations::Verdict verdict, const http::Request& request);

// 503 {"error":"storage_unavailable"} for a database error; never shows SQL.
http::Response StorageFailure(const Error& error, const http::Request& request);

// Parses a positive decimal id from a path segment (1–18 digits); 0 if not one.
std::int64_t ParseId(std::string_view text);

}  // namespace disco::service
