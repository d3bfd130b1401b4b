// weighted_round_robin beyond the shared harness: nginx's exact sequence,
// exact counts per period, the EDF fallback and its memory cap.
#include "balance/weighted_round_robin.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <thread>

#include "disco/per_cpu.h"
#include "unit/balancer_test_util.h"

namespace disco::testing {
namespace {

using balance::BuildWeightedSchedule;

// nginx's smooth weighted round robin, step by step, as a reference.
std::vector<std::uint32_t> NginxReference(const std::vector<std::uint32_t>& weights,
                                          std::size_t steps) {
  std::vector<std::int64_t> current(weights.size(), 0);
  std::int64_t total = 0;
  for (auto w : weights) total += w;
  std::vector<std::uint32_t> picks;
  for (std::size_t step = 0; step < steps; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      current[i] += weights[i];
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    picks.push_back(static_cast<std::uint32_t>(best));
  }
  return picks;
}

std::vector<std::uint64_t> CountPerEndpoint(const std::vector<std::uint32_t>& schedule,
                                            std::size_t n) {
  std::vector<std::uint64_t> counts(n);
  for (auto index : schedule) ++counts.at(index);
  return counts;
}

TEST(WeightedRoundRobinTest, NginxDocumentedSequence) {
  // nginx's documentation of smooth weighted round robin: weights a=5, b=1,
  // c=1 give a a b a c a a.
  const std::vector<std::uint32_t> expected = {0, 0, 1, 0, 2, 0, 0};
  EXPECT_EQ(BuildWeightedSchedule(std::vector<std::uint32_t>{5, 1, 1}), expected);
  // Scaling all weights does not change the sequence.
  EXPECT_EQ(BuildWeightedSchedule(std::vector<std::uint32_t>{50, 10, 10}), expected);

  // Through the picker: it starts at a random phase, so its picks are a
  // rotation of the sequence, repeating with period 7.
  const std::vector<std::uint32_t> weights = {5, 1, 1};
  auto snapshot = MakeWeightedEndpoints(weights);
  auto picker = BuildPicker("weighted_round_robin", snapshot);
  std::vector<std::size_t> picks;
  for (int i = 0; i < 21; ++i) picks.push_back(IndexOf(*snapshot, picker->Pick({})));
  bool is_rotation = false;
  for (std::size_t phase = 0; phase < expected.size() && !is_rotation; ++phase) {
    is_rotation = true;
    for (std::size_t i = 0; i < picks.size(); ++i) {
      if (picks[i] != expected[(phase + i) % expected.size()]) is_rotation = false;
    }
  }
  EXPECT_TRUE(is_rotation) << ::testing::PrintToString(picks);
}

TEST(WeightedRoundRobinTest, ScheduleIsNginxExactlyForRandomWeights) {
  std::mt19937 random(12345);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 1 + random() % 12;
    std::vector<std::uint32_t> weights(n);
    for (auto& w : weights) w = 1 + random() % 20;
    const auto schedule = BuildWeightedSchedule(weights);
    std::uint32_t divisor = 0;
    for (auto w : weights) divisor = std::gcd(divisor, w);
    const std::size_t period = std::accumulate(weights.begin(), weights.end(), 0u) / divisor;
    ASSERT_EQ(schedule.size(), period) << ::testing::PrintToString(weights);
    // Two periods of the reference: the sequence repeats exactly.
    const auto reference = NginxReference(weights, 2 * period);
    for (std::size_t i = 0; i < reference.size(); ++i) {
      ASSERT_EQ(schedule[i % period], reference[i])
          << "step " << i << " weights " << ::testing::PrintToString(weights);
    }
  }
}

TEST(WeightedRoundRobinTest, ExactCountsOverPeriods) {
  const std::vector<std::uint32_t> weights = {1, 2, 3, 4, 10};
  auto snapshot = MakeWeightedEndpoints(weights);
  auto picker = BuildPicker("weighted_round_robin", snapshot);
  constexpr std::uint64_t kPeriods = 1000;
  std::vector<std::uint64_t> counts(weights.size());
  for (std::uint64_t i = 0; i < kPeriods * 20; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  for (std::size_t i = 0; i < weights.size(); ++i) EXPECT_EQ(counts[i], kPeriods * weights[i]) << i;
}

TEST(WeightedRoundRobinTest, NearlyExactCountsWithConcurrentPickers) {
  // Each CPU walks the schedule with its own cursor (balance/cursor.h): every
  // pick takes one distinct slot of its CPU's walk, so each CPU's counts are
  // its stretch of the schedule, exact; the process's counts are the sum of
  // those stretches, within a pick or two per CPU of the weights (a stretch
  // need not end at a period boundary) and never a pick lost.
  const std::vector<std::uint32_t> weights = {3, 1, 2};
  auto snapshot = MakeWeightedEndpoints(weights);
  auto picker = BuildPicker("weighted_round_robin", snapshot);
  constexpr int kThreads = 4;
  constexpr std::uint64_t kPicksPerThread = 6 * 5000;
  std::vector<std::vector<std::uint64_t>> counts(kThreads, std::vector<std::uint64_t>(3));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < kPicksPerThread; ++i) {
        ++counts[t][IndexOf(*snapshot, picker->Pick({}))];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    std::uint64_t sum = 0;
    for (const auto& mine : counts) sum += mine[i];
    total += sum;
    const auto expected = static_cast<std::int64_t>(kThreads * kPicksPerThread / 6 * weights[i]);
    EXPECT_LE(std::abs(static_cast<std::int64_t>(sum) - expected), 2 * std::int64_t{CpuSlots()})
        << i << ": " << sum << " picks, expected " << expected;
  }
  EXPECT_EQ(total, kThreads * kPicksPerThread);
}

TEST(WeightedRoundRobinTest, EqualWeightsArePlainRoundRobin) {
  for (std::size_t n : {1u, 2u, 5u, 4096u, 10'000u}) {
    const std::vector<std::uint32_t> weights(n, 7);
    const auto schedule = BuildWeightedSchedule(weights);
    ASSERT_EQ(schedule.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(schedule[i], i) << "n=" << n;
  }
  EXPECT_TRUE(BuildWeightedSchedule({}).empty());
  // A weight of 0 (not valid in a registry) counts as 1.
  EXPECT_EQ(BuildWeightedSchedule(std::vector<std::uint32_t>{0, 1}),
            (std::vector<std::uint32_t>{0, 1}));
}

TEST(WeightedRoundRobinTest, LargeClustersUseEdfWithExactCounts) {
  // 2,000 endpoints with weights 1..10: n × period = 2,000 × 11,000 is past
  // the exact simulation's budget, so the EDF schedule is used.
  constexpr std::size_t kEndpoints = 2000;
  std::vector<std::uint32_t> weights(kEndpoints);
  for (std::size_t i = 0; i < kEndpoints; ++i) weights[i] = 1 + i % 10;
  const std::uint64_t period = std::accumulate(weights.begin(), weights.end(), std::uint64_t{0});
  ASSERT_GT(kEndpoints * period, balance::kMaxExactScheduleWork);
  const auto schedule = BuildWeightedSchedule(weights);
  ASSERT_EQ(schedule.size(), period);
  const auto counts = CountPerEndpoint(schedule, kEndpoints);
  for (std::size_t i = 0; i < kEndpoints; ++i) ASSERT_EQ(counts[i], weights[i]) << i;
  // Smooth: the first half-period already holds about half of each heavy
  // endpoint's picks, not all of them (a burst) or none.
  std::map<std::uint32_t, std::uint64_t> first_half;
  for (std::size_t i = 0; i < period / 2; ++i) ++first_half[schedule[i]];
  for (std::size_t i = 9; i < kEndpoints; i += 10) {  // weight 10
    EXPECT_GE(first_half[i], 4u) << i;
    EXPECT_LE(first_half[i], 6u) << i;
  }
}

TEST(WeightedRoundRobinTest, HugePeriodsAreScaledDownToTheCap) {
  const std::vector<std::uint32_t> weights = {3'000'000, 1'000'000, 1, 999'983};
  const double total = 3'000'000 + 1'000'000 + 1 + 999'983;
  const auto schedule = BuildWeightedSchedule(weights);
  ASSERT_LE(schedule.size(), balance::kMaxScheduleLength + weights.size());
  ASSERT_GT(schedule.size(), balance::kMaxScheduleLength / 2);
  const auto counts = CountPerEndpoint(schedule, weights.size());
  const double length = static_cast<double>(schedule.size());
  for (std::size_t i = 0; i < weights.size(); ++i) {
    EXPECT_GE(counts[i], 1u) << "every endpoint keeps a slot";
    // Scaling floors each weight: at most one slot lost per endpoint.
    EXPECT_NEAR(static_cast<double>(counts[i]), weights[i] / total * length, 2.0) << i;
  }
}

TEST(WeightedRoundRobinTest, EjectedEndpointsShareIsSplitByWeight) {
  // a ejected: b and c keep their 1:1 ratio exactly, because skipped slots
  // are consumed rather than handed to the next endpoint.
  const std::vector<std::uint32_t> weights = {5, 1, 1};
  auto snapshot = MakeWeightedEndpoints(weights);
  snapshot->endpoints[0].stats->ejected.store(true);
  auto picker = BuildPicker("weighted_round_robin", snapshot);
  std::vector<std::uint64_t> counts(3);
  for (int i = 0; i < 1000; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  EXPECT_EQ(counts, (std::vector<std::uint64_t>{0, 500, 500}));

  // c ejected: a and b keep 5:1.
  snapshot->endpoints[0].stats->ejected.store(false);
  snapshot->endpoints[2].stats->ejected.store(true);
  counts.assign(3, 0);
  for (int i = 0; i < 6000; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  EXPECT_EQ(counts[2], 0u);
  EXPECT_NEAR(static_cast<double>(counts[0]) / static_cast<double>(counts[1]), 5.0, 0.01);
}

TEST(WeightedRoundRobinTest, WeightsFromTheRegistryAreHonoured) {
  const std::vector<std::uint32_t> weights = {100, 300, 600};
  auto snapshot = MakeWeightedEndpoints(weights);
  auto picker = BuildPicker("weighted_round_robin", snapshot);
  std::vector<std::uint64_t> counts(3);
  for (int i = 0; i < 10 * 1000; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  EXPECT_EQ(counts, (std::vector<std::uint64_t>{1000, 3000, 6000}));
}

}  // namespace
}  // namespace disco::testing
