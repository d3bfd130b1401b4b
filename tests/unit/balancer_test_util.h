// Helpers shared by the balancer tests: snapshots of numbered endpoints, and
// the statistical bound every distribution test uses.
//
// Thread safety: plain functions; snapshots are immutable once built.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "disco/balancer.h"
#include "disco/snapshot.h"

namespace disco::testing {

// Ids sort in index order ("ep-00000", "ep-00001", ...), so endpoint i of the
// snapshot is instance i.
inline ServiceInstance MakeInstance(std::size_t i, std::uint32_t weight = 1) {
  char id[32];
  std::snprintf(id, sizeof id, "ep-%05zu", i);
  ServiceInstance instance;
  instance.service = "svc";
  instance.id = id;
  instance.host = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
  instance.port = static_cast<std::uint16_t>(8000 + i % 1000);
  instance.weight = weight;
  return instance;
}

inline SnapshotConstPtr MakeEndpoints(std::vector<ServiceInstance> instances) {
  return MakeSnapshot("svc", std::move(instances), nullptr, 1);
}

inline SnapshotConstPtr MakeEndpoints(std::size_t n) {
  std::vector<ServiceInstance> instances;
  for (std::size_t i = 0; i < n; ++i) instances.push_back(MakeInstance(i));
  return MakeEndpoints(std::move(instances));
}

inline SnapshotConstPtr MakeWeightedEndpoints(std::span<const std::uint32_t> weights) {
  std::vector<ServiceInstance> instances;
  for (std::size_t i = 0; i < weights.size(); ++i) instances.push_back(MakeInstance(i, weights[i]));
  return MakeEndpoints(std::move(instances));
}

inline std::unique_ptr<Picker> BuildPicker(std::string_view policy, SnapshotConstPtr snapshot) {
  auto balancer = MakeBalancer(policy);
  EXPECT_TRUE(balancer.has_value()) << policy;
  return (*balancer)->Build(std::move(snapshot));
}

// Index of `endpoint` in `snapshot`, or SIZE_MAX if it is not one of its
// endpoints (a picker must never return anything else).
inline std::size_t IndexOf(const Snapshot& snapshot, const Endpoint* endpoint) {
  const Endpoint* first = snapshot.endpoints.data();
  if (endpoint < first || endpoint >= first + snapshot.endpoints.size()) return SIZE_MAX;
  return static_cast<std::size_t>(endpoint - first);
}

inline std::vector<std::string> MakeKeys(std::size_t count, std::string_view prefix = "user-") {
  std::vector<std::string> keys;
  keys.reserve(count);
  for (std::size_t i = 0; i < count; ++i) keys.push_back(std::string(prefix) + std::to_string(i));
  return keys;
}

// The bound of every distribution test. Over `picks` picks, endpoint i's count
// is modelled as Binomial(picks, p_i) (sampling noise) around a share p_i
// that the policy itself may realise only to within a relative standard
// deviation `share_spread` (0 for policies whose long-run share is exactly
// p_i; 1/sqrt(V) for a hash ring with V points per endpoint, whose share is a
// sum of V random arcs). Each count must lie within kSigmas standard
// deviations of picks × p_i: under a normal approximation a correct policy
// fails one bucket with probability 5.7e-7, so a whole run of these tests
// (a few hundred buckets) fails by chance less than once in ten thousand runs.
inline constexpr double kSigmas = 5.0;

inline void ExpectShares(std::span<const std::uint64_t> counts,
                         std::span<const double> probabilities, double share_spread = 0.0) {
  ASSERT_EQ(counts.size(), probabilities.size());
  std::uint64_t picks = 0;
  for (auto count : counts) picks += count;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const double p = probabilities[i];
    const double mean = static_cast<double>(picks) * p;
    const double sampling_variance = mean * (1.0 - p);
    const double policy_sd = mean * share_spread;
    const double sd = std::sqrt(sampling_variance + policy_sd * policy_sd);
    EXPECT_NEAR(static_cast<double>(counts[i]), mean, kSigmas * sd)
        << "endpoint " << i << " of " << counts.size() << ", " << picks << " picks, sd " << sd;
  }
}

inline std::vector<double> Uniform(std::size_t n) {
  return std::vector<double>(n, 1.0 / static_cast<double>(n));
}

}  // namespace disco::testing
