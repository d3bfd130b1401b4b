// Resolver semantics on the in-process memory:// registry: snapshots,
// immutability, stats carried across updates, outage behaviour, subscriptions.
#include "disco/resolver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "registry/memory/memory_registry.h"

namespace disco {
namespace {

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
  EXPECT_EQ(snapshot->endpoints[0].stats->picks + snapshot->endpoints[1].stats->picks, 4u);
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

TEST_F(ResolverTest, SubscribersGetEachNewSnapshotUntilTheyLetGo) {
  auto resolver = MakeResolver();
  std::vector<std::size_t> sizes;
  auto subscription = resolver->Subscribe([&](const SnapshotConstPtr& s) { sizes.push_back(s->endpoints.size()); });
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
    registrations.push_back(Register("x" + std::to_string(i), static_cast<std::uint16_t>(2000 + i)));
    if (i % 3 == 0) registrations.pop_back();
  }
  stop = true;
  for (auto& t : pickers) t.join();
  EXPECT_GT(picks.load(), 0u);
  EXPECT_EQ(resolver->snapshot()->endpoints.size(), 1u + 200u);
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

}  // namespace
}  // namespace disco
