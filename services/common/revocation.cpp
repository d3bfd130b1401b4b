#include "revocation.h"

#include <chrono>
#include <limits>

#include "logging.h"

namespace disco::service {
namespace {

constexpr std::string_view kKeyPrefix = "disco:revoked:";
constexpr std::string_view kUntilKey = "disco:revoked:until";
constexpr std::size_t kMaxKnown = 10'000;

// Sets the revocation and raises `until`, atomically: a check that sees the
// revocation also sees an `until` covering it.
const redis::Script& RevokeScript() {
  static const redis::Script script(R"lua(
redis.call('SET', KEYS[1], '1', 'EXAT', ARGV[1])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tonumber(ARGV[1]) > latest then
  redis.call('SET', KEYS[2], ARGV[1], 'EXAT', ARGV[1])
end
return 1
)lua");
  return script;
}

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t ParseSeconds(const redis::Reply& reply) {
  if (reply.type != redis::Reply::Type::kBulk) return 0;
  std::int64_t value = 0;
  for (char c : reply.text) {
    if (c < '0' || c > '9' || value > std::numeric_limits<std::int64_t>::max() / 10 - 10) return 0;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace

TokenRevocations::TokenRevocations(redis::Client* redis, MetricsRegistry& metrics)
    : redis_(redis), revoked_until_(std::numeric_limits<std::int64_t>::max()) {
  auto& checks = metrics.CounterFamily(
      "auth_revocation_unchecked_total",
      "Authenticated requests whose token could not be checked against Redis's revocations, "
      "by what was done: open (let through: no revocation can be live) or closed (503)",
      {"mode"});
  fail_open_ = &checks.With({"open"});
  fail_closed_ = &checks.With({"closed"});
  refused_ = &metrics
                  .CounterFamily("auth_revoked_refused_total",
                                 "Requests refused because their token was revoked (logout)")
                  .With({});
}

void TokenRevocations::RememberRevoked(const std::string& jti, std::int64_t expires_at) {
  std::lock_guard lock(mu_);
  if (known_.size() >= kMaxKnown) {
    const auto now = NowSeconds();
    std::erase_if(known_, [now](const auto& entry) { return entry.second <= now; });
    // Still full of live revocations: forget some (Redis still has them).
    for (std::size_t n = kMaxKnown / 4; n > 0 && known_.size() >= kMaxKnown; --n)
      known_.erase(known_.begin());
  }
  known_[jti] = expires_at;
}

bool TokenRevocations::KnownRevoked(const std::string& jti, std::int64_t now) {
  std::lock_guard lock(mu_);
  auto it = known_.find(jti);
  return it != known_.end() && it->second > now;
}

http::Awaitable<TokenRevocations::Verdict> TokenRevocations::Check(JwtClaims claims) {
  if (redis_ == nullptr || claims.jti.empty()) co_return Verdict::kValid;
  const auto now = NowSeconds();
  if (KnownRevoked(claims.jti, now)) {
    refused_->Inc();
    co_return Verdict::kRevoked;
  }
  std::vector<std::string> command{"MGET", std::string(kKeyPrefix) + claims.jti,
                                   std::string(kUntilKey)};
  auto reply = co_await redis_->Call(std::move(command));
  if (reply && reply->type == redis::Reply::Type::kArray && reply->elements.size() == 2) {
    revoked_until_.store(ParseSeconds(reply->elements[1]), std::memory_order_relaxed);
    if (reply->elements[0].type == redis::Reply::Type::kNil) co_return Verdict::kValid;
    RememberRevoked(claims.jti, claims.expires_at);
    refused_->Inc();
    co_return Verdict::kRevoked;
  }
  // Could not ask (or a strange answer): see the header for the choice.
  if (revoked_until_.load(std::memory_order_relaxed) > now) {
    fail_closed_->Inc();
    co_return Verdict::kUnavailable;
  }
  fail_open_->Inc();
  co_return Verdict::kValid;
}

http::Awaitable<Result<void>> TokenRevocations::Revoke(JwtClaims claims) {
  if (redis_ == nullptr)
    co_return Fail(ErrorCode::kInvalidArgument, "token revocation needs --redis");
  if (claims.jti.empty())
    co_return Fail(ErrorCode::kInvalidArgument, "the token has no jti claim to revoke");
  std::vector<std::string> keys{std::string(kKeyPrefix) + claims.jti, std::string(kUntilKey)};
  std::vector<std::string> args{std::to_string(claims.expires_at)};
  auto reply = co_await redis_->Eval(RevokeScript(), std::move(keys), std::move(args));
  if (!reply) co_return std::unexpected(reply.error());
  if (reply->is_error()) co_return Fail(ErrorCode::kUnavailable, "redis refused: " + reply->text);
  RememberRevoked(claims.jti, claims.expires_at);
  // Raise our own view of `until` too (never lower it: Redis may know later ones).
  auto seen = revoked_until_.load(std::memory_order_relaxed);
  while (seen < claims.expires_at && !revoked_until_.compare_exchange_weak(
                                         seen, claims.expires_at, std::memory_order_relaxed)) {
  }
  co_return Result<void>{};
}

}  // namespace disco::service
