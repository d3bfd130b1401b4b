// least_request beyond the shared harness: the power of two choices prefers
// the less loaded endpoint of each random pair.
#include <gtest/gtest.h>

#include "unit/balancer_test_util.h"

namespace disco::testing {
namespace {

void SetActive(const Snapshot& snapshot, std::size_t i, std::uint32_t active) {
  snapshot.endpoints[i].stats->active_requests.store(active);
}

TEST(LeastRequestTest, TwoEndpointsAlwaysTheLessLoaded) {
  // With two endpoints both are always in the pair.
  auto snapshot = MakeEndpoints(2);
  auto picker = BuildPicker("least_request", snapshot);
  SetActive(*snapshot, 0, 5);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(picker->Pick({}), &snapshot->endpoints[1]);
  SetActive(*snapshot, 1, 6);  // counts are read at pick time
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(picker->Pick({}), &snapshot->endpoints[0]);
}

TEST(LeastRequestTest, TheMostLoadedEndpointIsNeverPicked) {
  // The two choices are distinct, so the strictly most loaded endpoint always
  // loses its pair.
  auto snapshot = MakeEndpoints(10);
  auto picker = BuildPicker("least_request", snapshot);
  SetActive(*snapshot, 3, 100);
  for (int i = 0; i < 10'000; ++i) ASSERT_NE(picker->Pick({}), &snapshot->endpoints[3]);
}

TEST(LeastRequestTest, SharesFollowThePairStatistics) {
  // Loads 0, 1, ..., n-1: endpoint i wins exactly the pairs whose other
  // member is more loaded, n-1-i of the n(n-1)/2 equally likely pairs.
  constexpr std::size_t kEndpoints = 10;
  auto snapshot = MakeEndpoints(kEndpoints);
  auto picker = BuildPicker("least_request", snapshot);
  for (std::size_t i = 0; i < kEndpoints; ++i)
    SetActive(*snapshot, i, static_cast<std::uint32_t>(i));
  std::vector<std::uint64_t> counts(kEndpoints);
  for (int i = 0; i < 200'000; ++i) ++counts[IndexOf(*snapshot, picker->Pick({}))];
  std::vector<double> expected(kEndpoints);
  const double pairs = kEndpoints * (kEndpoints - 1) / 2.0;
  for (std::size_t i = 0; i < kEndpoints; ++i) expected[i] = (kEndpoints - 1 - i) / pairs;
  EXPECT_EQ(counts[kEndpoints - 1], 0u);
  expected.pop_back();  // probability 0: checked exactly above
  counts.pop_back();
  ExpectShares(counts, expected);
}

TEST(LeastRequestTest, AnEjectedEndpointLosesItsPair) {
  auto snapshot = MakeEndpoints(2);
  auto picker = BuildPicker("least_request", snapshot);
  SetActive(*snapshot, 0, 50);
  snapshot->endpoints[1].stats->ejected.store(true);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(picker->Pick({}), &snapshot->endpoints[0]);
}

}  // namespace
}  // namespace disco::testing
