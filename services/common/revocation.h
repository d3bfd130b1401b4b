// TokenRevocations: logout for JWTs, shared by every replica through Redis.
//
// Revoke() stores the token's jti in Redis until the token's own expiry
// (key disco:revoked:<jti>, EXAT exp) and raises disco:revoked:until, the
// latest expiry of any revocation, in the same Lua script. Check() reads both
// in one MGET. A token without a jti (none of ours) cannot be revoked.
//
// When Redis cannot answer a check (down, slow past --redis-timeout-ms):
//   - fail closed (kUnavailable → 503) while a revocation may still be live:
//     the last `until` read is in the future, or nothing has been read since
//     this process started (a restarted instance cannot know);
//   - fail open (kValid, counted in auth_revocation_fail_open_total) once
//     the last `until` read has passed: no revoked token can still be
//     unexpired, so there is nothing to honour, and a Redis outage does not
//     take authentication down with it.
// Revocations this process has seen are also kept locally (bounded), so a
// replayed revoked token is refused even while Redis is down.
//
// Without Redis (null client) enabled() is false: Check() always says
// kValid and Revoke() fails with kInvalidArgument (logout answers 501).
//
// Thread safety: every method may be called from any thread or coroutine.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "disco/http/awaitable.h"
#include "disco/metrics.h"
#include "jwt.h"
#include "redis_client.h"

namespace disco::service {

class TokenRevocations {
 public:
  // `redis` may be null (no --redis); it must outlive this object.
  explicit TokenRevocations(redis::Client* redis,
                            MetricsRegistry& metrics = MetricsRegistry::Default());

  bool enabled() const { return redis_ != nullptr; }

  enum class Verdict { kValid, kRevoked, kUnavailable };
  http::Awaitable<Verdict> Check(JwtClaims claims);

  // Errors: kInvalidArgument (not enabled, or the token has no jti),
  // kUnavailable / kTimeout (Redis could not take it: nothing was revoked).
  http::Awaitable<Result<void>> Revoke(JwtClaims claims);

 private:
  void RememberRevoked(const std::string& jti, std::int64_t expires_at);
  bool KnownRevoked(const std::string& jti, std::int64_t now);

  redis::Client* redis_;
  // Latest expiry of any revocation, as last read from Redis; INT64_MAX
  // until the first read (unknown: assume one may be live).
  std::atomic<std::int64_t> revoked_until_;
  Counter* fail_open_;
  Counter* fail_closed_;
  Counter* refused_;
  std::mutex mu_;
  std::unordered_map<std::string, std::int64_t> known_;  // jti → exp; bounded
};

}  // namespace disco::service
