// least_request: power of two choices on in-flight requests.
//
// Each pick draws two distinct endpoints uniformly and takes the one with
// fewer EndpointStats::active_requests (the first drawn on a tie, which keeps
// ties uniform). Two choices already avoid the herd effect of "globally least
// loaded" (every client piling onto the same idle endpoint) while giving an
// exponentially better maximum load than one random choice; it is gRPC's
// (A48) and Envoy's default with choice_count 2. The counts are kept by
// callers (incremented when a request starts, decremented when it ends), not
// by the picker, and read here with relaxed loads: a stale count by a few
// requests only blurs a comparison.
//
// An ejected candidate (or, for a retry, one it tried) loses to another;
// when both are passed over the pair is drawn again, up to kMaxPairs times, then a scan finds any healthy one.
//
// Thread safety: the picker is immutable; Pick uses the per-thread generator
// of util/fast_random.h and relaxed loads of the stats.
#include <cstdint>

#include "balance/ejection.h"
#include "balance/policies.h"
#include "util/fast_random.h"

namespace disco::balance {
namespace {

constexpr int kMaxPairs = 4;

// Lemire's multiply-shift on one 32-bit half of a random word.
std::uint32_t Below(std::uint32_t random_bits, std::uint32_t n) {
  return static_cast<std::uint32_t>((static_cast<std::uint64_t>(random_bits) * n) >> 32);
}

class LeastRequestPicker final : public Picker {
 public:
  explicit LeastRequestPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        endpoints_(snapshot_->endpoints),
        size_(static_cast<std::uint32_t>(endpoints_.size())) {}

  const Endpoint* Pick(const PickContext& context) override {
    if (size_ <= 1) return size_ == 0 ? nullptr : &endpoints_[0];
    std::uint32_t first = 0;
    for (int pair = 0; pair < kMaxPairs; ++pair) {
      // One 64-bit draw gives both indices; the second is drawn among the
      // other size_ - 1 endpoints so the two are always distinct.
      const std::uint64_t bits = FastRandom();
      first = Below(static_cast<std::uint32_t>(bits), size_);
      std::uint32_t second = Below(static_cast<std::uint32_t>(bits >> 32), size_ - 1);
      if (second >= first) ++second;
      const Endpoint& a = endpoints_[first];
      const Endpoint& b = endpoints_[second];
      const bool a_ok = !Avoided(a, context);
      const bool b_ok = !Avoided(b, context);
      if (a_ok && b_ok) {
        return b.stats->active_requests.load(std::memory_order_relaxed) <
                       a.stats->active_requests.load(std::memory_order_relaxed)
                   ? &b
                   : &a;
      }
      if (a_ok) return &a;
      if (b_ok) return &b;
    }
    return FirstUsableFrom(endpoints_, first, context);
  }

 private:
  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
};

class LeastRequest final : public Balancer {
 public:
  std::string_view name() const override { return "least_request"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<LeastRequestPicker>(std::move(snapshot));
  }
};

}  // namespace

std::unique_ptr<Balancer> MakeLeastRequest() { return std::make_unique<LeastRequest>(); }

}  // namespace disco::balance
