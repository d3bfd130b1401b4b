#include "gateway/shared_rate_limiter.h"

#include <cstdio>

#include "common/logging.h"

namespace disco::gateway {
namespace {

namespace redis = service::redis;

// KEYS: one bucket per key, checked in order. ARGV: rate and burst of each.
// Returns {index of the refusing bucket (1-based; 0: allowed), wait in ms}.
// The bucket stores its tokens and the Redis time (seconds, microseconds)
// of its last update; the refill is computed from the whole seconds and the
// microseconds apart so that no float has to hold a microsecond timestamp.
const redis::Script& BucketScript() {
  static const redis::Script script(R"lua(
local t = redis.call('TIME')
local now_s, now_us = tonumber(t[1]), tonumber(t[2])
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local b = redis.call('HMGET', KEYS[i], 'tokens', 's', 'us')
  local tokens = tonumber(b[1])
  if tokens == nil or tonumber(b[2]) == nil or tonumber(b[3]) == nil then
    tokens = burst
  else
    local elapsed = (now_s - tonumber(b[2])) + (now_us - tonumber(b[3])) / 1e6
    if elapsed > 0 then tokens = math.min(burst, tokens + elapsed * rate) end
  end
  local refused = tokens < 1
  if not refused then tokens = tokens - 1 end
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens), 's', t[1], 'us', t[2])
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
  if refused then return {i, math.ceil((1 - tokens) / rate * 1000)} end
end
return {0, 0}
)lua");
  return script;
}

std::string Number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// A client key as sent by a hostile peer (X-Forwarded-For, when trusted) is
// bounded before it becomes part of a Redis key.
constexpr std::size_t kMaxClientBytes = 128;

}  // namespace

SharedRateLimiter::SharedRateLimiter(redis::Client& redis, MetricsRegistry& metrics)
    : redis_(redis) {
  fallback_ = &metrics
                   .CounterFamily("gateway_rate_limit_fallback_total",
                                  "Requests rate-limited by this replica alone because Redis "
                                  "(the shared limit) could not answer in time")
                   .With({});
}

std::uint64_t SharedRateLimiter::fallbacks() const { return fallback_->value(); }

http::Awaitable<std::optional<SharedRateLimiter::Verdict>> SharedRateLimiter::Acquire(
    std::string client, std::span<const Bucket> buckets) {
  if (client.size() > kMaxClientBytes) client.resize(kMaxClientBytes);
  std::vector<std::string> keys;
  std::vector<std::string> args;
  keys.reserve(buckets.size());
  args.reserve(2 * buckets.size());
  for (const auto& bucket : buckets) {
    keys.push_back("disco:ratelimit:" + std::string(bucket.scope) + ":" + client);
    args.push_back(Number(bucket.rate));
    args.push_back(Number(bucket.burst));
  }
  auto reply = co_await redis_.Eval(BucketScript(), std::move(keys), std::move(args));
  std::optional<Verdict> verdict;
  std::string why;
  if (!reply) {
    why = reply.error().ToString();
  } else if (reply->type != redis::Reply::Type::kArray || reply->elements.size() != 2 ||
             reply->elements[0].type != redis::Reply::Type::kInteger ||
             reply->elements[1].type != redis::Reply::Type::kInteger) {
    why = reply->is_error() ? "redis error: " + reply->text : "unexpected script reply";
  } else {
    verdict =
        Verdict{static_cast<int>(reply->elements[0].integer) - 1,
                std::chrono::milliseconds(std::max<std::int64_t>(0, reply->elements[1].integer))};
  }
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  if (verdict) {
    // The end of an episode is told only if its start was.
    if (falling_back_.exchange(false, std::memory_order_relaxed) &&
        episode_logged_.exchange(false, std::memory_order_relaxed)) {
      service::Log().info("rate limit: shared through redis again");
    }
    co_return verdict;
  }
  fallback_->Inc();
  if (!falling_back_.exchange(true, std::memory_order_relaxed)) {
    // A Redis that answers some calls late (a loaded host) flips between the
    // two states per request: one warning per kLogEvery at most.
    auto last = last_warning_.load(std::memory_order_relaxed);
    if ((last == 0 || now - last >= kLogEvery.count()) &&
        last_warning_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
      episode_logged_.store(true, std::memory_order_relaxed);
      service::Log().warn(
          "rate limit: redis cannot answer ({}); each replica limits alone until it can "
          "({} requests so far; told at most every {} s)",
          why, fallback_->value(),
          std::chrono::duration_cast<std::chrono::seconds>(kLogEvery).count());
    }
  }
  co_return std::nullopt;
}

}  // namespace disco::gateway
