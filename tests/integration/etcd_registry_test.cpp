// The etcd backend against a real etcd: register, list, watch, resolve,
// deregister, the naming/endpoints wire format, and what it tolerates.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "disco/resolver.h"
#include "etcd_test_util.h"
#include "registry/etcd/etcd_test_hooks.h"

namespace disco::testing {
namespace {

class EtcdRegistryTest : public ::testing::Test {
 protected:
  EtcdServer etcd_;
  std::unique_ptr<Registry> registry_ = OpenEtcd(etcd_.url());
};

TEST_F(EtcdRegistryTest, RegisteredInstanceIsVisibleToListWatchAndResolver) {
  WatchRecorder watcher;
  auto watch = registry_->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({}, 5s));
  auto resolver = Resolver::Make(*registry_, "svc");
  ASSERT_TRUE(resolver) << resolver.error().ToString();
  ASSERT_TRUE((*resolver)->WaitReady(5s));

  ServiceInstance instance = Instance("svc", "a", 9000);
  instance.tags = {"blue", "v2"};
  instance.metadata = {{"proto", "http"}, {"owner", "team-a"}};
  instance.weight = 7;
  instance.zone = "eu-1";
  auto registration = registry_->Register(instance, Ttl(3));
  ASSERT_TRUE(registration) << registration.error().ToString();
  EXPECT_EQ((*registration)->state(), RegistrationState::kActive);

  auto list = registry_->List("svc");
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->at(0).instance, instance);
  EXPECT_EQ(list->at(0).health, HealthState::kPassing);

  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s))
      << "watcher saw " << ::testing::PrintToString(watcher.ids());
  EXPECT_EQ(watcher.instances().at(0), instance);
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 1; }, 5s));
  auto picked = (*resolver)->Pick();
  ASSERT_NE(picked, nullptr);
  EXPECT_EQ(picked->address, "127.0.0.1:9000");

  // The key and value follow etcd's naming/endpoints convention.
  auto raw = etcd_.Get("services/svc/a");
  ASSERT_TRUE(raw);
  auto value = nlohmann::json::parse(*raw);
  EXPECT_EQ(value["Op"], 0);
  EXPECT_EQ(value["Addr"], "127.0.0.1:9000");
  EXPECT_EQ(value["Metadata"]["weight"], 7);
  EXPECT_EQ(value["Metadata"]["zone"], "eu-1");

  auto services = registry_->Services();
  ASSERT_TRUE(services) << services.error().ToString();
  EXPECT_EQ(*services, std::vector<std::string>{"svc"});

  ASSERT_TRUE((*registration)->Deregister());
  EXPECT_EQ((*registration)->state(), RegistrationState::kDeregistered);
  EXPECT_TRUE((*registration)->Deregister()) << "Deregister is idempotent";
  EXPECT_EQ(ListedIds(*registry_, "svc"), std::vector<std::string>{});
  EXPECT_FALSE(etcd_.Get("services/svc/a"));
  ASSERT_TRUE(watcher.WaitIds({}, 5s));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.empty(); }, 5s));
  EXPECT_EQ((*resolver)->Pick(), nullptr);
}

TEST_F(EtcdRegistryTest, DestroyingTheRegistrationDeregisters) {
  {
    auto registration = registry_->Register(Instance("svc", "a", 9000), Ttl(10));
    ASSERT_TRUE(registration) << registration.error().ToString();
    EXPECT_TRUE(etcd_.Get("services/svc/a"));
  }
  EXPECT_FALSE(etcd_.Get("services/svc/a")) << "removed at once, not after the TTL";
}

TEST_F(EtcdRegistryTest, TtlBelowEtcdMinimumIsRaisedAndKeptAlive) {
  // etcd grants at least 2 s; a keep-alive scheduled from the asked 1 s would
  // still work, but one scheduled badly (or not at all) loses the key within
  // 2.5 s. Hold for 4 s.
  auto registration = registry_->Register(Instance("svc", "a", 9000), Ttl(1));
  ASSERT_TRUE(registration) << registration.error().ToString();
  auto start = SteadyClock::now();
  while (SteadyClock::now() - start < 4s) {
    ASSERT_TRUE(etcd_.Get("services/svc/a")) << "lost after " << MillisSince(start) << " ms";
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ((*registration)->state(), RegistrationState::kActive);
}

TEST_F(EtcdRegistryTest, ValueWrittenByGoEndpointsManagerIsDiscovered) {
  WatchRecorder watcher;
  auto watch = registry_->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({}, 5s));
  // Exactly what go.etcd.io/etcd/client/v3/naming/endpoints writes.
  etcd_.Put("services/svc/127.0.0.1:9000", R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  // etcd 3.4's clientv3/naming may leave Op out; Metadata may be any JSON.
  etcd_.Put("services/svc/127.0.0.1:9001",
            R"({"Addr":"127.0.0.1:9001","Metadata":{"zone":"b","weight":10,"version":"v2"}})");
  etcd_.Put("services/svc/[::1]:9002", R"({"Op":0,"Addr":"[::1]:9002","Metadata":"opaque"})");

  std::vector<std::string> expected = {"127.0.0.1:9000", "127.0.0.1:9001", "[::1]:9002"};
  ASSERT_TRUE(watcher.WaitIds(expected, 5s)) << ::testing::PrintToString(watcher.ids());
  auto list = registry_->List("svc");
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 3u);
  const auto& go = list->at(0).instance;
  EXPECT_EQ(go.id, "127.0.0.1:9000");
  EXPECT_EQ(go.host, "127.0.0.1");
  EXPECT_EQ(go.port, 9000);
  EXPECT_EQ(go.weight, 1u);
  const auto& with_metadata = list->at(1).instance;
  EXPECT_EQ(with_metadata.zone, "b");
  EXPECT_EQ(with_metadata.weight, 10u);
  EXPECT_EQ(with_metadata.metadata.at("version"), "v2");
  const auto& v6 = list->at(2).instance;
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.Address(), "[::1]:9002");

  // A Go-written key can be removed by its id, whatever its shape.
  ASSERT_TRUE(registry_->Deregister("svc", "127.0.0.1:9000"));
  ASSERT_TRUE(watcher.WaitIds({"127.0.0.1:9001", "[::1]:9002"}, 5s));
}

TEST_F(EtcdRegistryTest, MalformedValuesAreSkippedAndValidOnesListed) {
  etcd_.Put("services/svc/not-json", "this is not json");
  etcd_.Put("services/svc/no-addr", R"({"Op":0,"Metadata":{"id":"no-addr"}})");
  etcd_.Put("services/svc/bad-port", R"({"Op":0,"Addr":"127.0.0.1:notaport"})");
  etcd_.Put("services/svc/port-range", R"({"Op":0,"Addr":"127.0.0.1:70000"})");
  etcd_.Put("services/svc/no-port", R"({"Op":0,"Addr":"127.0.0.1"})");
  etcd_.Put("services/svc/array", R"([1,2,3])");
  etcd_.Put("services/svc/addr-number", R"({"Addr":9000})");
  etcd_.Put("services/svc/empty", "");
  auto registration = registry_->Register(Instance("svc", "good", 9000), Ttl(5));
  ASSERT_TRUE(registration) << registration.error().ToString();

  EXPECT_EQ(ListedIds(*registry_, "svc"), std::vector<std::string>{"good"});
  WatchRecorder watcher;
  auto watch = registry_->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"good"}, 5s)) << ::testing::PrintToString(watcher.ids());

  // Malformed values arriving through the watch are skipped as well, and a
  // valid instance overwritten with garbage leaves the view.
  etcd_.Put("services/svc/later-bad", "{");
  etcd_.Put("services/svc/valid-then-bad", R"({"Op":0,"Addr":"127.0.0.1:9001"})");
  ASSERT_TRUE(watcher.WaitIds({"good", "valid-then-bad"}, 5s));
  etcd_.Put("services/svc/valid-then-bad", R"({"Op":0,"Addr":""})");
  ASSERT_TRUE(watcher.WaitIds({"good"}, 5s)) << ::testing::PrintToString(watcher.ids());
  EXPECT_EQ(watcher.errors(), 0);
  EXPECT_EQ(ListedIds(*registry_, "svc"), std::vector<std::string>{"good"});
}

// An answer larger than the most disco reads from etcd (64 MiB; 1 MiB here)
// fails that call with an error that says so: no crash, no unbounded read,
// and other services are unaffected.
TEST(EtcdResponseLimitTest, AnAnswerOverTheLimitIsAClearError) {
  EtcdServer etcd;
  etcd::SetMaxResponseBytesForTesting(1 << 20);
  auto registry = OpenEtcd(etcd.url());
  etcd::SetMaxResponseBytesForTesting(0);
  const std::string padding(700 * 1024, 'x');
  for (const char* id : {"a", "b"}) {
    etcd.Put(std::string("services/big/") + id,
             R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":{"pad":")" + padding + R"("}})");
  }
  auto registration = registry->Register(Instance("small", "s", 9001), Ttl(5));
  ASSERT_TRUE(registration) << registration.error().ToString();

  auto big = registry->List("big");
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kMalformed) << big.error().ToString();
  EXPECT_NE(big.error().message.find("at most 1 MiB"), std::string::npos) << big.error().ToString();
  EXPECT_EQ(ListedIds(*registry, "small"), std::vector<std::string>{"s"});

  // A watch of it reports the error instead of a list.
  WatchRecorder watcher;
  auto watch = registry->Watch("big", watcher.Callback());
  EXPECT_TRUE(WaitFor([&] { return watcher.errors() > 0; }, 5s));
}

TEST_F(EtcdRegistryTest, ServicePrefixDoesNotLeakIntoLongerNames) {
  auto a = registry_->Register(Instance("svc", "a", 9000), Ttl(5));
  auto canary = registry_->Register(Instance("svc-canary", "b", 9001), Ttl(5));
  auto two = registry_->Register(Instance("svc2", "c", 9002), Ttl(5));
  ASSERT_TRUE(a && canary && two);
  etcd_.Put("services/svcx", R"({"Op":0,"Addr":"127.0.0.1:1"})");  // no instance segment

  WatchRecorder watcher;
  auto watch = registry_->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s)) << ::testing::PrintToString(watcher.ids());
  EXPECT_EQ(ListedIds(*registry_, "svc"), std::vector<std::string>{"a"});
  // A change under the longer names never reaches the "svc" watcher.
  int updates = watcher.updates();
  auto more = registry_->Register(Instance("svc-canary", "d", 9003), Ttl(5));
  ASSERT_TRUE(more);
  auto probe = registry_->Register(Instance("svc", "e", 9004), Ttl(5));
  ASSERT_TRUE(watcher.WaitIds({"a", "e"}, 5s));
  EXPECT_EQ(watcher.updates(), updates + 1);

  auto services = registry_->Services();
  ASSERT_TRUE(services) << services.error().ToString();
  EXPECT_EQ(*services, (std::vector<std::string>{"svc", "svc-canary", "svc2"}));
}

TEST_F(EtcdRegistryTest, CustomPrefixIsUsedForKeysAndReads) {
  auto apps = OpenEtcd(etcd_.url() + "?prefix=apps/");
  auto registration = apps->Register(Instance("svc", "a", 9000), Ttl(5));
  ASSERT_TRUE(registration) << registration.error().ToString();
  EXPECT_TRUE(etcd_.Get("apps/svc/a"));
  EXPECT_EQ(ListedIds(*apps, "svc"), std::vector<std::string>{"a"});
  EXPECT_EQ(ListedIds(*registry_, "svc"), std::vector<std::string>{})
      << "default prefix is separate";
  auto services = apps->Services();
  ASSERT_TRUE(services);
  EXPECT_EQ(*services, std::vector<std::string>{"svc"});
}

TEST_F(EtcdRegistryTest, DeregisterByIdRevokesAndTheLiveRegistrantRestores) {
  auto owner = OpenEtcd(etcd_.url());
  auto registration = owner->Register(Instance("svc", "a", 9000), Ttl(3));
  ASSERT_TRUE(registration) << registration.error().ToString();
  WatchRecorder watcher;
  auto watch = registry_->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));

  ASSERT_TRUE(registry_->Deregister("svc", "a"));
  EXPECT_FALSE(etcd_.Get("services/svc/a"));
  ASSERT_TRUE(watcher.WaitIds({}, 5s));
  // The registrant's next keep-alive (within TTL/3 = 1 s) answers TTL 0: it
  // registers again with a new lease.
  ASSERT_TRUE(watcher.WaitIds({"a"}, 4s)) << "registrant did not restore itself";
  EXPECT_EQ((*registration)->state(), RegistrationState::kActive);
  EXPECT_TRUE(registry_->Deregister("svc", "never-was")) << "removing nothing succeeds";
}

TEST_F(EtcdRegistryTest, DeregisterByIdOnASharedLeaseDeletesOnlyThatKey) {
  auto [grant_status, grant] = etcd_.Etcdctl({"lease", "grant", "60"});
  ASSERT_EQ(grant_status, 0) << grant;
  // "lease 694d7a... granted with TTL(60s)"
  auto lease = grant.substr(6, grant.find(' ', 6) - 6);
  for (const char* key : {"services/svc/x", "services/svc/y"}) {
    auto [status, output] = etcd_.Etcdctl(
        {"put", "--lease=" + lease, key, R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})"});
    ASSERT_EQ(status, 0) << output;
  }
  ASSERT_TRUE(registry_->Deregister("svc", "x"));
  EXPECT_FALSE(etcd_.Get("services/svc/x"));
  EXPECT_TRUE(etcd_.Get("services/svc/y")) << "the other key of the lease must survive";
}

TEST_F(EtcdRegistryTest, SecondEndpointIsUsedWhenTheFirstIsDown) {
  std::uint16_t dead = FreePort();
  auto registry = OpenEtcd("etcd://127.0.0.1:" + std::to_string(dead) + "," + etcd_.endpoint());
  auto registration = registry->Register(Instance("svc", "a", 9000), Ttl(3));
  ASSERT_TRUE(registration) << registration.error().ToString();
  EXPECT_EQ(ListedIds(*registry, "svc"), std::vector<std::string>{"a"});
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));
  EXPECT_EQ(watcher.errors(), 0);
  std::this_thread::sleep_for(1500ms);  // a few keep-alives
  EXPECT_EQ((*registration)->state(), RegistrationState::kActive);
}

TEST_F(EtcdRegistryTest, AuthWithUserAndPassword) {
  etcd_.EnableAuth("root", "s3cret");
  auto authed = OpenEtcd(etcd_.url() + "?user=root&password=s3cret");
  EXPECT_EQ(authed->url().find("s3cret"), std::string::npos) << authed->url();
  auto registration = authed->Register(Instance("svc", "a", 9000), Ttl(3));
  ASSERT_TRUE(registration) << registration.error().ToString();
  EXPECT_EQ(ListedIds(*authed, "svc"), std::vector<std::string>{"a"});
  WatchRecorder watcher;
  auto watch = authed->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));

  auto anonymous = OpenEtcd(etcd_.url());
  auto denied = anonymous->List("svc");
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied) << denied.error().ToString();
  auto wrong = OpenEtcd(etcd_.url() + "?user=root&password=wrong")->List("svc");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kPermissionDenied) << wrong.error().ToString();
}

TEST(EtcdRegistryUrlTest, RejectsUnknownParametersAndBadInstances) {
  auto unknown = MakeRegistry("etcd://127.0.0.1:2379?prefx=x");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.error().message.find("prefx"), std::string::npos);

  auto registry = MakeRegistry("etcd://127.0.0.1:1");
  ASSERT_TRUE(registry);
  auto bad = (*registry)->Register(Instance("bad name", "a", 9000));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  auto list = (*registry)->List("bad/name");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace disco::testing
