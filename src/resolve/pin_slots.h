// Per-thread state a Resolver keeps for each thread that picks from it: the
// thread's pin of the current snapshot (detail::SnapshotPin,
// disco/endpoint_ptr.h) and its place in the picker's sequence
// (PickContext::thread_position). With them a pick writes nothing another
// thread writes (issue 19).
//
// Each live resolver holds a small dense number (PinNumber: the lowest one
// free, handed back when the resolver goes), and each thread keeps an array
// indexed by it, grown when a thread first picks from a higher number. So a
// thread that picks from many resolvers in turn (a gateway's routes) finds
// each one's slot with a compare and an index, and no two live resolvers
// share a slot: with a fixed table of 8 slots keyed by creation order, the
// ninth resolver evicted another's pin on every pick and a pick cost 8-30x
// more (BM_ResolverPickAcross, docs/benchmarks.md).
//
// The cost: a thread keeps the last Published it saw of each number it picked
// from (its snapshot and picker) until it picks from that number again (the
// resolver holding it now, or a later one that got the number back) or the
// thread exits: at most one per number, and numbers are reused, so at most
// as many as the process ever had resolvers alive at once. Numbers from
// kMaxPinSlots up get no slot: their picks take the unpinned path (atomic
// counts on the snapshot, still correct).
//
// Thread safety: PinNumber may be made and destroyed on any thread; the slot
// functions work on the calling thread's own array only.
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
  std::uint32_t position = PickContext::kUnsetPosition;

  Pinned() = default;
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  ~Pinned() { Reset(); }
  void Reset() {
    if (pin != nullptr) std::exchange(pin, nullptr)->Disown();
    published.reset();
    position = PickContext::kUnsetPosition;
  }
};

struct PinSlot {
  const void* owner = nullptr;  // the resolver; with `generation`, whose Pinned this is
  std::uint64_t generation = 0;
  Pinned pinned;
};

inline constexpr std::uint32_t kMaxPinSlots = 4096;

// A resolver's dense number: the lowest not held by a live resolver.
class PinNumber {
 public:
  PinNumber();
  ~PinNumber();
  PinNumber(const PinNumber&) = delete;
  PinNumber& operator=(const PinNumber&) = delete;
  std::uint32_t value() const noexcept { return value_; }

 private:
  std::uint32_t value_;
};

// The calling thread's array, as plain initial-exec pointers read on every
// pick: one load each from the thread pointer, where a thread_local with a
// constructor would cost a guard check and, in a shared library, a
// __tls_get_addr call.
[[gnu::tls_model("initial-exec")]] extern constinit thread_local PinSlot* t_pin_slots;
[[gnu::tls_model("initial-exec")]] extern constinit thread_local std::uint32_t t_pin_slot_count;

// The calling thread's slot for `number` when it is beyond the array: grows
// the array (making it on the thread's first pick). nullptr when `number` is
// kMaxPinSlots or more, or in a thread-local destructor after the thread's
// slots were let go at its exit.
PinSlot* GrowPinSlots(std::uint32_t number);

// The calling thread's slot for `number`; nullptr as GrowPinSlots.
inline PinSlot* ThreadPinSlot(std::uint32_t number) {
  if (number < t_pin_slot_count) [[likely]]
    return &t_pin_slots[number];
  return GrowPinSlots(number);
}

}  // namespace disco::detail
