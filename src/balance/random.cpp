// random: each pick uniform over the endpoints that are not ejected.
//
// Ejected endpoints (and, for a retry, the ones it tried) are avoided by drawing again (rejection sampling), which
// keeps the choice exactly uniform over the healthy ones; stepping to the next
// healthy neighbour instead would hand an ejected endpoint's share to its
// neighbour alone. After kMaxDraws misses (probability f^8 with a share f of
// endpoints ejected) it falls back to a scan from a random start.
//
// Thread safety: the picker is immutable; Pick uses the per-thread generator
// of util/fast_random.h and relaxed loads of the ejection flags.
#include <cstdint>

#include "balance/ejection.h"
#include "balance/policies.h"
#include "util/fast_random.h"

namespace disco::balance {
namespace {

constexpr int kMaxDraws = 8;

class RandomPicker final : public Picker {
 public:
  explicit RandomPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        endpoints_(snapshot_->endpoints),
        size_(static_cast<std::uint32_t>(endpoints_.size())) {}

  const Endpoint* Pick(const PickContext& context) override {
    if (size_ == 0) return nullptr;
    for (int draw = 0; draw < kMaxDraws; ++draw) {
      const Endpoint& endpoint = endpoints_[FastRandomBelow(size_)];
      if (!Avoided(endpoint, context)) return &endpoint;
    }
    return FirstUsableFrom(endpoints_, FastRandomBelow(size_), context);
  }

 private:
  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
};

class Random final : public Balancer {
 public:
  std::string_view name() const override { return "random"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<RandomPicker>(std::move(snapshot));
  }
};

}  // namespace

std::unique_ptr<Balancer> MakeRandom() { return std::make_unique<Random>(); }

}  // namespace disco::balance
