// Per-CPU storage: how the pick path keeps its cursors and histograms their
// buckets without writing memory that another core writes.
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
// CPUs), so it is for objects there are few of (a picker's cursors).
// Counters, of which there are many and which need no read-modify-write,
// are per thread instead (disco/thread_counters.h).
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

}  // namespace disco
