// JWT (HS256) for the demo services: issue on login, verify on every call.
//
// The algorithm is pinned: a token is accepted only if its header says
// exactly "HS256" and its signature verifies with our secret; "none", other
// HMAC sizes and RSA/EC algorithms are rejected before libjwt looks at the
// signature (the classic algorithm-confusion attacks). Claims: sub (the user
// id as a decimal string), username, iat, exp; exp is required and checked.
//
// Thread safety: a JwtCodec is immutable after construction; Issue and Verify
// may run on any number of threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "disco/error.h"

namespace disco::service {

struct JwtClaims {
  std::int64_t user_id = 0;
  std::string username;
  std::int64_t issued_at = 0;   // seconds since the epoch
  std::int64_t expires_at = 0;  // seconds since the epoch
};

class JwtCodec {
 public:
  // REQUIRES: secret is at least kMinSecretBytes long.
  JwtCodec(std::string secret, std::chrono::seconds ttl);

  static constexpr std::size_t kMinSecretBytes = 32;

  std::chrono::seconds ttl() const { return ttl_; }

  // A signed token for the user, valid for ttl() from `now`.
  Result<std::string> Issue(
      std::int64_t user_id, std::string_view username,
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

  // Errors (all kPermissionDenied, message safe to show the caller): malformed
  // token, wrong algorithm, bad signature, expired, missing or bad claims.
  Result<JwtClaims> Verify(std::string_view token, std::chrono::system_clock::time_point now =
                                                       std::chrono::system_clock::now()) const;

 private:
  std::string secret_;
  std::chrono::seconds ttl_;
};

// 48 random bytes from the OS, base64url-encoded (for --dev).
std::string RandomSecret();

}  // namespace disco::service
