// round_robin: each endpoint in turn, from a shared atomic cursor.
#include <atomic>
#include <cstdint>

#include "balance/policies.h"
#include "util/fast_random.h"

namespace disco::balance {
namespace {

class RoundRobinPicker final : public Picker {
 public:
  explicit RoundRobinPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        size_(static_cast<std::uint32_t>(snapshot_->endpoints.size())),
        // Start at a random place so that many clients that got the same
        // snapshot at the same moment do not all hit endpoint 0 first.
        cursor_(size_ ? FastRandomBelow(size_) : 0) {}

  const Endpoint* Pick(const PickContext&) override {
    if (size_ == 0) return nullptr;
    const auto& endpoints = snapshot_->endpoints;
    std::uint32_t first = static_cast<std::uint32_t>(cursor_.fetch_add(1, std::memory_order_relaxed) % size_);
    std::uint32_t index = first;
    for (std::uint32_t i = 0; i < size_; ++i) {
      if (!endpoints[index].ejected()) return &endpoints[index];
      index = index + 1 == size_ ? 0 : index + 1;
    }
    return &endpoints[first];  // every endpoint ejected: pick anyway
  }

 private:
  SnapshotConstPtr snapshot_;
  std::uint32_t size_;
  alignas(64) std::atomic<std::uint64_t> cursor_;
};

class RoundRobin final : public Balancer {
 public:
  std::string_view name() const override { return "round_robin"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<RoundRobinPicker>(std::move(snapshot));
  }
};

}  // namespace

std::unique_ptr<Balancer> MakeRoundRobin() { return std::make_unique<RoundRobin>(); }

}  // namespace disco::balance
