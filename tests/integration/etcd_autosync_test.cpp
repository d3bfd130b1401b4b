// Member discovery (URL param auto_sync, issue 15) on a real 3-member etcd
// cluster: a client given ONE member's address learns the others from
// Cluster.MemberList, keeps working when that member is killed, follows
// a member replaced on a new client port, and falls back to that address
// (calls and streams, without reinstalling the list every second) when the
// members advertise client URLs nothing listens on.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "etcd_test_util.h"
#include "fixture/etcd_cluster.h"
#include "registry/etcd/etcd_connection.h"
#include "registry/etcd/etcd_test_hooks.h"

namespace disco::testing {
namespace {

// The endpoint sets discovery installed, per registry URL; thread-safe.
class DiscoveredEndpoints {
 public:
  DiscoveredEndpoints() {
    etcd::SetEndpointsDiscoveredHookForTesting(
        [this](std::string_view url, const std::vector<std::string>& endpoints) {
          std::lock_guard lock(mu_);
          latest_[std::string(url)] = std::set<std::string>(endpoints.begin(), endpoints.end());
          ++installs_[std::string(url)];
        });
  }
  ~DiscoveredEndpoints() { etcd::SetEndpointsDiscoveredHookForTesting(nullptr); }

  std::set<std::string> Latest(const std::string& url) {
    std::lock_guard lock(mu_);
    return latest_[url];
  }
  // How many sets discovery installed for `url`.
  int Installs(const std::string& url) {
    std::lock_guard lock(mu_);
    return installs_[url];
  }
  // Waits until the set discovered for `url` is `want`.
  bool WaitFor(const std::string& url, const std::set<std::string>& want,
               std::chrono::milliseconds timeout) {
    return testing::WaitFor([&] { return Latest(url) == want; }, timeout, 20ms);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::set<std::string>> latest_;
  std::map<std::string, int> installs_;
};

// Instance "a" registered, and a watcher that has seen it: where the
// scenarios below start. Declared in this order so that the watch ends
// before its recorder and the registration last, as locals would.
struct RegisteredAndWatched {
  std::unique_ptr<Registration> a;
  WatchRecorder watcher;
  std::unique_ptr<WatchHandle> watch;
};

void RegisterAAndWatch(Registry& registry, RegisteredAndWatched& out) {
  auto a = registry.Register(Instance("svc", "a", 9000), Ttl(2));
  ASSERT_TRUE(a) << a.error().ToString();
  out.a = std::move(*a);
  out.watch = registry.Watch("svc", out.watcher.Callback());
  ASSERT_TRUE(out.watcher.WaitIds({"a"}, 5s));
}

std::set<std::string> Members(EtcdCluster& cluster) {
  std::set<std::string> out;
  for (int i = 0; i < cluster.size(); ++i) out.insert(cluster.member(i).endpoint());
  return out;
}

// One member's URL with auto_sync: the client learns the other two, and when
// that member is killed -9 its registration stays active, its watch resumes
// on another member and its one-shot calls answer.
TEST(EtcdAutoSyncTest, OneSeedLearnsMembersAndSurvivesSeedKill) {
  DiscoveredEndpoints discovered;
  EtcdCluster cluster;
  const std::string url = "etcd://" + cluster.member(0).endpoint() + "?auto_sync=1";
  auto registry = OpenEtcd(url, 3000ms);
  ASSERT_TRUE(registry);
  ASSERT_TRUE(discovered.WaitFor(url, Members(cluster), 5s))
      << ::testing::PrintToString(discovered.Latest(url));

  RegisteredAndWatched s;
  ASSERT_NO_FATAL_FAILURE(RegisterAAndWatch(*registry, s));

  cluster.Kill9(0);
  // Three TTLs: the lease is renewed through the discovered members.
  bool lapsed = false;
  const auto from = SteadyClock::now();
  while (SteadyClock::now() - from < 6s) {
    try {
      lapsed |= cluster.Any().Keys("services/svc/").empty();
    } catch (const std::exception&) {
      // The seed may have led: the fixture's own read fails during the election.
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(lapsed) << "the registration lapsed while a quorum existed";
  EXPECT_EQ(s.a->state(), RegistrationState::kActive);
  EXPECT_EQ(ListedIds(*registry, "svc"), (std::vector<std::string>{"a"}));
  auto b = registry->Register(Instance("svc", "b", 9001), Ttl(2));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_TRUE(s.watcher.WaitIds({"a", "b"}, 8s)) << ::testing::PrintToString(s.watcher.ids());
  EXPECT_EQ(s.watcher.errors(), 0) << "one member of three killed is no outage";
  // The dead member stays listed (it is still a member), so the set does not
  // shrink; the seed URL is not consulted while the members answer.
  EXPECT_EQ(discovered.Latest(url).size(), 3u);
}

// A member replaced on a NEW client port (the seed URL never named it) is
// discovered; once the seed is killed the client works through it and the
// third member.
TEST(EtcdAutoSyncTest, MemberReplacedOnNewPortIsDiscovered) {
  DiscoveredEndpoints discovered;
  EtcdCluster cluster;
  const std::string url = "etcd://" + cluster.member(0).endpoint() + "?auto_sync=1";
  auto registry = OpenEtcd(url, 3000ms);
  ASSERT_TRUE(registry);
  ASSERT_TRUE(discovered.WaitFor(url, Members(cluster), 5s));
  RegisteredAndWatched s;
  ASSERT_NO_FATAL_FAILURE(RegisterAAndWatch(*registry, s));

  const std::string old_endpoint = cluster.member(2).endpoint();
  cluster.ReplaceMember(2, /*new_client_port=*/true);
  ASSERT_NE(cluster.member(2).endpoint(), old_endpoint);
  ASSERT_TRUE(discovered.WaitFor(url, Members(cluster), 10s))
      << ::testing::PrintToString(discovered.Latest(url));

  // Only members 1 and the new 2 are left, and the new one is needed for a
  // quorum: the client must reach the cluster through what it discovered.
  cluster.Kill9(0);
  ASSERT_GE(cluster.WaitLeader(10s), 0);
  auto b = registry->Register(Instance("svc", "b", 9001), Ttl(2));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_TRUE(s.watcher.WaitIds({"a", "b"}, 8s)) << ::testing::PrintToString(s.watcher.ids());
  EXPECT_EQ(ListedIds(*registry, "svc"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(WaitFor([&] { return s.a->state() == RegistrationState::kActive; }, 5s));
  EXPECT_EQ(s.watcher.errors(), 0);
}

// Off by default and with 0: the endpoint set is the URL's, nothing syncs.
TEST(EtcdAutoSyncTest, OffByDefault) {
  DiscoveredEndpoints discovered;
  EtcdCluster cluster(1);
  for (const std::string suffix : {"", "?auto_sync=0"}) {
    const std::string url = "etcd://" + cluster.member(0).endpoint() + suffix;
    auto registry = OpenEtcd(url, 2000ms);
    ASSERT_TRUE(registry);
    ASSERT_TRUE(registry->Register(Instance("svc", "a", 9000), Ttl(2)));
    std::this_thread::sleep_for(300ms);
    EXPECT_TRUE(discovered.Latest(url).empty()) << url;
  }
}

// Client URLs on free ports nothing listens on, one per member, as a member
// started with a wrong --advertise-client-urls advertises them; and the
// "host:port" endpoints discovery makes of them.
struct DeadAdvertised {
  std::vector<std::string> urls;
  std::set<std::string> endpoints;
  explicit DeadAdvertised(int members) {
    for (int i = 0; i < members; ++i) {
      const std::string endpoint = "127.0.0.1:" + std::to_string(FreePort());
      urls.push_back("http://" + endpoint);
      endpoints.insert(endpoint);
    }
  }
};

// Members that advertise unreachable client URLs, reached through the seed
// the URL names: discovery installs their list once, calls fall back to the
// seed and keep working, and the list is not installed again (it was, about
// every second, before: install, fall back, sync, install...). A watch
// delivers throughout.
TEST(EtcdAutoSyncTest, UnreachableAdvertisedUrlsFallBackToTheSeedWithoutChurn) {
  DiscoveredEndpoints discovered;
  DeadAdvertised dead(3);
  EtcdCluster cluster(3, dead.urls);
  const std::string url = "etcd://" + cluster.member(0).endpoint() + "?auto_sync=1";
  auto registry = OpenEtcd(url, 3000ms);
  ASSERT_TRUE(registry);
  ASSERT_TRUE(discovered.WaitFor(url, dead.endpoints, 5s))
      << ::testing::PrintToString(discovered.Latest(url));

  RegisteredAndWatched s;
  ASSERT_NO_FATAL_FAILURE(RegisterAAndWatch(*registry, s));
  // Four sync intervals of calls, each of which used to reinstall the list.
  int failed = 0;
  const auto from = SteadyClock::now();
  while (SteadyClock::now() - from < 4s) {
    failed += ListedIds(*registry, "svc") == std::vector<std::string>{"a"} ? 0 : 1;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(failed, 0);
  auto b = registry->Register(Instance("svc", "b", 9001), Ttl(2));
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_TRUE(s.watcher.WaitIds({"a", "b"}, 5s)) << ::testing::PrintToString(s.watcher.ids());
  EXPECT_EQ(s.a->state(), RegistrationState::kActive);
  EXPECT_EQ(discovered.Installs(url), 1) << "the unreachable list was installed again";
}

// A connection (auto_sync=5: the first sync at once, the next 5 s later)
// whose discovered set is all dead, with the seed alive.
struct DeadSetConnection {
  DeadAdvertised dead{3};
  EtcdCluster cluster{3, dead.urls};
  const std::string seed = cluster.member(0).endpoint();
  std::unique_ptr<etcd::EtcdConnection> connection;

  // Opens the connection and waits until discovery installed the dead set.
  bool Open() {
    const std::string url = "etcd://" + seed + "?auto_sync=5";
    auto parsed = ParseRegistryUrl(url);
    if (!parsed) return false;
    RegistryOptions options;
    options.request_timeout = 3000ms;
    connection = std::make_unique<etcd::EtcdConnection>(*parsed, url, options, nullptr, 5s);
    return WaitFor([&] { return Names() == dead.endpoints; }, 5s, 10ms);
  }
  std::set<std::string> Names() const {
    auto names = connection->EndpointNames();
    return {names.begin(), names.end()};
  }
};

// Invoke's seed fallback: every discovered member refuses, the seed answers,
// the call succeeds and the seed is the set again; the next sync (soon after
// a fallback) does not put the dead set back.
TEST(EtcdAutoSyncTest, UnaryCallsFallBackToTheSeedWhenEveryDiscoveredMemberIsDead) {
  DeadSetConnection c;
  ASSERT_TRUE(c.Open()) << ::testing::PrintToString(c.Names());
  c.cluster.Any().Put("k", "v");
  etcdserverpb::RangeRequest request;
  request.set_key("k");
  auto range = c.connection->Range(request, {c.connection->Deadline()});
  ASSERT_TRUE(range) << range.error().ToString();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "v");
  EXPECT_EQ(c.Names(), std::set<std::string>{c.seed});
  std::this_thread::sleep_for(2s);  // the sync a fallback asks for runs within 1 s
  EXPECT_EQ(c.Names(), std::set<std::string>{c.seed});
  EXPECT_TRUE(c.connection->Range(request, {c.connection->Deadline()}));
}

// A lone discovered member that hangs: every member advertises member 1's
// URL (so discovery finds one endpoint), the URL names member 0, and member
// 1 is SIGSTOPped after the connection to it was in use. A call gives the
// lone member half its time and is answered through the seed; before, a
// lone endpoint's try had the whole deadline and the call timed out.
TEST(EtcdAutoSyncTest, AHungLoneDiscoveredMemberFallsBackToTheSeed) {
  const std::uint16_t port1 = FreePort();
  const std::string lone = "127.0.0.1:" + std::to_string(port1);
  EtcdCluster cluster(3, {"http://" + lone, "http://" + lone, "http://" + lone}, {0, port1, 0});
  const std::string seed = cluster.member(0).endpoint();
  const std::string url = "etcd://" + seed + "?auto_sync=5";
  auto parsed = ParseRegistryUrl(url);
  ASSERT_TRUE(parsed);
  RegistryOptions options;
  options.request_timeout = 3000ms;
  etcd::EtcdConnection connection(*parsed, url, options, nullptr, 5s);
  ASSERT_TRUE(WaitFor([&] { return connection.EndpointNames() == std::vector<std::string>{lone}; },
                      5s, 10ms));
  cluster.Any().Put("k", "v");
  etcdserverpb::RangeRequest request;
  request.set_key("k");
  ASSERT_TRUE(connection.Range(request, {connection.Deadline()}));  // through member 1

  ASSERT_TRUE(cluster.MoveLeaderAwayFrom(1));
  cluster.Pause(1);
  const auto start = SteadyClock::now();
  auto range = connection.Range(request, {connection.Deadline()});
  const auto took = SteadyClock::now() - start;
  cluster.Resume(1);
  ASSERT_TRUE(range) << range.error().ToString();
  ASSERT_EQ(range->kvs_size(), 1);
  EXPECT_EQ(range->kvs(0).value(), "v");
  EXPECT_GE(took, 1000ms);  // the lone member had its half
  EXPECT_EQ(connection.EndpointNames(), std::vector<std::string>{seed});
}

// PrepareStream's seed fallback: a watch stream opened while the set is all
// dead goes to the seed and delivers.
TEST(EtcdAutoSyncTest, StreamsFallBackToTheSeedWhenEveryDiscoveredMemberIsDead) {
  DeadSetConnection c;
  ASSERT_TRUE(c.Open()) << ::testing::PrintToString(c.Names());
  grpc::ClientContext context;
  context.set_deadline(etcd::ToGrpcDeadline(etcd::Clock::now() + 10s));
  auto target = c.connection->PrepareStream(context, {c.connection->Deadline()});
  ASSERT_TRUE(target) << target.error().ToString();
  EXPECT_EQ(target->endpoint(), c.seed);
  EXPECT_EQ(c.Names(), std::set<std::string>{c.seed});

  auto stream = target->stubs->watch->Watch(&context);
  etcdserverpb::WatchRequest create;
  create.mutable_create_request()->set_key("k");
  ASSERT_TRUE(stream->Write(create));
  etcdserverpb::WatchResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.created());
  c.cluster.Any().Put("k", "v");
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_EQ(response.events_size(), 1);
  EXPECT_EQ(response.events(0).kv().value(), "v");
  context.TryCancel();
  (void)stream->Finish();
}

}  // namespace
}  // namespace disco::testing
