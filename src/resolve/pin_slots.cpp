#include "resolve/pin_slots.h"

#include <algorithm>
#include <functional>
#include <mutex>
#include <queue>
#include <vector>

namespace disco::detail {

constinit thread_local PinSlot* t_pin_slots = nullptr;
constinit thread_local std::uint32_t t_pin_slot_count = 0;

namespace {

// Leaked on purpose: a resolver destroyed by a static destructor at exit
// still hands its number back.
struct Numbers {
  std::mutex mu;
  std::uint32_t next = 0;
  std::priority_queue<std::uint32_t, std::vector<std::uint32_t>, std::greater<>> free;
};
Numbers& TheNumbers() {
  static auto* numbers = new Numbers;
  return *numbers;
}

[[gnu::tls_model("initial-exec")]] constinit thread_local bool t_pin_slots_gone = false;

// Owns the calling thread's array; lets go of its pins at thread exit.
struct SlotsOwner {
  std::unique_ptr<PinSlot[]> slots;
  ~SlotsOwner() {
    t_pin_slots = nullptr;
    t_pin_slot_count = 0;
    t_pin_slots_gone = true;
  }  // then `slots` goes, and with it the thread's pins
};

void MoveSlot(PinSlot& to, PinSlot& from) {
  to.owner = from.owner;
  to.generation = from.generation;
  to.pinned.published = std::move(from.pinned.published);
  to.pinned.pin = std::exchange(from.pinned.pin, nullptr);
  to.pinned.position = from.pinned.position;
}

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
  std::lock_guard lock(numbers.mu);
  numbers.free.push(value_);
}

PinSlot* GrowPinSlots(std::uint32_t number) {
  if (number >= kMaxPinSlots || t_pin_slots_gone) return nullptr;
  thread_local SlotsOwner owner;
  const std::uint32_t count =
      std::min(kMaxPinSlots, std::max({number + 1, 2 * t_pin_slot_count, std::uint32_t{8}}));
  auto grown = std::make_unique<PinSlot[]>(count);
  for (std::uint32_t i = 0; i < t_pin_slot_count; ++i) MoveSlot(grown[i], owner.slots[i]);
  owner.slots = std::move(grown);
  t_pin_slots = owner.slots.get();
  t_pin_slot_count = count;
  return &t_pin_slots[number];
}

}  // namespace disco::detail
