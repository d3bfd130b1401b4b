// Per-CPU cursors for the policies that walk a fixed sequence (round_robin,
// weighted_round_robin).
//
// One shared cursor is the one write every pick makes to memory every core
// shares; with one cursor per CPU (disco/per_cpu.h) each core walks the
// sequence on its own line. Each CPU starts at its own place, spread evenly
// over the sequence from a random phase, so that CPUs do not pick in
// lockstep and clients that got the same snapshot at the same moment do not
// all start with the same endpoint.
//
// Advance is a compare-and-swap from the position read to the next one
// (wrapping with a compare, not a division): exact even when a thread is
// preempted or moved to another CPU between reading its slot and writing it,
// and, on a line only one CPU writes, no dearer than a fetch_add.
//
// A caller that keeps a position of its own per thread (the Resolver does)
// skips even that: NextPosition walks the thread's position with plain
// arithmetic, and the CPU's cursor only seeds it.
//
// Thread safety: Advance may be called from any thread; NextPosition too,
// each thread with its own PickContext::thread_position.
#pragma once

#include <atomic>
#include <cstdint>

#include "disco/balancer.h"
#include "disco/per_cpu.h"
#include "util/fast_random.h"

namespace disco::balance {

struct Cursor {
  std::atomic<std::uint32_t> next{0};
};

// Spreads the CPUs' cursors over [0, period). REQUIRES: not yet shared.
inline void SpreadCursors(PerCpu<Cursor>& cursors, std::uint64_t period) {
  if (period == 0) return;
  const std::uint64_t phase = FastRandom() % period;
  for (std::uint32_t slot = 0; slot < cursors.size(); ++slot) {
    cursors[slot].next.store(
        static_cast<std::uint32_t>((phase + slot * period / cursors.size()) % period),
        std::memory_order_relaxed);
  }
}

// The position to pick at, moving the cursor on. REQUIRES: 0 < period < 2^32.
inline std::uint32_t Advance(Cursor& cursor, std::uint64_t period) {
  std::uint32_t at = cursor.next.load(std::memory_order_relaxed);
  while (!cursor.next.compare_exchange_weak(at, at + 1 == period ? 0 : at + 1,
                                            std::memory_order_relaxed)) {
  }
  return at;
}

// The position to pick at for this call: on the caller's per-thread
// position when it keeps one for `picker` (PickContext::thread_position: a
// plain load and store, one writer), else on the calling CPU's cursor. A
// fresh position is taken by the first picker that sees it and starts where
// that CPU's cursor is, so that threads spread as CPUs do; a position that
// another picker took is left alone.
// REQUIRES: 0 < period < 2^32.
inline std::uint32_t NextPosition(PerCpu<Cursor>& cursors, std::uint64_t period,
                                  const PickContext& context, const void* picker) {
  PickContext::ThreadPosition* position = context.thread_position;
  const bool others =
      position != nullptr && position->owner != nullptr && position->owner != picker;
  if (position == nullptr || others) return Advance(cursors.Local(), period);
  if (position->owner == nullptr || position->next >= period) [[unlikely]] {
    position->owner = picker;
    position->next = Advance(cursors.Local(), period);
  }
  const std::uint32_t at = position->next;
  position->next = at + 1 == period ? 0 : at + 1;
  return at;
}

}  // namespace disco::balance
