// The per-thread slots a Resolver keeps its pins and round-robin positions in
// (resolve/pin_slots.h): dense numbers that live resolvers never share, and
// per-thread arrays that grow without losing what they hold.
#include "resolve/pin_slots.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "disco/resolver.h"

namespace disco::detail {
namespace {

TEST(PinNumberTest, LiveNumbersAreDistinctAndAFreedOneIsReusedFirst) {
  std::vector<std::unique_ptr<PinNumber>> numbers;
  for (int i = 0; i < 20; ++i) numbers.push_back(std::make_unique<PinNumber>());
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    for (std::size_t j = i + 1; j < numbers.size(); ++j) {
      EXPECT_NE(numbers[i]->value(), numbers[j]->value());
    }
  }
  const std::uint32_t freed = numbers[7]->value();
  numbers[7].reset();
  PinNumber next;
  EXPECT_EQ(next.value(), freed) << "the lowest free number comes back first";
}

TEST(PinSlotsTest, TheArrayGrowsKeepingEverySlotsContents) {
  std::thread([] {
    PinSlot* first = ThreadPinSlot(3);
    ASSERT_NE(first, nullptr);
    first->owner = &first;
    first->generation = 42;
    first->pinned.position = 7;
    PinSlot* far = ThreadPinSlot(1000);  // grows past 3's array
    ASSERT_NE(far, nullptr);
    EXPECT_GE(t_pin_slot_count, 1001u);
    PinSlot* again = ThreadPinSlot(3);
    EXPECT_EQ(again->owner, &first);
    EXPECT_EQ(again->generation, 42u);
    EXPECT_EQ(again->pinned.position, 7u);
    EXPECT_EQ(ThreadPinSlot(1000), far) << "no growth, no move";
    EXPECT_EQ(ThreadPinSlot(kMaxPinSlots), nullptr) << "beyond the cap: the unpinned path";
  }).join();
}

// More resolvers than the old fixed table of 8 slots, picked from in turn on
// one thread and across threads while snapshots change: every pick is from
// its own resolver's service, and every snapshot goes when its last pick does.
TEST(PinSlotsTest, ManyResolversPickedInTurnEachKeepTheirOwnSlot) {
  auto registry = MakeRegistry("memory://pin-slots-many");
  ASSERT_TRUE(registry);
  constexpr int kResolvers = 40;
  std::vector<std::unique_ptr<Registration>> registrations;
  std::vector<std::unique_ptr<Resolver>> resolvers;
  for (int r = 0; r < kResolvers; ++r) {
    ServiceInstance instance;
    instance.service = "svc" + std::to_string(r);
    instance.id = "i" + std::to_string(r);
    instance.host = "127.0.0.1";
    instance.port = static_cast<std::uint16_t>(1000 + r);
    registrations.push_back(std::move(*(*registry)->Register(instance)));
    resolvers.push_back(std::move(*Resolver::Make(**registry, instance.service)));
    ASSERT_TRUE(resolvers.back()->WaitReady(std::chrono::seconds(1)));
  }
  std::weak_ptr<const Snapshot> first = resolvers[0]->snapshot();
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      for (int round = 0; round < 200; ++round) {
        for (int r = 0; r < kResolvers; ++r) {
          auto endpoint = resolvers[static_cast<std::size_t>(r)]->Pick();
          if (endpoint == nullptr || endpoint->instance.port != 1000 + r) wrong.fetch_add(1);
        }
      }
    });
  }
  // A second instance of svc0 while the threads pick: a new snapshot.
  ServiceInstance extra;
  extra.service = "svc0";
  extra.id = "j0";
  extra.host = "127.0.0.1";
  extra.port = 1000;
  registrations.push_back(std::move(*(*registry)->Register(extra)));
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  // The threads are gone, and with them their pins: the first snapshot of
  // svc0 is freed once the resolver has moved on.
  EXPECT_EQ(resolvers[0]->snapshot()->endpoints.size(), 2u);
  EXPECT_TRUE(first.expired()) << "a snapshot outlived every pin and pick of it";
}

}  // namespace
}  // namespace disco::detail
