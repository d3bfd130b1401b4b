// Exponential backoff with full jitter, for reconnect and retry loops.
//
// Thread safety: one Backoff per loop; not shared between threads.
#pragma once

#include <algorithm>
#include <chrono>
#include <random>

namespace disco {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, double multiplier = 2.0)
      : initial_(initial), max_(max), multiplier_(multiplier), next_(initial) {}

  // The delay before the next attempt: uniform in [next/2, next], then next grows.
  std::chrono::milliseconds Next() {
    auto ceiling = next_;
    next_ = std::min(max_, std::chrono::milliseconds(static_cast<long>(next_.count() * multiplier_)));
    std::uniform_int_distribution<long> dist(ceiling.count() / 2, ceiling.count());
    return std::chrono::milliseconds(dist(rng_));
  }

  void Reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  double multiplier_;
  std::chrono::milliseconds next_;
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace disco
