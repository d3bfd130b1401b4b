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
// hashes and endpoint indices in two separate arrays: the search touches only
// the 8-byte hashes. Ring positions are uniform, so Build sorts them by
// bucketing on their top bits (one counting pass, then tiny sorts per bucket)
// rather than one O(P log P) sort, and keeps the bucket starts as an index.
//
// Pick. XXH64 of the key; the first point at or after it (wrapping around)
// names the endpoint: the index on the top bits gives the bucket, a binary
// search within it (8 points on average, 16 on the largest rings: one or two
// cache lines) the point, so a pick on a 2^20-point ring costs two or three
// cache misses instead of a full binary search's twenty. An empty key picks a
// random point, which keeps weights. An ejected endpoint's keys go to the
// next healthy endpoint along the ring (ketama's rule, so the other keys do
// not move), and a retry of a key to the next one past the endpoints it
// tried, looking at most kMaxWalk points ahead before scanning the
// endpoints.
//
// Thread safety: Build runs on the control plane; the ring is immutable, so
// Pick runs on any thread with relaxed loads of the ejection flags only.
#include <algorithm>
#include <bit>
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
constexpr int kMaxIndexBits = 16;
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

    // About 8 points per bucket, at most 2^16 buckets (a 256 KiB index).
    const int bits = std::clamp(static_cast<int>(std::bit_width(total)) - 3, 1, kMaxIndexBits);
    shift_ = 64 - bits;
    // Point j of endpoint i, visited in the same order by both passes.
    auto for_each_point = [&](auto&& visit) {
      for (std::uint32_t i = 0; i < size_; ++i) {
        std::uint64_t state = Hash64(endpoints_[i].instance.id);
        for (std::uint64_t j = 0; j < counts[i]; ++j) {
          state += kGolden;
          visit(Mix64(state), i);
        }
      }
    };
    index_.assign((std::size_t{1} << bits) + 1, 0);
    for_each_point([&](std::uint64_t hash, std::uint32_t) { ++index_[(hash >> shift_) + 1]; });
    for (std::size_t b = 1; b < index_.size(); ++b) index_[b] += index_[b - 1];
    std::vector<std::pair<std::uint64_t, std::uint32_t>> points(total);
    {
      std::vector<std::uint32_t> next(index_.begin(), index_.end() - 1);
      for_each_point([&](std::uint64_t hash, std::uint32_t owner) {
        points[next[hash >> shift_]++] = {hash, owner};
      });
    }
    // Equal hashes (vanishingly rare) are ordered by endpoint index, so the
    // ring does not depend on the sort.
    for (std::size_t b = 0; b + 1 < index_.size(); ++b) {
      std::sort(points.begin() + index_[b], points.begin() + index_[b + 1]);
    }
    hashes_.reserve(total);
    owners_.reserve(total);
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
    if (!Avoided(endpoints_[owner], context)) [[likely]] {
      return &endpoints_[owner];
    }
    const std::size_t points = owners_.size();
    const std::size_t walk = std::min<std::size_t>(kMaxWalk, points);
    for (std::size_t step = 1; step < walk; ++step) {
      index = index + 1 == points ? 0 : index + 1;
      const Endpoint& endpoint = endpoints_[owners_[index]];
      if (!Avoided(endpoint, context)) return &endpoint;
    }
    return FirstUsableFrom(endpoints_, owner, context);
  }

 private:
  // Every point of a later bucket is above `hash`, so the answer lies in the
  // bucket of `hash` or is the first point after it: index_[bucket + 1]. The
  // search is branch-free (the comparison becomes a conditional move): a
  // mispredicted branch costs more than a step on so few points.
  std::size_t FirstPointAtOrAfter(std::uint64_t hash) const {
    const std::size_t bucket = hash >> shift_;
    std::size_t low = index_[bucket];
    std::size_t length = index_[bucket + 1] - low;
    if (length > 0) {
      const std::uint64_t* data = hashes_.data();
      while (length > 1) {
        const std::size_t half = length / 2;
        low = data[low + half - 1] < hash ? low + half : low;
        length -= half;
      }
      low += data[low] < hash;
    }
    return low == hashes_.size() ? 0 : low;
  }

  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
  int shift_ = 63;
  std::vector<std::uint64_t> hashes_;  // sorted ring positions
  std::vector<std::uint32_t> owners_;  // owners_[i]: endpoint index of hashes_[i]
  std::vector<std::uint32_t> index_;   // index_[b]: first point whose top bits are >= b
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
