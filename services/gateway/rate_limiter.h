// RateLimiter: one token bucket per client key (the client's IP address).
//
// Each key's bucket holds up to `burst` tokens and refills at
// `requests_per_second`; a request takes one token or is refused with the
// time until the next token. Buckets are created on first sight and dropped
// once they would be full again (the client has been quiet long enough), so
// memory follows the number of recently active clients; a hard cap bounds it
// against floods of distinct keys.
//
// Thread safety: Acquire() may be called from any thread; keys are spread
// over shards, each with its own short-held mutex.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace disco::gateway {

class RateLimiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // REQUIRES: requests_per_second > 0, burst >= 1. `clock` for tests.
  RateLimiter(double requests_per_second, double burst, std::size_t max_keys = 100'000,
              Clock clock = {});

  struct Decision {
    bool allowed = true;
    std::chrono::milliseconds retry_after{0};  // when refused: until one token is back
  };

  Decision Acquire(std::string_view key);

  // Buckets held now (for tests and the dashboard).
  std::size_t tracked() const;

 private:
  struct Bucket {
    double tokens = 0;
    std::int64_t last_ns = 0;
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket, Hash, std::equal_to<>> buckets;
  };
  static constexpr std::size_t kShards = 16;

  std::int64_t NowNs() const;
  // Drops buckets that have refilled completely. REQUIRES: shard.mu held.
  void SweepLocked(Shard& shard, std::int64_t now_ns);

  const double rate_;
  const double burst_;
  const std::size_t max_per_shard_;
  const std::int64_t full_after_ns_;  // time for an empty bucket to fill
  const Clock clock_;
  std::array<Shard, kShards> shards_;
};

}  // namespace disco::gateway
