// The per-thread slots a Resolver keeps its pins and round-robin positions in
// (resolve/pin_slots.h): dense numbers that live resolvers never share, and
// per-thread arrays that grow without losing what they hold.
#include "resolve/pin_slots.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "disco/balancer.h"
#include "disco/registry.h"
#include "disco/resolver.h"

namespace disco::detail {
namespace {

// Registers one instance of `service` at 127.0.0.1:port.
std::unique_ptr<Registration> RegisterOne(Registry& registry, const std::string& service,
                                          const std::string& id, std::uint16_t port) {
  ServiceInstance instance;
  instance.service = service;
  instance.id = id;
  instance.host = "127.0.0.1";
  instance.port = port;
  auto registration = registry.Register(instance);
  EXPECT_TRUE(registration) << registration.error().ToString();
  return registration ? std::move(*registration) : nullptr;
}

// `count` services svc0, svc1... on one memory registry, one instance each
// (id i<r>, port 1000 + r), and a ready resolver for each.
struct Services {
  std::unique_ptr<Registry> registry;
  std::vector<std::unique_ptr<Registration>> registrations;
  std::vector<std::unique_ptr<Resolver>> resolvers;

  Services(const std::string& name, int count) {
    registry = std::move(*MakeRegistry("memory://" + name));
    for (int r = 0; r < count; ++r) {
      const std::string service = "svc" + std::to_string(r);
      registrations.push_back(RegisterOne(*registry, service, "i" + std::to_string(r),
                                          static_cast<std::uint16_t>(1000 + r)));
      resolvers.push_back(std::move(*Resolver::Make(*registry, service)));
      EXPECT_TRUE(resolvers.back()->WaitReady(std::chrono::seconds(1)));
    }
  }
};

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

TEST(PinSlotsTest, SlotsNeverMoveAsTheThreadMakesMore) {
  std::thread([] {
    PinSlot* first = ThreadPinSlot(3);
    ASSERT_NE(first, nullptr);
    first->owner = &first;
    first->generation = 42;
    first->pinned.position.next = 7;
    PinSlot* far = ThreadPinSlot(1000);  // makes chunks up to 1000's
    ASSERT_NE(far, nullptr);
    EXPECT_GE(t_pin_slot_count, 1001u);
    EXPECT_EQ(ThreadPinSlot(3), first) << "a slot in use may not move";
    EXPECT_EQ(first->owner, &first);
    EXPECT_EQ(first->generation, 42u);
    EXPECT_EQ(first->pinned.position.next, 7u);
    EXPECT_EQ(ThreadPinSlot(1000), far);
    EXPECT_EQ(ThreadPinSlot(kMaxPinSlots), nullptr) << "beyond the cap: the unpinned path";
    first->owner = nullptr;
  }).join();
}

// More resolvers than the old fixed table of 8 slots, picked from in turn on
// one thread and across threads while snapshots change: every pick is from
// its own resolver's service, and every snapshot goes when its last pick does.
TEST(PinSlotsTest, ManyResolversPickedInTurnEachKeepTheirOwnSlot) {
  constexpr int kResolvers = 40;
  Services services("pin-slots-many", kResolvers);
  auto& resolvers = services.resolvers;
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
  services.registrations.push_back(RegisterOne(*services.registry, "svc0", "j0", 1000));
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  // The threads are gone, and with them their pins: the first snapshot of
  // svc0 is freed once the resolver has moved on.
  EXPECT_EQ(resolvers[0]->snapshot()->endpoints.size(), 2u);
  EXPECT_TRUE(first.expired()) << "a snapshot outlived every pin and pick of it";
}

// A thread that outlives resolvers it picked from lets go of their snapshots
// the next time it takes a new snapshot of any resolver (it kept them until
// it exited: 100 destroyed resolvers' snapshots on each of 4 threads).
TEST(PinSlotsTest, ALiveThreadLetsGoOfDestroyedResolversSnapshots) {
  constexpr int kResolvers = 20;
  Services services("pin-slots-retired", kResolvers + 1);
  auto& resolvers = services.resolvers;
  auto& registrations = services.registrations;
  std::vector<std::weak_ptr<const Snapshot>> snapshots;
  for (int r = 0; r < kResolvers; ++r) {
    snapshots.push_back(resolvers[static_cast<std::size_t>(r)]->snapshot());
  }
  std::mutex mu;
  std::condition_variable cv;
  int step = 0;  // 1: picked from all; 2: the first 20 are destroyed; 3: picked again
  std::thread picker([&] {
    for (auto& resolver : resolvers) EXPECT_NE(resolver->Pick(), nullptr);
    {
      std::unique_lock lock(mu);
      step = 1;
      cv.notify_all();
      cv.wait(lock, [&] { return step == 2; });
    }
    // A new snapshot of the one resolver left: its slot is filled anew.
    EXPECT_NE(resolvers.back()->Pick(), nullptr);
    std::unique_lock lock(mu);
    step = 3;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 4; });  // stays alive while the test looks
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return step == 1; });
  }
  for (int r = 0; r < kResolvers; ++r) {
    resolvers[static_cast<std::size_t>(r)].reset();
    registrations[static_cast<std::size_t>(r)].reset();
  }
  std::size_t alive_before = 0;
  for (const auto& snapshot : snapshots) alive_before += snapshot.expired() ? 0 : 1;
  EXPECT_EQ(alive_before, std::size_t{kResolvers}) << "the picking thread still pins them";
  registrations.push_back(
      RegisterOne(*services.registry, "svc" + std::to_string(kResolvers), "j", 2000));
  {
    std::unique_lock lock(mu);
    step = 2;
    cv.notify_all();
    cv.wait(lock, [&] { return step == 3; });
  }
  std::size_t alive_after = 0;
  for (const auto& snapshot : snapshots) alive_after += snapshot.expired() ? 0 : 1;
  EXPECT_EQ(alive_after, 0u) << "a live thread kept destroyed resolvers' snapshots";
  {
    std::lock_guard lock(mu);
    step = 4;
    cv.notify_all();
  }
  picker.join();
}

// A policy whose picker picks from another resolver (against the Picker
// rules: Resolver::Pick may allocate) must still not corrupt memory: the
// inner pick makes a new chunk of slots on a fresh thread while the outer
// pick holds its own slot and position (with slots in one growable array,
// the outer pick wrote into the freed array).
TEST(PinSlotsTest, APickWithinAPickDoesNotMoveTheOuterSlot) {
  auto registry = MakeRegistry("memory://pin-slots-nested");
  ASSERT_TRUE(registry);
  std::vector<std::unique_ptr<Registration>> registrations;
  registrations.push_back(RegisterOne(**registry, "outer", "outer-1", 1));
  registrations.push_back(RegisterOne(**registry, "outer", "outer-2", 2));
  registrations.push_back(RegisterOne(**registry, "inner", "inner-3", 3));
  static std::atomic<Resolver*> inner{nullptr};
  static std::atomic<int> inner_picks{0};
  class Nested final : public Balancer {
   public:
    std::string_view name() const override { return "nested_pick_test"; }
    std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
      class P final : public Picker {
       public:
        P(SnapshotConstPtr snapshot, std::unique_ptr<Picker> rr)
            : snapshot_(std::move(snapshot)), rr_(std::move(rr)) {}
        const Endpoint* Pick(const PickContext& context) override {
          if (Resolver* other = inner.load(); other != nullptr && other->Pick() != nullptr)
            inner_picks.fetch_add(1);
          return rr_->Pick(context);
        }

       private:
        SnapshotConstPtr snapshot_;
        std::unique_ptr<Picker> rr_;
      };
      return std::make_unique<P>(snapshot, (*MakeBalancer("round_robin"))->Build(snapshot));
    }
  };
  static bool registered = false;
  if (!registered) {
    ASSERT_TRUE(RegisterBalancer("nested_pick_test", [] { return std::make_unique<Nested>(); }));
    registered = true;
  }
  auto outer = std::move(
      *Resolver::Make(**registry, "outer", ResolverOptions{.policy = "nested_pick_test"}));
  // Numbers between the two, so that the inner resolver's slot is in a
  // chunk the picking thread has not made when the outer pick runs.
  std::vector<std::unique_ptr<PinNumber>> padding;
  for (std::uint32_t i = 0; i < kPinChunk; ++i) padding.push_back(std::make_unique<PinNumber>());
  auto inner_resolver = std::move(*Resolver::Make(**registry, "inner"));
  ASSERT_TRUE(outer->WaitReady(std::chrono::seconds(1)));
  ASSERT_TRUE(inner_resolver->WaitReady(std::chrono::seconds(1)));
  inner = inner_resolver.get();
  std::thread([&] {
    std::set<std::uint16_t> seen;
    int previous = 0;
    for (int i = 0; i < 10; ++i) {
      auto endpoint = outer->Pick();
      ASSERT_NE(endpoint, nullptr);
      const int port = endpoint->instance.port;
      if (previous != 0) {
        EXPECT_NE(port, previous) << "round robin over two endpoints alternates";
      }
      previous = port;
      seen.insert(endpoint->instance.port);
    }
    EXPECT_EQ(seen, (std::set<std::uint16_t>{1, 2}));
  }).join();
  inner = nullptr;
  EXPECT_EQ(inner_picks.load(), 10);
}

}  // namespace
}  // namespace disco::detail
