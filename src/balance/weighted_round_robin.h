// The schedule behind weighted_round_robin, exposed for its unit tests.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace disco::balance {

// Past this much work (endpoints × period) Build stops simulating nginx step
// by step and uses the earliest-deadline-first schedule instead.
inline constexpr std::uint64_t kMaxExactScheduleWork = std::uint64_t{1} << 24;
// Longest schedule kept in memory (4 bytes an entry): past it, weights are
// scaled down (each stays >= 1) so that the schedule fits.
inline constexpr std::uint64_t kMaxScheduleLength = std::uint64_t{1} << 20;

// One period of picks (endpoint indices) for `weights` (a weight of 0 counts
// as 1), each endpoint i appearing weights[i] / gcd times: the exact sequence
// of nginx's smooth weighted round robin when that is cheap enough, else an
// EDF sequence with the same (or, past kMaxScheduleLength, nearly the same)
// proportions. Equal weights give 0, 1, ..., n-1. Empty for no weights.
std::vector<std::uint32_t> BuildWeightedSchedule(std::span<const std::uint32_t> weights);

}  // namespace disco::balance
