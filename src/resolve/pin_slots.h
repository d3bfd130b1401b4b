// Per-thread state a Resolver keeps for each thread that picks from it: the
// thread's pin of the current snapshot (detail::SnapshotPin,
// disco/endpoint_ptr.h) and its place in the picker's sequence
// (PickContext::thread_position). With them a pick writes nothing another
// thread writes (issue 19).
//
// Each live resolver holds a small dense number (PinNumber: the lowest one
// free, handed back when the resolver goes), and each thread keeps its slots
// in chunks of 64 indexed by it, a chunk made when the thread first picks
// from a number in it. So a thread that picks from many resolvers in turn (a
// gateway's routes) finds each one's slot with a compare and two loads, and
// no two live resolvers share a slot: with a fixed table of 8 slots keyed by
// creation order, the ninth resolver evicted another's pin on every pick and
// a pick cost 126-660 ns instead of 17-23 (BM_ResolverPickAcross,
// docs/benchmarks.md). Slots never move once made: a pick may hold one while
// a picker of its own makes another (a policy that picks from a second
// resolver).
//
// A thread lets go of the slots of resolvers destroyed since it filled them
// (their snapshots and pickers) whenever it takes a new snapshot of any
// resolver after some resolver was destroyed, and at its exit: PinNumber
// counts each number's retirements, and a slot remembers the count it was
// filled under. Numbers from kMaxPinSlots up get no slot: their picks take
// the unpinned path (atomic counts on the snapshot, still correct).
//
// Thread safety: PinNumber may be made and destroyed on any thread; the slot
// functions work on the calling thread's own slots only.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "disco/balancer.h"
#include "disco/endpoint_ptr.h"

namespace disco::detail {

struct Published;  // resolver.cpp: a snapshot and the picker built from it

// A thread's hold on one Published of a resolver; see the file comment.
struct Pinned {
  std::shared_ptr<Published> published;
  SnapshotPin* pin = nullptr;  // holds one reference; Disown()ed when replaced
  PickContext::ThreadPosition position;

  Pinned() = default;
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  ~Pinned() { Reset(); }
  void Reset() {
    if (pin != nullptr) std::exchange(pin, nullptr)->Disown();
    published.reset();
    position = {};
  }
};

struct PinSlot {
  const void* owner = nullptr;  // the resolver; with `generation`, whose Pinned this is
  std::uint64_t generation = 0;
  std::uint32_t retirements = 0;  // the number's count when this slot was filled
  Pinned pinned;

  void Clear() {
    pinned.Reset();
    owner = nullptr;
    generation = 0;
  }
};

inline constexpr std::uint32_t kPinChunk = 64;
inline constexpr std::uint32_t kMaxPinSlots = 4096;

// A resolver's dense number: the lowest not held by a live resolver.
class PinNumber {
 public:
  PinNumber();
  ~PinNumber();  // counts a retirement of the number, then frees it
  PinNumber(const PinNumber&) = delete;
  PinNumber& operator=(const PinNumber&) = delete;
  std::uint32_t value() const noexcept { return value_; }

 private:
  std::uint32_t value_;
};

// The calling thread's chunks, as plain initial-exec variables read on every
// pick: one load each from the thread pointer, where a thread_local with a
// constructor would cost a guard check and, in a shared library, a
// __tls_get_addr call. t_pin_slot_count is the number of slots below which
// every chunk is made.
[[gnu::tls_model("initial-exec")]] extern constinit thread_local PinSlot** t_pin_chunks;
[[gnu::tls_model("initial-exec")]] extern constinit thread_local std::uint32_t t_pin_slot_count;

// The calling thread's slot for `number` when its chunk is not made yet:
// makes the chunks up to it. nullptr when `number` is kMaxPinSlots or more,
// or in a thread-local destructor after the thread's slots were let go at
// its exit.
PinSlot* GrowPinSlots(std::uint32_t number);

// The calling thread's slot for `number`; nullptr as GrowPinSlots. The slot
// stays where it is until the thread exits.
inline PinSlot* ThreadPinSlot(std::uint32_t number) {
  if (number < t_pin_slot_count) [[likely]]
    return &t_pin_chunks[number / kPinChunk][number % kPinChunk];
  return GrowPinSlots(number);
}

// Fills `slot` (the calling thread's slot for `number`) for a resolver's
// new Published: records the number's retirements, and lets go of the
// thread's slots whose resolvers were destroyed since they were filled.
void FillPinSlot(PinSlot& slot, std::uint32_t number, const void* owner,
                 std::shared_ptr<Published> published, SnapshotPin* pin, std::uint64_t generation);

}  // namespace disco::detail
