#include "disco/per_cpu.h"

#include <sys/sysinfo.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

namespace disco {

std::uint32_t CpuSlots() noexcept {
  // get_nprocs_conf, not the CPUs online now: a CPU brought online later
  // still finds its own slot.
  static const std::uint32_t slots =
      static_cast<std::uint32_t>(std::clamp(get_nprocs_conf(), 1, 1024));
  return slots;
}

namespace detail {
std::atomic<SlabPage*> g_slab_chunks[kSlabChunks];
}  // namespace detail

namespace {

// Hands out block indices; a block given back is zeroed by its last owner
// (no thread writes it then: its object is being destroyed) and reused first.
class Slab {
 public:
  std::uint32_t Take() {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      const std::uint32_t block = free_.back();
      free_.pop_back();
      return block;
    }
    const std::uint32_t chunk = next_ / detail::kSlabBlocks;
    if (next_ % detail::kSlabBlocks == 0) {
      if (chunk >= detail::kSlabChunks) throw std::bad_alloc();
      // Room for every block there will be, so that Give (called from
      // destructors) never allocates and so never throws.
      free_.reserve(next_ + detail::kSlabBlocks);
      // Value-initialised: every counter starts at zero.
      detail::g_slab_chunks[chunk].store(new detail::SlabPage[CpuSlots()](),
                                         std::memory_order_release);
    }
    return next_++;
  }

  void Give(std::uint32_t block) {
    std::lock_guard lock(mu_);
    free_.push_back(block);
  }

 private:
  std::mutex mu_;
  std::uint32_t next_ = 0;
  std::vector<std::uint32_t> free_;
};

Slab& TheSlab() {
  static auto* slab = new Slab();  // never destroyed: objects may outlive static destruction
  return *slab;
}

}  // namespace

CpuCounters::CpuCounters() : block_(TheSlab().Take()) {}

CpuCounters::~CpuCounters() {
  for (std::uint32_t cpu = 0; cpu < CpuSlots(); ++cpu)
    for (std::size_t counter = 0; counter < kMax; ++counter)
      Cell(cpu, counter).store(0, std::memory_order_relaxed);
  TheSlab().Give(block_);
}

std::uint64_t CpuCounters::Load(std::size_t counter) const noexcept {
  std::uint64_t sum = 0;
  for (std::uint32_t cpu = 0; cpu < CpuSlots(); ++cpu)
    sum += Cell(cpu, counter).load(std::memory_order_relaxed);
  return sum;
}

}  // namespace disco
