// ring_hash beyond the shared harness: the hash function, stickiness, key
// movement when endpoints come and go, weights, ejection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "balance/hash.h"
#include "unit/balancer_test_util.h"

namespace disco::testing {
namespace {

using balance::Hash64;

// Which instance id each key maps to.
std::vector<std::string> Assign(Picker& picker, const std::vector<std::string>& keys) {
  std::vector<std::string> owners;
  owners.reserve(keys.size());
  for (const auto& key : keys) owners.push_back(picker.Pick(PickContext{key})->instance.id);
  return owners;
}

std::vector<ServiceInstance> Instances(std::size_t n) {
  std::vector<ServiceInstance> instances;
  for (std::size_t i = 0; i < n; ++i) instances.push_back(MakeInstance(i));
  return instances;
}

TEST(RingHashTest, Hash64IsXxh64) {
  // Reference values from `xxhsum -H1` (xxHash 0.8.1), which covers the
  // short, 4-byte, 8-byte and 32-byte-stripe paths.
  EXPECT_EQ(Hash64(""), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(Hash64("a"), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(Hash64("abc"), 0x44BC2CF5AD770999ull);
  EXPECT_EQ(Hash64("The quick brown fox jumps over the lazy dog"), 0x0B242D361FDA71BCull);
  EXPECT_EQ(Hash64(std::string(100, 'x')), 0x92F0DE5A88A3C094ull);
}

// The ring exactly as ring_hash.cpp documents it, built the slow and obvious
// way: point j (1-based) of an endpoint is Mix64(XXH64(id) + j × golden),
// points(weight) points per endpoint; a key goes to the first point at or
// after XXH64(key), wrapping around.
std::vector<std::string> ReferenceAssign(const Snapshot& snapshot,
                                         std::uint64_t (*points)(std::uint32_t weight),
                                         const std::vector<std::string>& keys) {
  std::vector<std::pair<std::uint64_t, std::uint32_t>> ring;
  for (std::uint32_t i = 0; i < snapshot.endpoints.size(); ++i) {
    const auto& instance = snapshot.endpoints[i].instance;
    const std::uint64_t base = Hash64(instance.id);
    for (std::uint64_t j = 1; j <= points(instance.weight); ++j) {
      ring.emplace_back(balance::Mix64(base + j * 0x9E3779B97F4A7C15ull), i);
    }
  }
  std::sort(ring.begin(), ring.end());
  std::vector<std::string> owners;
  for (const auto& key : keys) {
    auto it = std::lower_bound(ring.begin(), ring.end(), std::make_pair(Hash64(key), 0u));
    if (it == ring.end()) it = ring.begin();
    owners.push_back(snapshot.endpoints[it->second].instance.id);
  }
  return owners;
}

TEST(RingHashTest, RingIsExactlyTheDocumentedOne) {
  const auto keys = MakeKeys(5000, "k");
  struct Case {
    SnapshotConstPtr snapshot;
    std::uint64_t (*points)(std::uint32_t weight);
  };
  const std::vector<std::uint32_t> weights = {1, 2, 3, 4};
  const std::vector<std::uint32_t> heavy(20, 10'000);
  const std::vector<Case> cases = {
      // 100 points, ×16 to reach 1,024.
      {MakeEndpoints(1), [](std::uint32_t w) -> std::uint64_t { return w * 1600; }},
      // 2,000 points.
      {MakeEndpoints(20), [](std::uint32_t w) -> std::uint64_t { return w * 100; }},
      // 1,000 points, ×2.
      {MakeWeightedEndpoints(weights), [](std::uint32_t w) -> std::uint64_t { return w * 200; }},
      // 300,000 points: 2^16 index buckets.
      {MakeEndpoints(3000), [](std::uint32_t w) -> std::uint64_t { return w * 100; }},
      // 20,000,000 points, /32 (rounded) to stay under 2^20.
      {MakeWeightedEndpoints(heavy),
       [](std::uint32_t w) -> std::uint64_t { return (w * 100ull + 16) >> 5; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.snapshot->endpoints.size());
    auto picker = BuildPicker("ring_hash", c.snapshot);
    EXPECT_EQ(Assign(*picker, keys), ReferenceAssign(*c.snapshot, c.points, keys));
  }
}

TEST(RingHashTest, SameKeySameEndpointAcrossPickersAndRebuilds) {
  const auto keys = MakeKeys(2000);
  auto first = BuildPicker("ring_hash", MakeEndpoints(10));
  const auto owners = Assign(*first, keys);
  EXPECT_EQ(Assign(*first, keys), owners) << "same picker, second pass";
  // Another client, another snapshot of the same instances: same answers.
  auto second = BuildPicker("ring_hash", MakeEndpoints(10));
  EXPECT_EQ(Assign(*second, keys), owners);
  // Addresses changed, ids kept: keys stay put (points come from the id).
  auto moved = Instances(10);
  for (auto& instance : moved) instance.port = static_cast<std::uint16_t>(instance.port + 1);
  auto third = BuildPicker("ring_hash", MakeEndpoints(std::move(moved)));
  EXPECT_EQ(Assign(*third, keys), owners);
}

TEST(RingHashTest, DifferentKeysSpreadOverEveryEndpoint) {
  auto snapshot = MakeEndpoints(20);
  auto picker = BuildPicker("ring_hash", snapshot);
  const auto keys = MakeKeys(10'000, "session-");
  std::vector<std::uint64_t> counts(20);
  for (const auto& key : keys) ++counts[IndexOf(*snapshot, picker->Pick(PickContext{key}))];
  // 100 points per endpoint: shares within 1/sqrt(100) relative spread.
  ExpectShares(counts, Uniform(20), 1.0 / std::sqrt(100.0));
}

TEST(RingHashTest, EmptyKeyPicksAtRandom) {
  auto snapshot = MakeEndpoints(20);
  auto picker = BuildPicker("ring_hash", snapshot);
  std::vector<std::uint64_t> counts(20);
  for (int i = 0; i < 100'000; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  ExpectShares(counts, Uniform(20), 1.0 / std::sqrt(100.0));
}

// Removing one of N endpoints moves exactly the keys that were on it (about
// 1/N of them) and no other; adding one moves about 1/(N+1), all onto the
// newcomer.
TEST(RingHashTest, RemovingOrAddingOneEndpointMovesAboutOneNth) {
  const auto keys = MakeKeys(10'000, "key-");
  for (std::size_t n : {20u, 50u}) {
    SCOPED_TRACE(n);
    auto full = BuildPicker("ring_hash", MakeEndpoints(n));
    const auto before = Assign(*full, keys);

    auto fewer_instances = Instances(n);
    const std::string removed = fewer_instances[n / 3].id;
    fewer_instances.erase(fewer_instances.begin() + static_cast<std::ptrdiff_t>(n / 3));
    auto fewer = BuildPicker("ring_hash", MakeEndpoints(std::move(fewer_instances)));
    const auto after_removal = Assign(*fewer, keys);
    std::size_t moved = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      if (after_removal[k] != before[k]) {
        ++moved;
        EXPECT_EQ(before[k], removed) << "key " << keys[k] << " moved though its endpoint stayed";
      }
    }
    const double removed_fraction = static_cast<double>(moved) / static_cast<double>(keys.size());
    EXPECT_GE(removed_fraction, 0.5 / static_cast<double>(n));
    EXPECT_LE(removed_fraction, 2.0 / static_cast<double>(n));

    auto more_instances = Instances(n);
    more_instances.push_back(MakeInstance(n));
    const std::string added = more_instances.back().id;
    auto more = BuildPicker("ring_hash", MakeEndpoints(std::move(more_instances)));
    const auto after_addition = Assign(*more, keys);
    moved = 0;
    for (std::size_t k = 0; k < keys.size(); ++k) {
      if (after_addition[k] != before[k]) {
        ++moved;
        EXPECT_EQ(after_addition[k], added) << "key " << keys[k] << " moved to an old endpoint";
      }
    }
    const double added_fraction = static_cast<double>(moved) / static_cast<double>(keys.size());
    EXPECT_GE(added_fraction, 0.5 / static_cast<double>(n + 1));
    EXPECT_LE(added_fraction, 2.0 / static_cast<double>(n + 1));
  }
}

TEST(RingHashTest, WeightedSharesAreProportional) {
  // Weights 1:2:3:4 → 100, 200, 300, 400 points, doubled to reach 1,024 in
  // all: V = 200, 400, 600, 800 points, so shares within 1/sqrt(V).
  const std::vector<std::uint32_t> weights = {1, 2, 3, 4};
  auto snapshot = MakeWeightedEndpoints(weights);
  auto picker = BuildPicker("ring_hash", snapshot);
  const auto keys = MakeKeys(100'000);
  std::vector<std::uint64_t> counts(weights.size());
  for (const auto& key : keys) ++counts[IndexOf(*snapshot, picker->Pick(PickContext{key}))];
  std::vector<double> shares;
  for (auto w : weights) shares.push_back(w / 10.0);
  // ExpectShares takes one spread for all; use the widest (the lightest
  // endpoint's), then check each endpoint against its own.
  ExpectShares(counts, shares, 1.0 / std::sqrt(200.0));
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double mean = static_cast<double>(keys.size()) * shares[i];
    const double sd = std::sqrt(mean * (1 - shares[i]) + mean * mean / (200.0 * weights[i]));
    EXPECT_NEAR(static_cast<double>(counts[i]), mean, kSigmas * sd) << i;
  }
}

TEST(RingHashTest, EjectionMovesOnlyTheEjectedEndpointsKeys) {
  auto snapshot = MakeEndpoints(10);
  auto picker = BuildPicker("ring_hash", snapshot);
  const auto keys = MakeKeys(5000);
  const auto before = Assign(*picker, keys);
  snapshot->endpoints[4].stats->ejected.store(true);
  const auto during = Assign(*picker, keys);
  for (std::size_t k = 0; k < keys.size(); ++k) {
    if (before[k] == snapshot->endpoints[4].instance.id) {
      EXPECT_NE(during[k], before[k]);
    } else {
      EXPECT_EQ(during[k], before[k]) << keys[k];
    }
  }
  snapshot->endpoints[4].stats->ejected.store(false);
  EXPECT_EQ(Assign(*picker, keys), before) << "keys come back after the ejection";
}

}  // namespace
}  // namespace disco::testing
