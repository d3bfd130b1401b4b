// SharedRateLimiter: the gateway's token buckets kept in Redis, so that every
// gateway replica draws from the same bucket per client.
//
// The algorithm is RateLimiter's (rate_limiter.h): a bucket holds up to
// `burst` tokens, refills at `rate` per second, a request takes one token or
// is refused with the time until the next one. It runs as one Lua script in
// Redis (atomic: two replicas never both take the last token), on Redis's
// own clock (TIME), so replicas whose clocks disagree still share one
// refill. One script call checks all of a request's buckets in order (the
// route's, then the global one) and stops at the first that refuses, as the
// local limiters do. Buckets are hashes disco:ratelimit:<scope>:<client>
// that expire once they would be full again, so Redis holds only recently
// active clients.
//
// Acquire() answers nullopt when Redis cannot (down, slower than the client's
// deadline, too many calls in flight): the caller then uses its local
// limiters (one per replica, as without Redis). Such requests are counted in
// gateway_rate_limit_fallback_total; the log says when the fallback starts
// and when shared limiting resumes, once each (a Redis that flips between
// answering and not is told about at most every 10 s).
//
// Thread safety: Acquire() may be called from any thread or coroutine.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/redis_client.h"
#include "disco/http/awaitable.h"
#include "disco/metrics.h"

namespace disco::gateway {

class SharedRateLimiter {
 public:
  // `redis` must outlive the limiter.
  SharedRateLimiter(service::redis::Client& redis, MetricsRegistry& metrics);

  struct Bucket {
    std::string_view scope;  // "global", or the route's pattern
    double rate = 0;         // tokens per second, > 0
    double burst = 1;        // >= 1
  };
  struct Verdict {
    int refused = -1;  // index of the bucket that refused; -1: allowed
    std::chrono::milliseconds retry_after{0};
  };

  // REQUIRES: 1 <= buckets.size() <= 4.
  http::Awaitable<std::optional<Verdict>> Acquire(std::string client,
                                                  std::span<const Bucket> buckets);

  std::uint64_t fallbacks() const;

 private:
  service::redis::Client& redis_;
  static constexpr std::chrono::nanoseconds kLogEvery = std::chrono::seconds(10);
  Counter* fallback_;
  std::atomic<bool> falling_back_{false};
  std::atomic<bool> episode_logged_{false};
  std::atomic<std::int64_t> last_warning_{0};  // steady_clock, nanoseconds
};

}  // namespace disco::gateway
