#include "resolve/pin_slots.h"

#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

namespace disco::detail {

constinit thread_local PinSlot** t_pin_chunks = nullptr;
constinit thread_local std::uint32_t t_pin_slot_count = 0;

namespace {

// Leaked on purpose: a resolver destroyed by a static destructor at exit
// still hands its number back.
struct Numbers {
  std::mutex mu;
  std::uint32_t next = 0;
  std::priority_queue<std::uint32_t, std::vector<std::uint32_t>, std::greater<>> free;
  // How often each number was handed back: a thread's slot filled under an
  // older count belongs to a destroyed resolver.
  std::array<std::atomic<std::uint32_t>, kMaxPinSlots> retirements{};
  // All of them summed: a thread looks through its slots only when this
  // moved since it last did, not on every new snapshot.
  std::atomic<std::uint64_t> total_retirements{0};
};
Numbers& TheNumbers() {
  static auto* numbers = new Numbers;
  return *numbers;
}

[[gnu::tls_model("initial-exec")]] constinit thread_local bool t_pin_slots_gone = false;
// total_retirements when the calling thread last looked through its slots.
constinit thread_local std::uint64_t t_retirements_seen = 0;

// Owns the calling thread's chunks; lets go of its pins at thread exit.
struct SlotsOwner {
  std::array<PinSlot*, kMaxPinSlots / kPinChunk> chunks{};
  std::array<std::unique_ptr<PinSlot[]>, kMaxPinSlots / kPinChunk> owned;
  ~SlotsOwner() {
    t_pin_chunks = nullptr;
    t_pin_slot_count = 0;
    t_pin_slots_gone = true;
  }  // then `owned` goes, and with it the thread's pins
};

}  // namespace

PinNumber::PinNumber() {
  auto& numbers = TheNumbers();
  std::lock_guard lock(numbers.mu);
  if (numbers.free.empty()) {
    value_ = numbers.next++;
  } else {
    value_ = numbers.free.top();
    numbers.free.pop();
  }
}

PinNumber::~PinNumber() {
  auto& numbers = TheNumbers();
  if (value_ < kMaxPinSlots) {
    numbers.retirements[value_].fetch_add(1, std::memory_order_relaxed);
    numbers.total_retirements.fetch_add(1, std::memory_order_relaxed);
  }
  std::lock_guard lock(numbers.mu);
  numbers.free.push(value_);
}

PinSlot* GrowPinSlots(std::uint32_t number) {
  if (number >= kMaxPinSlots || t_pin_slots_gone) return nullptr;
  thread_local SlotsOwner owner;
  t_pin_chunks = owner.chunks.data();
  for (std::uint32_t chunk = t_pin_slot_count / kPinChunk; chunk <= number / kPinChunk; ++chunk) {
    owner.owned[chunk] = std::make_unique<PinSlot[]>(kPinChunk);
    owner.chunks[chunk] = owner.owned[chunk].get();
    t_pin_slot_count = (chunk + 1) * kPinChunk;
  }
  return &t_pin_chunks[number / kPinChunk][number % kPinChunk];
}

void FillPinSlot(PinSlot& slot, std::uint32_t number, const void* owner,
                 std::shared_ptr<Published> published, SnapshotPin* pin, std::uint64_t generation) {
  auto& numbers = TheNumbers();
  // Let go of the slots of destroyed resolvers. `slot` itself is filled
  // below whatever its state, and a slot in use further up this thread's
  // stack (a pick within a pick) belongs to a live resolver.
  const std::uint64_t total = numbers.total_retirements.load(std::memory_order_relaxed);
  if (total != t_retirements_seen) {
    t_retirements_seen = total;
    for (std::uint32_t i = 0; i < t_pin_slot_count; ++i) {
      PinSlot& other = t_pin_chunks[i / kPinChunk][i % kPinChunk];
      if (other.owner != nullptr && &other != &slot &&
          other.retirements != numbers.retirements[i].load(std::memory_order_relaxed)) {
        other.Clear();
      }
    }
  }
  slot.pinned.Reset();
  slot.pinned.pin = pin;
  slot.pinned.published = std::move(published);
  slot.owner = owner;
  slot.generation = generation;
  slot.retirements = numbers.retirements[number].load(std::memory_order_relaxed);
}

}  // namespace disco::detail
