// ring_hash: consistent hashing on PickContext::hash_key over a ketama-style
// ring, so that one key keeps going to one endpoint, and adding or removing
// one endpoint of N moves only about 1/N of the keys.
//
// Ring. Each endpoint gets points in proportion to its weight: 100 per unit
// of weight, times a power of two chosen so the ring has at least 1024
// points (small rings spread keys unevenly: an endpoint with V points gets
// its share to within about 1/sqrt(V)) and at most 2^20 (memory and Build
// time; past that an endpoint keeps at least one point, so the ring has at
// most max(2^20, n) points). A power of two, rather than any factor, so that
// the scale changes only at a few cluster sizes: every change of scale moves
// many keys. Point j of an endpoint is SplitMix64 step j from XXH64 of its
// instance id, so an unchanged endpoint keeps exactly its points when others
// come and go, and address changes do not move keys. Points are sorted with
// hashes and endpoint indices in two separate arrays: the binary search
// touches only the 8-byte hashes.
//
// Pick. XXH64 of the key; the first point at or after it (wrapping around)
// names the endpoint. An empty key picks a random point, which keeps weights.
// An ejected endpoint's keys go to the next healthy endpoint along the ring
// (ketama's rule, so the other keys do not move), looking at most kMaxWalk
// points ahead before scanning the endpoints.
//
// Thread safety: Build runs on the control plane; the ring is immutable, so
// Pick runs on any thread with relaxed loads of the ejection flags only.
#include <algorithm>
#include <cstdint>
#include <utility>

#include "balance/ejection.h"
#include "balance/hash.h"
#include "balance/policies.h"
#include "util/fast_random.h"

namespace disco::balance {
namespace {

constexpr std::uint64_t kPointsPerWeight = 100;
constexpr std::uint64_t kMinRingSize = 1024;
constexpr std::uint64_t kMaxRingSize = std::uint64_t{1} << 20;
constexpr std::uint32_t kMaxWalk = 256;
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;  // SplitMix64's increment

// Points per endpoint: weight × 100 × 2^shift, with the shift (possibly
// negative) the smallest change that brings the total into [min, max].
std::vector<std::uint64_t> PointCounts(const std::vector<Endpoint>& endpoints) {
  std::vector<std::uint64_t> base(endpoints.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    base[i] = std::max<std::uint64_t>(endpoints[i].instance.weight, 1) * kPointsPerWeight;
    total += base[i];
  }
  int up = 0;
  while ((total << up) < kMinRingSize) ++up;
  if (up > 0) {
    for (auto& count : base) count <<= up;
    return base;
  }
  auto scaled = [&](int down) {
    std::uint64_t sum = 0;
    for (auto count : base) {
      sum += std::max<std::uint64_t>((count + (std::uint64_t{1} << down >> 1)) >> down, 1);
    }
    return sum;
  };
  // Every endpoint keeps one point, so the total cannot go below n.
  int down = 0;
  for (; down < 63; ++down) {
    const std::uint64_t sum = scaled(down);
    if (sum <= kMaxRingSize || sum == endpoints.size()) break;
  }
  if (down > 0) {
    for (auto& count : base) {
      count = std::max<std::uint64_t>((count + (std::uint64_t{1} << down >> 1)) >> down, 1);
    }
  }
  return base;
}

class RingHashPicker final : public Picker {
 public:
  explicit RingHashPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        endpoints_(snapshot_->endpoints),
        size_(static_cast<std::uint32_t>(endpoints_.size())) {
    if (size_ == 0) return;
    const auto counts = PointCounts(endpoints_);
    std::uint64_t total = 0;
    for (auto count : counts) total += count;
    std::vector<std::pair<std::uint64_t, std::uint32_t>> points;
    points.reserve(total);
    for (std::uint32_t i = 0; i < size_; ++i) {
      std::uint64_t state = Hash64(endpoints_[i].instance.id);
      for (std::uint64_t j = 0; j < counts[i]; ++j) {
        state += kGolden;
        points.emplace_back(Mix64(state), i);
      }
    }
    // Ties between equal hashes (vanishingly rare) go to the lower index, so
    // the ring does not depend on the sort.
    std::sort(points.begin(), points.end());
    hashes_.reserve(points.size());
    owners_.reserve(points.size());
    for (const auto& [hash, owner] : points) {
      hashes_.push_back(hash);
      owners_.push_back(owner);
    }
  }

  const Endpoint* Pick(const PickContext& context) override {
    if (size_ == 0) return nullptr;
    const std::uint64_t hash = context.hash_key.empty() ? FastRandom() : Hash64(context.hash_key);
    std::size_t index = FirstPointAtOrAfter(hash);
    const std::uint32_t owner = owners_[index];
    if (!endpoints_[owner].ejected()) [[likely]] {
      return &endpoints_[owner];
    }
    const std::size_t points = owners_.size();
    const std::size_t walk = std::min<std::size_t>(kMaxWalk, points);
    for (std::size_t step = 1; step < walk; ++step) {
      index = index + 1 == points ? 0 : index + 1;
      const Endpoint& endpoint = endpoints_[owners_[index]];
      if (!endpoint.ejected()) return &endpoint;
    }
    return FirstHealthyFrom(endpoints_, owner);
  }

 private:
  // Branch-free lower_bound (the comparison compiles to a conditional move),
  // wrapping past the last point to the first.
  std::size_t FirstPointAtOrAfter(std::uint64_t hash) const {
    const std::uint64_t* data = hashes_.data();
    std::size_t low = 0;
    std::size_t length = hashes_.size();
    while (length > 1) {
      const std::size_t half = length / 2;
      low = data[low + half - 1] < hash ? low + half : low;
      length -= half;
    }
    low += data[low] < hash;
    return low == hashes_.size() ? 0 : low;
  }

  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
  std::vector<std::uint64_t> hashes_;  // sorted ring positions
  std::vector<std::uint32_t> owners_;  // owners_[i]: endpoint index of hashes_[i]
};

class RingHash final : public Balancer {
 public:
  std::string_view name() const override { return "ring_hash"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<RingHashPicker>(std::move(snapshot));
  }
};

}  // namespace

std::unique_ptr<Balancer> MakeRingHash() { return std::make_unique<RingHash>(); }

}  // namespace disco::balance
