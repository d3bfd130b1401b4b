// Resolver semantics on the in-process memory:// registry: snapshots,
// immutability, stats carried across updates, outage behaviour, subscriptions.
#include "disco/resolver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "registry/memory/memory_registry.h"

namespace disco {
namespace {

namespace testing_util {
// Polls `condition` for up to 5 s.
template <class F>
bool Eventually(F condition) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}
}  // namespace testing_util

ServiceInstance Instance(std::string id, std::uint16_t port) {
  ServiceInstance i;
  i.service = "svc";
  i.id = std::move(id);
  i.host = "127.0.0.1";
  i.port = port;
  return i;
}

class ResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    auto registry = MakeRegistry("memory://" + name_);
    ASSERT_TRUE(registry) << registry.error().ToString();
    registry_ = std::move(*registry);
  }

  std::unique_ptr<Registration> Register(std::string id, std::uint16_t port) {
    auto r = registry_->Register(Instance(std::move(id), port));
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? std::move(*r) : nullptr;
  }

  std::unique_ptr<Resolver> MakeResolver(std::string policy = "round_robin") {
    auto r = Resolver::Make(*registry_, "svc", ResolverOptions{.policy = policy});
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? std::move(*r) : nullptr;
  }

  std::string name_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(ResolverTest, EmptyServiceIsAnEmptySnapshotNotAnError) {
  auto resolver = MakeResolver();
  EXPECT_TRUE(resolver->WaitReady(std::chrono::seconds(1)));
  EXPECT_TRUE(resolver->snapshot()->empty());
  EXPECT_EQ(resolver->Pick(), nullptr);
  EXPECT_EQ(resolver->LastError(), "");
}

TEST_F(ResolverTest, SeesRegistrationsSortedByIdAndPicksAll) {
  auto b = Register("b", 2);
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  ASSERT_TRUE(resolver->WaitReady(std::chrono::seconds(1)));
  auto snapshot = resolver->snapshot();
  ASSERT_EQ(snapshot->endpoints.size(), 2u);
  EXPECT_EQ(snapshot->endpoints[0].instance.id, "a");
  EXPECT_EQ(snapshot->endpoints[0].address, "127.0.0.1:1");
  EXPECT_EQ(snapshot->endpoints[1].instance.id, "b");
  std::set<std::string> seen;
  for (int i = 0; i < 4; ++i) seen.insert(resolver->Pick()->instance.id);
  EXPECT_EQ(seen, (std::set<std::string>{"a", "b"}));
  EXPECT_EQ(snapshot->endpoints[0].stats->picks() + snapshot->endpoints[1].stats->picks(), 4u);
}

TEST_F(ResolverTest, PublishedSnapshotsNeverChange) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  auto first = resolver->snapshot();
  ASSERT_EQ(first->endpoints.size(), 1u);
  auto b = Register("b", 2);
  auto second = resolver->snapshot();
  EXPECT_EQ(first->endpoints.size(), 1u) << "an old snapshot must stay as it was";
  EXPECT_EQ(second->endpoints.size(), 2u);
  EXPECT_GT(second->version, first->version);
  a.reset();  // deregisters
  EXPECT_EQ(resolver->snapshot()->endpoints.size(), 1u);
  EXPECT_EQ(resolver->snapshot()->endpoints[0].instance.id, "b");
}

TEST_F(ResolverTest, EndpointStatsSurviveUpdatesOfOtherInstances) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  auto stats = resolver->snapshot()->endpoints.at(0).stats;
  stats->ejected = true;
  stats->active_requests = 7;
  auto b = Register("b", 2);
  const auto& endpoints = resolver->snapshot()->endpoints;
  ASSERT_EQ(endpoints.size(), 2u);
  EXPECT_EQ(endpoints[0].stats, stats) << "same instance id keeps its counters";
  EXPECT_TRUE(endpoints[0].ejected());
  EXPECT_EQ(endpoints[1].stats->active_requests, 0u);
  // round_robin skips the ejected endpoint.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(resolver->Pick()->instance.id, "b");
}

TEST_F(ResolverTest, SameInstanceSetDoesNotPublishANewVersion) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  auto version = resolver->snapshot()->version;
  // Re-registering identical data produces an update with the same content.
  auto again = registry_->Register(Instance("a", 1));
  ASSERT_TRUE(again);
  EXPECT_EQ(resolver->snapshot()->version, version);
  // A changed port is a change.
  auto moved = registry_->Register(Instance("a", 9));
  ASSERT_TRUE(moved);
  EXPECT_GT(resolver->snapshot()->version, version);
  EXPECT_EQ(resolver->snapshot()->endpoints.at(0).instance.port, 9);
}

TEST_F(ResolverTest, KeepsServingTheLastSnapshotWhileTheRegistryIsDown) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  EXPECT_EQ(resolver->Staleness(), std::chrono::milliseconds(0));
  memory::SetAvailable(name_, false);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_GE(resolver->Staleness(), std::chrono::milliseconds(20));
  EXPECT_NE(resolver->LastError().find("unavailable"), std::string::npos);
  ASSERT_NE(resolver->Pick(), nullptr) << "the last known endpoint keeps being served";
  EXPECT_EQ(resolver->Pick()->instance.id, "a");
  EXPECT_FALSE(registry_->List("svc"));
  memory::SetAvailable(name_, true);
  EXPECT_EQ(resolver->Staleness(), std::chrono::milliseconds(0));
  EXPECT_EQ(resolver->LastError(), "");
  EXPECT_EQ(resolver->snapshot()->endpoints.size(), 1u);
}

// The snapshot the registry gives on its return is published after the
// resolver stopped calling itself stale: whoever sees it (a subscriber, or a
// test waiting for it) sees staleness 0. It once saw the outage's 2 s.
TEST_F(ResolverTest, TheSnapshotAfterAnOutageIsNeverCalledStale) {
  auto a = Register("a", 1);
  auto b = Register("b", 2);
  auto made = Resolver::Make(*registry_, "svc",
                             ResolverOptions{.recovery_grace = std::chrono::milliseconds(0)});
  ASSERT_TRUE(made) << made.error().ToString();
  auto& resolver = *made;
  std::vector<std::chrono::milliseconds> staleness;
  std::vector<std::string> errors;
  auto subscription = resolver->Subscribe([&](const SnapshotConstPtr&) {
    staleness.push_back(resolver->Staleness());
    errors.push_back(resolver->LastError());
  });
  memory::SetAvailable(name_, false);
  ASSERT_TRUE(a->Deregister());  // the set the registry returns with differs
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_GE(resolver->Staleness(), std::chrono::milliseconds(20));
  ASSERT_TRUE(staleness.empty());
  memory::SetAvailable(name_, true);
  ASSERT_EQ(staleness.size(), 1u);
  EXPECT_EQ(staleness[0], std::chrono::milliseconds(0));
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(resolver->snapshot()->endpoints.size(), 1u);
  subscription.reset();
}

TEST_F(ResolverTest, SubscribersGetEachNewSnapshotUntilTheyLetGo) {
  auto resolver = MakeResolver();
  std::vector<std::size_t> sizes;
  auto subscription =
      resolver->Subscribe([&](const SnapshotConstPtr& s) { sizes.push_back(s->endpoints.size()); });
  auto a = Register("a", 1);
  auto b = Register("b", 2);
  a.reset();
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 2, 1}));
  subscription.reset();
  b.reset();
  EXPECT_EQ(sizes.size(), 3u) << "no callback after the subscription is gone";
}

TEST_F(ResolverTest, PickedEndpointOutlivesTheResolver) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  EndpointPtr endpoint = resolver->Pick();
  resolver.reset();
  a.reset();
  ASSERT_NE(endpoint, nullptr);
  EXPECT_EQ(endpoint->address, "127.0.0.1:1");
}

// EndpointPtr counts copies on the picking thread without atomics
// (disco/endpoint_ptr.h): copies that move to, are copied on and die on
// other threads, before and after the picking thread let go of the snapshot
// or exited, must keep the snapshot exactly as long as the last one lives.
TEST_F(ResolverTest, ASnapshotLivesUntilItsLastEndpointPtrOnAnyThreadGoes) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  std::weak_ptr<const Snapshot> first = resolver->snapshot();
  std::vector<EndpointPtr> kept;  // made on the picker thread, which then exits
  std::thread([&] {
    EndpointPtr endpoint = resolver->Pick();
    ASSERT_NE(endpoint, nullptr);
    for (int i = 0; i < 3; ++i) kept.push_back(endpoint);
    kept.push_back(std::move(endpoint));
  }).join();
  auto b = Register("b", 2);  // a new snapshot: the resolver lets go of the first
  std::vector<EndpointPtr> copies;
  std::thread([&] {
    for (const auto& endpoint : kept) copies.push_back(endpoint);  // counted here, atomically
  }).join();
  kept.clear();
  EXPECT_FALSE(first.expired()) << "copies made on another thread still hold it";
  ASSERT_EQ(copies.size(), 4u);
  EXPECT_EQ(copies.back()->instance.id, "a");
  std::thread([&] { copies.resize(1); }).join();
  EXPECT_FALSE(first.expired());
  copies.clear();
  EXPECT_TRUE(first.expired()) << "the last copy frees it";
}

TEST_F(ResolverTest, ThePickingThreadCanOutliveItsPinAndKeepCopying) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  std::weak_ptr<const Snapshot> first = resolver->snapshot();
  std::thread([&] {
    EndpointPtr old = resolver->Pick();
    auto b = Register("b", 2);
    EndpointPtr fresh = resolver->Pick();  // this thread now pins the second snapshot
    EndpointPtr copy = old;                // a copy of the first, after its pin was let go
    EndpointPtr moved = std::move(old);
    EXPECT_EQ(old, nullptr);
    EXPECT_FALSE(first.expired());
    copy = fresh;  // the first snapshot's copy goes by assignment
    moved = nullptr;
    EXPECT_TRUE(first.expired()) << "no copy of the first snapshot's endpoint is left";
    EXPECT_NE(copy, nullptr);
  }).join();
}

// Copies made on another thread and dropped on the picking thread while it
// still owns the pin: its own count goes to zero and below, and only the sum
// with the other threads' count is the truth.
TEST_F(ResolverTest, CopiesMadeElsewhereAndDroppedOnThePickingThreadBalance) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  std::weak_ptr<const Snapshot> first = resolver->snapshot();
  std::thread([&] {
    std::vector<EndpointPtr> made_elsewhere;
    {
      EndpointPtr picked = resolver->Pick();
      std::thread([&] {
        for (int i = 0; i < 5; ++i) made_elsewhere.push_back(picked);
      }).join();
    }  // the pick itself is gone: the owner's count is back to its own reference
    made_elsewhere.resize(1);  // four dropped here, on the owner: its count goes below one
    auto b = Register("b", 2);
    EXPECT_NE(resolver->Pick(), nullptr);  // lets go of the first pin
    EXPECT_FALSE(first.expired()) << "one copy is left";
    made_elsewhere.clear();
    EXPECT_TRUE(first.expired());
  }).join();
}

TEST(EndpointPtrTest, MadeFromASnapshotKeepsItAliveAndComparesByEndpoint) {
  auto snapshot = MakeSnapshot("svc", {Instance("a", 1), Instance("b", 2)}, nullptr, 1);
  std::weak_ptr<const Snapshot> weak = snapshot;
  EndpointPtr a(snapshot, &snapshot->endpoints[0]);
  EndpointPtr b(snapshot, &snapshot->endpoints[1]);
  snapshot.reset();
  EXPECT_FALSE(weak.expired());
  EndpointPtr a2 = a;
  EXPECT_TRUE(a2 == a);
  EXPECT_FALSE(a == b);
  EXPECT_EQ(b->instance.id, "b");
  std::thread([&] { a2.reset(); }).join();
  EXPECT_EQ(a2, nullptr);
  a.reset();
  EXPECT_FALSE(weak.expired());
  b = nullptr;
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(EndpointPtr(SnapshotConstPtr(), nullptr), nullptr);
}

// A thread-local object made before the thread first picks is destroyed
// after the thread let go of its pins: a pick from its destructor still works.
struct PicksWhenTheThreadEnds {
  Resolver* resolver = nullptr;
  std::vector<EndpointPtr>* out = nullptr;
  ~PicksWhenTheThreadEnds() {
    if (resolver != nullptr) out->push_back(resolver->Pick());
  }
};

TEST_F(ResolverTest, APickFromAThreadLocalDestructorAtThreadExitWorks) {
  auto a = Register("a", 1);
  auto resolver = MakeResolver();
  std::weak_ptr<const Snapshot> first = resolver->snapshot();
  std::vector<EndpointPtr> picked;
  std::thread([&] {
    thread_local PicksWhenTheThreadEnds late;
    late.resolver = resolver.get();
    late.out = &picked;
    picked.push_back(resolver->Pick());
  }).join();
  ASSERT_EQ(picked.size(), 2u);
  ASSERT_NE(picked[1], nullptr);
  EXPECT_EQ(picked[1]->instance.id, "a");
  auto b = Register("b", 2);
  EXPECT_FALSE(first.expired());
  picked.clear();
  EXPECT_TRUE(first.expired());
}

TEST_F(ResolverTest, EndpointPtrsHandedBetweenThreadsWhileSnapshotsChange) {
  auto base = Register("base", 1000);
  auto resolver = MakeResolver();
  std::mutex mu;
  std::vector<std::weak_ptr<const Snapshot>> published;
  auto subscription = resolver->Subscribe([&](const SnapshotConstPtr& snapshot) {
    std::lock_guard lock(mu);
    published.emplace_back(snapshot);
  });
  std::vector<EndpointPtr> handed;  // guarded by mu
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {  // pick, keep a few, hand some over
      std::vector<EndpointPtr> mine;
      while (!stop.load()) {
        EndpointPtr endpoint = resolver->Pick();
        ASSERT_NE(endpoint, nullptr);
        mine.push_back(endpoint);
        if (mine.size() > 8) mine.erase(mine.begin());
        std::lock_guard lock(mu);
        handed.push_back(std::move(endpoint));
      }
    });
  }
  threads.emplace_back([&] {  // take over, copy, drop
    while (!stop.load()) {
      std::vector<EndpointPtr> taken;
      {
        std::lock_guard lock(mu);
        taken.swap(handed);
      }
      std::vector<EndpointPtr> copies(taken.begin(), taken.end());
      for (const auto& endpoint : copies) ASSERT_FALSE(endpoint->address.empty());
    }
  });
  std::vector<std::unique_ptr<Registration>> registrations;
  for (int i = 0; i < 200; ++i) {
    registrations.push_back(
        Register("x" + std::to_string(i), static_cast<std::uint16_t>(2000 + i)));
    if (i % 2 == 0) registrations.pop_back();
  }
  stop = true;
  for (auto& thread : threads) thread.join();
  handed.clear();
  subscription.reset();
  resolver.reset();
  std::lock_guard lock(mu);
  ASSERT_GT(published.size(), 100u);
  for (const auto& snapshot : published) EXPECT_TRUE(snapshot.expired());
}

TEST_F(ResolverTest, RejectsBadNamesAndPolicies) {
  auto bad_name = Resolver::Make(*registry_, "no/slashes");
  ASSERT_FALSE(bad_name);
  EXPECT_EQ(bad_name.error().code, ErrorCode::kInvalidArgument);
  auto bad_policy = Resolver::Make(*registry_, "svc", ResolverOptions{.policy = "fastest"});
  ASSERT_FALSE(bad_policy);
  EXPECT_EQ(bad_policy.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad_policy.error().message.find("round_robin"), std::string::npos);
}

TEST_F(ResolverTest, ConcurrentPicksWhileSnapshotsChange) {
  auto resolver = MakeResolver();
  std::vector<std::unique_ptr<Registration>> registrations;
  registrations.push_back(Register("base", 1000));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> picks{0};
  std::vector<std::thread> pickers;
  for (int t = 0; t < 3; ++t) {
    pickers.emplace_back([&] {
      while (!stop.load()) {
        auto endpoint = resolver->Pick();
        ASSERT_NE(endpoint, nullptr);
        ASSERT_FALSE(endpoint->address.empty());
        picks.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 300; ++i) {
    registrations.push_back(
        Register("x" + std::to_string(i), static_cast<std::uint16_t>(2000 + i)));
    if (i % 3 == 0) registrations.pop_back();
  }
  stop = true;
  for (auto& t : pickers) t.join();
  EXPECT_GT(picks.load(), 0u);
  EXPECT_EQ(resolver->snapshot()->endpoints.size(), 1u + 200u);
}

// Through a Resolver, round_robin and weighted_round_robin walk a position
// per thread (PickContext::thread_position), not the per-CPU cursor: each
// thread's picks are one unbroken stretch of the sequence even with more
// threads than cores (the per-CPU cursor would interleave the threads that
// share a CPU), and over the process every endpoint is within one pick per
// thread of every other.
TEST_F(ResolverTest, RoundRobinWalksEachThreadsOwnPositionAndIsFairOverTheProcess) {
  constexpr int kThreads = 8;
  constexpr int kEndpoints = 10;
  constexpr std::size_t kPicksPerThread = 20'011;
  std::vector<std::unique_ptr<Registration>> registrations;
  for (int i = 0; i < kEndpoints; ++i)
    registrations.push_back(Register("e" + std::to_string(i), static_cast<std::uint16_t>(i + 1)));
  for (const char* policy : {"round_robin", "weighted_round_robin"}) {
    SCOPED_TRACE(policy);
    auto resolver = MakeResolver(policy);
    ASSERT_TRUE(resolver->WaitReady(std::chrono::seconds(1)));
    ASSERT_EQ(resolver->snapshot()->endpoints.size(), std::size_t{kEndpoints});
    std::vector<std::array<std::uint64_t, kEndpoints>> counts(kThreads);
    std::atomic<std::uint64_t> broken_runs{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        int previous = -1;
        for (std::size_t i = 0; i < kPicksPerThread; ++i) {
          auto endpoint = resolver->Pick();
          ASSERT_NE(endpoint, nullptr);
          const int index = endpoint->instance.port - 1;  // ids e0..e9 sort as ports 1..10
          if (previous >= 0 && index != (previous + 1) % kEndpoints) broken_runs.fetch_add(1);
          previous = index;
          ++counts[t][static_cast<std::size_t>(index)];
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(broken_runs.load(), 0u) << "a thread's picks left its own sequence";
    std::uint64_t least = ~std::uint64_t{0}, most = 0, total = 0;
    for (int e = 0; e < kEndpoints; ++e) {
      std::uint64_t count = 0;
      for (const auto& mine : counts) count += mine[static_cast<std::size_t>(e)];
      least = std::min(least, count);
      most = std::max(most, count);
      total += count;
    }
    EXPECT_EQ(total, kThreads * kPicksPerThread);
    EXPECT_LE(most - least, std::uint64_t{kThreads}) << "least " << least << ", most " << most;
  }
}

TEST_F(ResolverTest, TwoResolversDoNotShareCachedPickers) {
  auto a = Register("a", 1);
  auto other_registry = MakeRegistry("memory://" + name_ + "-other");
  ASSERT_TRUE(other_registry);
  ServiceInstance z = Instance("z", 26);
  auto z_reg = (*other_registry)->Register(z);
  ASSERT_TRUE(z_reg);
  auto r1 = MakeResolver();
  auto r2 = Resolver::Make(**other_registry, "svc");
  ASSERT_TRUE(r2);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(r1->Pick()->instance.id, "a");
    EXPECT_EQ((*r2)->Pick()->instance.id, "z");
  }
}

TEST(SnapshotTest, EndpointsAreSortedByIdWhateverTheInputOrder) {
  auto snapshot =
      MakeSnapshot("svc", {Instance("c", 3), Instance("a", 1), Instance("b", 2)}, nullptr, 1);
  ASSERT_EQ(snapshot->endpoints.size(), 3u);
  EXPECT_EQ(snapshot->endpoints[0].instance.id, "a");
  EXPECT_EQ(snapshot->endpoints[1].instance.id, "b");
  EXPECT_EQ(snapshot->endpoints[2].instance.id, "c");
  EXPECT_EQ(snapshot->endpoints[2].address, "127.0.0.1:3");
}

// A registry whose watch the test drives by hand: one watch, updates
// delivered on the test's thread.
class ScriptedRegistry final : public Registry {
 public:
  const std::string& url() const override { return url_; }
  Result<std::unique_ptr<Registration>> Register(const ServiceInstance&,
                                                 const RegisterOptions&) override {
    return Fail(ErrorCode::kInternal, "scripted");
  }
  Result<void> Deregister(std::string_view, std::string_view) override { return {}; }
  Result<std::vector<InstanceStatus>> List(std::string_view, bool) override {
    return std::vector<InstanceStatus>{};
  }
  Result<std::vector<std::string>> Services() override { return std::vector<std::string>{}; }
  std::unique_ptr<WatchHandle> Watch(std::string_view, WatchCallback callback) override {
    callback_ = std::move(callback);
    return std::make_unique<WatchHandle>();
  }

  void Deliver(std::vector<ServiceInstance> instances) {
    WatchUpdate update;
    update.instances = std::move(instances);
    callback_(update);
  }
  void Unreachable() {
    WatchUpdate update;
    update.ok = false;
    update.error = Error{ErrorCode::kUnavailable, "down"};
    callback_(update);
  }

 private:
  std::string url_ = "scripted://";
  WatchCallback callback_;
};

std::vector<std::string> Ids(const Resolver& resolver) {
  std::vector<std::string> ids;
  for (const auto& e : resolver.snapshot()->endpoints) ids.push_back(e.instance.id);
  return ids;
}

using IdList = std::vector<std::string>;

// After an outage the registry may come back knowing nobody yet (a Consul
// agent restarted without state): the resolver keeps what it served until
// each instance is listed again, or the recovery grace ends.
TEST(ResolverRecoveryTest, KeepsUnlistedEndpointsForTheGraceAfterAnOutage) {
  ScriptedRegistry registry;
  // A grace long enough that the checks inside it hold on a slow
  // (sanitized) run; Eventually waits up to 5 s for its end.
  auto made = Resolver::Make(registry, "svc",
                             ResolverOptions{.recovery_grace = std::chrono::seconds(2)});
  ASSERT_TRUE(made);
  auto& resolver = **made;
  registry.Deliver({Instance("a", 1), Instance("b", 2), Instance("c", 3)});
  EXPECT_EQ(Ids(resolver), (IdList{"a", "b", "c"}));

  registry.Unreachable();
  registry.Deliver({});  // back, but it forgot everyone
  EXPECT_EQ(Ids(resolver), (IdList{"a", "b", "c"})) << "held: nobody re-registered yet";
  EXPECT_EQ(resolver.Staleness(), std::chrono::milliseconds(0));
  registry.Deliver({Instance("b", 2), Instance("d", 4)});  // b is back, d is new
  EXPECT_EQ(Ids(resolver), (IdList{"a", "b", "c", "d"}));
  registry.Deliver({Instance("d", 4)});  // b listed once: the registry decides about it now
  EXPECT_EQ(Ids(resolver), (IdList{"a", "c", "d"}));
  registry.Deliver({Instance("a", 1), Instance("d", 4)});
  EXPECT_EQ(Ids(resolver), (IdList{"a", "c", "d"}));
  // c never came back: dropped when the grace ends, without another update.
  EXPECT_TRUE(testing_util::Eventually([&] { return Ids(resolver) == IdList{"a", "d"}; }));
}

// Subscribers hear every snapshot on the thread that delivers the watch's
// updates, except the one published when the grace ends without an update:
// that comes from the resolver's own thread (resolver.h's contract).
TEST(ResolverRecoveryTest, SubscribersHearTheGraceEndFromTheResolversThread) {
  ScriptedRegistry registry;
  auto made = Resolver::Make(registry, "svc",
                             ResolverOptions{.recovery_grace = std::chrono::seconds(1)});
  ASSERT_TRUE(made);
  auto& resolver = **made;
  std::mutex mu;
  std::vector<std::pair<std::size_t, std::thread::id>> calls;  // (endpoints, thread)
  auto subscription = resolver.Subscribe([&](const SnapshotConstPtr& s) {
    std::lock_guard lock(mu);
    calls.emplace_back(s->endpoints.size(), std::this_thread::get_id());
  });
  registry.Deliver({Instance("a", 1), Instance("b", 2)});
  registry.Unreachable();
  registry.Deliver({Instance("a", 1)});  // b held for the grace: nothing new to publish
  EXPECT_EQ(Ids(resolver), (IdList{"a", "b"}));
  // Published first, then told: wait for the call, not for the snapshot.
  ASSERT_TRUE(testing_util::Eventually([&] {
    std::lock_guard lock(mu);
    return calls.size() >= 2;
  }));
  EXPECT_EQ(Ids(resolver), (IdList{"a"}));
  std::lock_guard lock(mu);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].first, 2u);
  EXPECT_EQ(calls[0].second, std::this_thread::get_id()) << "the delivering thread";
  EXPECT_EQ(calls[1].first, 1u);
  EXPECT_NE(calls[1].second, std::this_thread::get_id()) << "the grace's end has its own thread";
}

TEST(ResolverRecoveryTest, NoGraceWithoutAnOutageOrWhenTurnedOff) {
  ScriptedRegistry registry;
  auto normal = Resolver::Make(registry, "svc");
  ASSERT_TRUE(normal);
  registry.Deliver({Instance("a", 1), Instance("b", 2)});
  registry.Deliver({Instance("a", 1)});
  EXPECT_EQ(Ids(**normal), (IdList{"a"})) << "an ordinary update is taken as it is";

  ScriptedRegistry other;
  auto off = Resolver::Make(other, "svc", ResolverOptions{.recovery_grace = {}});
  ASSERT_TRUE(off);
  other.Deliver({Instance("a", 1), Instance("b", 2)});
  other.Unreachable();
  EXPECT_EQ(Ids(**off), (IdList{"a", "b"})) << "the last snapshot is served while unreachable";
  other.Deliver({Instance("a", 1)});
  EXPECT_EQ(Ids(**off), (IdList{"a"}));
}

TEST(ResolverRecoveryTest, AStartAgainstADownRegistryHoldsNothing) {
  ScriptedRegistry registry;
  auto made = Resolver::Make(registry, "svc");
  ASSERT_TRUE(made);
  registry.Unreachable();
  registry.Deliver({Instance("a", 1)});
  EXPECT_EQ(Ids(**made), (IdList{"a"}));
  registry.Deliver({});
  EXPECT_TRUE((*made)->snapshot()->empty());
}

}  // namespace
}  // namespace disco
