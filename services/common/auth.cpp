#include "auth.h"

#include "logging.h"

namespace disco::service {

std::variant<JwtClaims, http::Response> Authenticate(const http::Request& request,
                                                     const JwtCodec& jwt) {
  auto unauthorized = [](std::string_view code, std::string_view message) {
    auto response = http::Response::Error(401, code, message);
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  };
  if (!request.HasHeader("Authorization")) {
    return unauthorized("missing_token", "Authorization: Bearer <token> required");
  }
  std::string_view token = request.BearerToken();
  if (token.empty())
    return unauthorized("invalid_token", "Authorization header must be 'Bearer <token>'");
  auto claims = jwt.Verify(token);
  if (!claims) return unauthorized("invalid_token", claims.error().message);
  return std::move(*claims);
}

namespace {

http::Awaitable<http::Response> Answer(http::Response response) { co_return response; }

// The revocation check, then the handler. `handler` lives in the router.
http::Awaitable<http::Response> CheckedThenHandled(http::Request& request, JwtClaims claims,
                                                   TokenRevocations* revocations,
                                                   const AuthenticatedHandler* handler) {
  auto verdict = co_await revocations->Check(claims);
  if (verdict != TokenRevocations::Verdict::kValid) co_return RevocationRefusal(verdict, request);
  co_return co_await (*handler)(request, std::move(claims));
}

}  // namespace

http::Response RevocationRefusal(TokenRevocations::Verdict verdict, const http::Request& request) {
  if (verdict == TokenRevocations::Verdict::kRevoked) {
    auto response = http::Response::Error(401, "token_revoked",
                                          "the token was revoked (logged out); log in again");
    response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  }
  // Not logged per request: the Redis client logs its changes of state, and
  // auth_revocation_unchecked_total counts these.
  auto response =
      http::Response::Error(503, "revocation_check_unavailable",
                            "cannot check whether the token was revoked, try again (request id " +
                                request.request_id + ")");
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

http::Handler Authenticated(const JwtCodec& jwt, AuthenticatedHandler handler,
                            TokenRevocations* revocations) {
  // Not a coroutine itself: an authenticated request costs no coroutine
  // frame beyond the handler's own, and only a 401 (or, with revocations, a
  // check) needs one here.
  if (revocations != nullptr && !revocations->enabled()) revocations = nullptr;
  auto shared = std::make_shared<AuthenticatedHandler>(std::move(handler));
  return [&jwt, shared, revocations](http::Request& request) {
    auto auth = Authenticate(request, jwt);
    if (auto* error = std::get_if<http::Response>(&auth)) return Answer(std::move(*error));
    auto& claims = std::get<JwtClaims>(auth);
    if (revocations != nullptr && !claims.jti.empty())
      return CheckedThenHandled(request, std::move(claims), revocations, shared.get());
    return (*shared)(request, std::move(claims));
  };
}

http::Response StorageFailure(const Error& error, const http::Request& request) {
  LogRequest(request, spdlog::level::err, "storage error: {}", error.ToString());
  return http::Response::Error(
      503, "storage_unavailable",
      "the database is unavailable, try again (request id " + request.request_id + ")");
}

std::int64_t ParseId(std::string_view text) {
  if (text.empty() || text.size() > 18) return 0;
  std::int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return 0;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace disco::service
