// round_robin: each endpoint in turn.
//
// One cursor per CPU (balance/cursor.h), so that picks on different cores
// write different cache lines: each CPU's picks go strictly round robin, and
// over the whole process each endpoint's count is within one per CPU that
// picked of every other's (BalancerFairnessTest.RoundRobinIsFairAcrossThreads).
// Through a Resolver each thread walks a position of its own instead
// (PickContext::thread_position): strictly round robin per thread, within one
// per thread that picked over the process (ResolverTest.RoundRobinIsFair...).
#include <cstdint>

#include "balance/cursor.h"
#include "balance/ejection.h"
#include "balance/policies.h"

namespace disco::balance {
namespace {

class RoundRobinPicker final : public Picker {
 public:
  explicit RoundRobinPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        endpoints_(snapshot_->endpoints),
        size_(static_cast<std::uint32_t>(endpoints_.size())) {
    SpreadCursors(cursors_, size_);
  }

  const Endpoint* Pick(const PickContext& context) override {
    if (size_ == 0) return nullptr;
    return FirstUsableFrom(endpoints_, NextPosition(cursors_, size_, context, this), context);
  }

 private:
  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
  PerCpu<Cursor> cursors_;
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
