// Per-CPU storage: how the pick path counts and keeps its cursors without
// writing memory that another core writes.
//
// A counter or cursor that every thread updates is one cache line bouncing
// between cores: on two cores a pick already costs 7× more than on one, and
// it gets worse with every core (bench/pick_bench.cpp, docs/benchmarks.md).
// Linux's per-CPU counters and tcmalloc's per-CPU caches take the way used
// here: each CPU owns a cache line of the object, found with sched_getcpu(),
// which glibc (≥ 2.35) answers with one load from the thread's rseq area, no
// system call. Readers sum (or look at) every CPU's line; that is the rare
// side (a metrics scrape).
//
// A thread can be moved to another CPU between finding its line and writing
// it, so two threads may write one line at the same moment. Every write is
// therefore an atomic read-modify-write (fetch_add, compare-and-swap): safe
// and exact; it only costs what sharing always costs, that once.
// Memory: PerCpu<T> takes one 64-byte line per CPU per object (4 KiB at 64
// CPUs), so it is for objects there are few of (a picker's cursors);
// CpuCounters packs many objects' counters per line of one CPU.
//
// Thread safety: every member may be called from any thread.
#pragma once

#include <sched.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace disco {

// The number of per-CPU slots: the CPUs the system can have online
// (get_nprocs_conf), at least 1 and at most 1,024; fixed for the process.
std::uint32_t CpuSlots() noexcept;

// The slot of the CPU the calling thread runs on now (0 if the kernel cannot
// tell). By the time the caller uses it the thread may run elsewhere: it is a
// hint for spreading writes, never a lock.
inline std::uint32_t CurrentCpuSlot() noexcept {
  static const std::uint32_t slots = CpuSlots();
  const int cpu = sched_getcpu();
  if (cpu < 0) return 0;
  const auto slot = static_cast<std::uint32_t>(cpu);
  return slot < slots ? slot : slot % slots;  // no division in the usual case
}

// One T per CPU slot, each on its own cache line.
template <class T>
class PerCpu {
 public:
  PerCpu() : size_(CpuSlots()), cells_(std::make_unique<Cell[]>(size_)) {}

  T& Local() noexcept { return cells_[CurrentCpuSlot()].value; }
  T& operator[](std::uint32_t slot) noexcept { return cells_[slot].value; }
  const T& operator[](std::uint32_t slot) const noexcept { return cells_[slot].value; }
  std::uint32_t size() const noexcept { return size_; }

 private:
  struct alignas(64) Cell {
    T value{};
  };
  std::uint32_t size_;
  std::unique_ptr<Cell[]> cells_;
};

// Counters that many threads add to and few read, for objects there may be
// many of (one per endpoint): Add is one relaxed fetch_add on the calling
// CPU's copy (exact, uncontended in the usual case); Load sums the copies
// (O(CPUs), for scrapes and dashboards).
//
// The copies live in per-CPU slabs, as the kernel's per-CPU allocator lays
// them out: each CPU has its own arrays of blocks of kMax counters (32
// bytes), and an object owns one block index in all of them. Neighbouring
// blocks on one CPU share cache lines, which costs nothing (one CPU writes
// them); no two CPUs write one line but for the moment a thread migrates
// (above). So an object costs 32 bytes per CPU (2 KiB at 64 CPUs), not a
// 64-byte line per CPU and counter; slabs grow by 128 blocks at a time (4 KiB
// per CPU slot, counted from get_nprocs_conf). Slab memory is kept for reuse
// when objects go, never returned: it is bounded by the most objects alive at
// once.
class CpuCounters {
 public:
  static constexpr std::size_t kMax = 4;

  CpuCounters();   // takes a zeroed block; throws std::bad_alloc past 4 M live objects
  ~CpuCounters();  // gives it back, zeroed for the next owner
  CpuCounters(const CpuCounters&) = delete;
  CpuCounters& operator=(const CpuCounters&) = delete;

  // REQUIRES: counter < kMax.
  void Add(std::size_t counter, std::uint64_t n = 1) noexcept {
    Cell(CurrentCpuSlot(), counter).fetch_add(n, std::memory_order_relaxed);
  }
  std::uint64_t Load(std::size_t counter) const noexcept;

 private:
  std::atomic<std::uint64_t>& Cell(std::uint32_t cpu, std::size_t counter) const noexcept;

  std::uint32_t block_;
};

namespace detail {

inline constexpr std::uint32_t kSlabBlocks = 128;      // blocks per chunk and CPU: 4 KiB
inline constexpr std::uint32_t kSlabChunks = 1 << 15;  // so at most 4 M blocks

struct SlabBlock {
  std::atomic<std::uint64_t> value[CpuCounters::kMax];
};
struct alignas(64) SlabPage {  // one CPU's blocks of one chunk
  SlabBlock blocks[kSlabBlocks];
};
// chunk → its pages, one per CPU slot; published once, never moved or freed.
extern std::atomic<SlabPage*> g_slab_chunks[kSlabChunks];

}  // namespace detail

inline std::atomic<std::uint64_t>& CpuCounters::Cell(std::uint32_t cpu,
                                                     std::size_t counter) const noexcept {
  // A chunk's pages are one array of CpuSlots() pages; the pointer was
  // published (under the slab's mutex) before this block was handed out.
  detail::SlabPage* pages =
      detail::g_slab_chunks[block_ / detail::kSlabBlocks].load(std::memory_order_acquire);
  return pages[cpu].blocks[block_ % detail::kSlabBlocks].value[counter];
}

}  // namespace disco
