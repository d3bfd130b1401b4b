// A small, fast per-thread random number generator for the pick path.
//
// std::mt19937 is 5 KB of state and slow to seed; pickers need a few random
// bits per call from any thread without locks. wyrand: 8 bytes of state per
// thread, seeded once from std::random_device.
#pragma once

#include <cstdint>
#include <random>

namespace disco {

inline std::uint64_t FastRandom() {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  state += 0xa0761d6478bd642full;
  __uint128_t t = static_cast<__uint128_t>(state) * (state ^ 0xe7037ed1a0b428dbull);
  return static_cast<std::uint64_t>(t >> 64) ^ static_cast<std::uint64_t>(t);
}

// Uniform in [0, n) without division (Lemire's multiply-shift). REQUIRES: n > 0.
inline std::uint32_t FastRandomBelow(std::uint32_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(static_cast<std::uint32_t>(FastRandom())) * n) >> 32);
}

}  // namespace disco
