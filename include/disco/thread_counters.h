// ThreadCounters: counters that many threads add to on hot paths (every
// pick, call and request) and few read (a metrics scrape, a dashboard).
//
// Each thread adds to its own copy, so an addition is a plain load and store
// of a line no other thread writes: no locked instruction, no cache line
// moving between cores. A read sums every thread's copy. This is what
// folly's ThreadCachedInt and the per-CPU counters of Linux do; per thread
// rather than per CPU because only then is there exactly one writer per copy
// (a thread can move to another CPU between finding its CPU's copy and
// writing it, so per-CPU copies need an atomic read-modify-write: ≈ 5.6 ns
// here, against well under 1 ns for the plain store; docs/benchmarks.md,
// "Picks across cores").
//
// Layout (src/core/thread_counters.cpp): copies live in per-thread slabs, as
// the kernel's per-CPU allocator lays them out: each thread has pages of
// 128 blocks of kMax counters (32 bytes a block, 4 KiB a page), made the
// first time it counts in that page; an object owns one block index in all
// of them. A thread that exits hands its slab, counts and all, to the next
// thread that starts counting, so sums stay exact and never go back, and the
// slabs there are number the most threads that counted at once. Block
// indices are reused when objects go (zeroed first), never returned: slab
// memory is bounded by the most objects alive at once times those threads.
//
// Thread safety: every member may be called from any thread; Load() may run
// beside Add() and sees every addition that happened before it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace disco {

class ThreadCounters {
 public:
  static constexpr std::size_t kMax = 4;

  ThreadCounters();   // takes a zeroed block; throws std::bad_alloc past 4 M live objects
  ~ThreadCounters();  // gives it back, zeroed for the next owner
  ThreadCounters(const ThreadCounters&) = delete;
  ThreadCounters& operator=(const ThreadCounters&) = delete;

  // REQUIRES: counter < kMax. Wraps modulo 2^64 (Gauge relies on it).
  void Add(std::size_t counter, std::uint64_t n = 1) noexcept;
  // The sum over every thread's copy: O(threads that count).
  std::uint64_t Load(std::size_t counter) const noexcept;

 private:
  std::uint32_t block_;
};

}  // namespace disco
