// JWT (HS256) for the demo services: issue on login, verify on every call.
//
// The algorithm is pinned: a token is accepted only if its header says
// exactly "HS256" and its signature verifies with our secret; "none", other
// HMAC sizes and RSA/EC algorithms are rejected before libjwt looks at the
// signature (the classic algorithm-confusion attacks). Claims: sub (the user
// id as a decimal string), username, iat, exp, jti (128 random bits,
// base64url: the id logout revokes; optional on verify, at most 64 bytes)
// and, if present, nbf (RFC 7519 §4.1.5), times as integer seconds. exp and iat are required; a token is
// refused once exp has passed, and while iat or nbf is more than
// kMaxSkewSeconds ahead of our clock (the leeway for clocks of instances that
// disagree; none is given on exp).
//
// Verified tokens are remembered (bounded, keyed by the whole token, until
// their exp), so a client that sends the same token again costs a hash lookup
// instead of a base64 decode, a JSON parse and an HMAC; an entry can only be
// hit by the exact token that verified, and exp, iat and nbf are checked
// again on every hit (the clock may have been set back).
//
// Thread safety: Issue and Verify may run on any number of threads at once
// (the cache takes a mutex for a lookup or an insert).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "disco/error.h"

namespace disco::service {

struct JwtClaims {
  std::int64_t user_id = 0;
  std::string username;
  std::int64_t issued_at = 0;   // seconds since the epoch
  std::int64_t expires_at = 0;  // seconds since the epoch
  std::int64_t not_before = 0;  // seconds since the epoch; 0 when the token has no nbf
  // The token's unique id (RFC 7519 §4.1.7), what logout revokes; empty for
  // a token issued without one (it cannot be revoked).
  std::string jti;
};

class JwtCodec {
 public:
  // REQUIRES: secret is at least kMinSecretBytes long. `cache_entries`: how
  // many verified tokens to remember (0: none).
  JwtCodec(std::string secret, std::chrono::seconds ttl, std::size_t cache_entries = 4096);

  static constexpr std::size_t kMinSecretBytes = 32;
  // How far ahead of our clock a token's iat and nbf may be (clock skew
  // between the instance that issued it and the one that checks it).
  static constexpr std::int64_t kMaxSkewSeconds = 60;

  std::chrono::seconds ttl() const { return ttl_; }

  // A signed token for the user, valid for ttl() from `now`.
  Result<std::string> Issue(
      std::int64_t user_id, std::string_view username,
      std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

  // Errors (all kPermissionDenied, message safe to show the caller): malformed
  // token, wrong algorithm, bad signature, expired, not valid yet (iat or nbf
  // ahead), missing or bad claims.
  Result<JwtClaims> Verify(std::string_view token, std::chrono::system_clock::time_point now =
                                                       std::chrono::system_clock::now()) const;

 private:
  Result<JwtClaims> VerifyUncached(std::string_view token, std::int64_t now) const;

  std::string secret_;
  std::chrono::seconds ttl_;
  std::size_t cache_entries_;
  mutable std::mutex cache_mu_;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  mutable std::unordered_map<std::string, JwtClaims, Hash, std::equal_to<>> cache_;
};

// 48 random bytes from the OS, base64url-encoded (for --dev).
std::string RandomSecret();

// `bytes` random bytes from the OS, base64url-encoded (token ids).
std::string RandomToken(std::size_t bytes);

}  // namespace disco::service
