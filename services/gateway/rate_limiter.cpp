#include "gateway/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace disco::gateway {

RateLimiter::RateLimiter(double requests_per_second, double burst, std::size_t max_keys,
                         Clock clock)
    : rate_(requests_per_second),
      burst_(std::max(1.0, burst)),
      max_per_shard_(std::max<std::size_t>(1, max_keys / kShards)),
      full_after_ns_(static_cast<std::int64_t>(std::ceil(burst_ / rate_ * 1e9))),
      clock_(std::move(clock)) {}

std::int64_t RateLimiter::NowNs() const {
  auto now = clock_ ? clock_() : std::chrono::steady_clock::now();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
}

void RateLimiter::SweepLocked(Shard& shard, std::int64_t now_ns) {
  std::erase_if(shard.buckets,
                [&](const auto& entry) { return now_ns - entry.second.last_ns >= full_after_ns_; });
}

RateLimiter::Decision RateLimiter::Acquire(std::string_view key) {
  const std::int64_t now = NowNs();
  Shard& shard = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard lock(shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) {
      SweepLocked(shard, now);
      // Still full of active clients: forget an arbitrary one rather than
      // grow without bound (it starts again with a full bucket).
      if (shard.buckets.size() >= max_per_shard_) shard.buckets.erase(shard.buckets.begin());
    }
    it = shard.buckets.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& bucket = it->second;
  double elapsed = static_cast<double>(now - bucket.last_ns) / 1e9;
  bucket.tokens = std::min(burst_, bucket.tokens + std::max(0.0, elapsed) * rate_);
  bucket.last_ns = now;
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return {};
  }
  double wait_s = (1.0 - bucket.tokens) / rate_;
  return Decision{false,
                  std::chrono::milliseconds(static_cast<std::int64_t>(std::ceil(wait_s * 1000.0)))};
}

std::size_t RateLimiter::tracked() const {
  std::size_t total = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard.mu);
    total += shard.buckets.size();
  }
  return total;
}

}  // namespace disco::gateway
