// dns:// against real DNS servers on loopback: dnsmasq serving what a
// Kubernetes headless Service publishes (SRV + A under svc.cluster.local,
// found through resolv.conf search domains), and a Consul dev agent's own
// DNS interface. Answers carry a 1 s TTL, so every wait here is a few TTLs.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/cli.h"
#include "fixture/consul_agent.h"
#include "fixture/dnsmasq_server.h"
#include "fixture/process.h"
#include "fixture/registry_backend.h"
#include "fixture/update_recorder.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kSrv = "_http._tcp.web.default.svc.cluster.local";

std::string Pod(int i) { return "web-" + std::to_string(i) + ".web.default.svc.cluster.local"; }
std::string PodIp(int i) { return "127.0.1." + std::to_string(i + 1); }

std::set<std::string> Ids(const std::vector<InstanceStatus>& list) {
  std::set<std::string> ids;
  for (const auto& status : list) ids.insert(status.instance.id);
  return ids;
}

class DnsRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!DnsmasqServer::Available()) GTEST_SKIP() << "no dnsmasq (apt-get install dnsmasq-base)";
    // A pod's resolv.conf, as the kubelet writes it (ndots 5, the namespace first).
    std::ofstream(dns_.dir().Sub("resolv.conf"))
        << "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
           "options ndots:5\n";
  }

  // The registry a pod in namespace "default" would use for its port named http.
  std::string Url(const std::string& extra = {}) {
    return "dns://" + dns_.address() + "?resolv_conf=" + dns_.dir().Sub("resolv.conf") +
           "&name=_http._tcp.{service}&min_refresh=100ms&max_refresh=1s" + extra;
  }

  std::unique_ptr<Registry> Open(const std::string& url) {
    RegistryOptions options;
    options.request_timeout = 3s;
    auto registry = MakeRegistry(url, options);
    EXPECT_TRUE(registry) << registry.error().ToString();
    return registry ? std::move(*registry) : nullptr;
  }

  // Two pods of "web" on port 8080 with weights 10 and 30, addresses in the hosts file.
  void TwoPods() {
    dns_.SetRecords(SrvHost(kSrv, Pod(0), 8080, 10, 10) + SrvHost(kSrv, Pod(1), 8080, 10, 30));
    dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(1) + " " + Pod(1) + "\n");
  }

  DnsmasqServer dns_;
};

TEST_F(DnsRegistryTest, HeadlessServiceSrvRecordsAreListedThroughSearchDomains) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  ASSERT_TRUE(registry);
  auto list = registry->List("web");
  ASSERT_TRUE(list) << list.error().ToString() << "\n" << dns_.ReadLog();
  ASSERT_EQ(list->size(), 2u);
  const auto& a = (*list)[0].instance;
  const auto& b = (*list)[1].instance;
  EXPECT_EQ(a.id, PodIp(0) + ":8080");
  EXPECT_EQ(a.host, PodIp(0));
  EXPECT_EQ(a.port, 8080);
  EXPECT_EQ(a.service, "web");
  EXPECT_EQ(a.weight, 10u) << "the SRV weight feeds weighted_round_robin";
  EXPECT_EQ(b.weight, 30u);
  EXPECT_EQ(a.metadata.at("dns_target"), Pod(0));

  auto resolver = Resolver::Make(*registry, "web", {.policy = "weighted_round_robin"});
  ASSERT_TRUE(resolver) << resolver.error().ToString();
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  std::map<std::string, int> picks;
  for (int i = 0; i < 400; ++i) ++picks[(*resolver)->Pick()->instance.id];
  EXPECT_EQ(picks[PodIp(0) + ":8080"], 100);
  EXPECT_EQ(picks[PodIp(1) + ":8080"], 300);
}

TEST_F(DnsRegistryTest, WatchSeesAChangeWithinOneTtlAndNothingElse) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  UpdateRecorder recorder;
  auto watch = registry->Watch("web", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s));

  // Pod 1 is rescheduled: same name, new IP.
  dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(7) + " " + Pod(1) + "\n");
  const auto changed = Clock::now();
  dns_.Reload();
  ASSERT_TRUE(recorder.WaitIds({PodIp(0) + ":8080", PodIp(7) + ":8080"}, 5s)) << dns_.ReadLog();
  const auto seen = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - changed);
  // One TTL (1 s) plus a query; the rest is slack for a loaded 2-core
  // machine under the sanitizers (docs/benchmarks.md has the real spread).
  EXPECT_LT(seen, 2000ms) << "TTL 1 s: re-resolved within one TTL";

  const auto updates = recorder.count();
  std::this_thread::sleep_for(2500ms);  // two more re-resolutions, same answer
  EXPECT_EQ(recorder.count(), updates) << "an unchanged answer is not reported";
  EXPECT_EQ(recorder.errors(), 0u);
}

// A one-shot watch: the callback drops its own handle. That returns at once
// and nothing is called afterwards (it used to lock the callback's mutex a
// second time on the resolver's thread and hang the registry for good).
TEST_F(DnsRegistryTest, AWatchMayBeStoppedFromItsOwnCallback) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  std::unique_ptr<WatchHandle> watch;
  std::mutex mu;
  std::atomic<int> calls{0};
  std::promise<void> stopped;
  {
    std::lock_guard lock(mu);  // the first delivery waits until `watch` is set
    watch = registry->Watch("web", [&](const WatchUpdate&) {
      if (calls.fetch_add(1) > 0) return;
      std::lock_guard lock(mu);
      watch.reset();
      stopped.set_value();
    });
  }
  ASSERT_EQ(stopped.get_future().wait_for(5s), std::future_status::ready);
  dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(7) + " " + Pod(1) + "\n");
  dns_.Reload();
  std::this_thread::sleep_for(1500ms);  // past a TTL: a live watch would report the change
  EXPECT_EQ(calls.load(), 1);
  // The registry still answers: its thread is not stuck.
  auto list = registry->List("web");
  ASSERT_TRUE(list) << list.error().ToString();
}

// Callbacks run on a delivery thread of their own, not the c-ares thread:
// from inside one, List answers (it used to wait for the thread the callback
// held and time out), a new watch starts and delivers, and a slow callback
// holds up no lookup.
TEST_F(DnsRegistryTest, ACallbackMayListAndWatchThroughItsOwnRegistry) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  std::promise<std::pair<Result<std::vector<InstanceStatus>>, std::chrono::milliseconds>> listed;
  UpdateRecorder inner;
  std::unique_ptr<WatchHandle> inner_watch;  // set and read on the delivery thread only
  std::atomic<int> calls{0};
  auto watch = registry->Watch("web", [&](const WatchUpdate&) {
    if (calls.fetch_add(1) > 0) return;
    const auto start = Clock::now();
    auto list = registry->List("web");
    listed.set_value({std::move(list), std::chrono::duration_cast<std::chrono::milliseconds>(
                                           Clock::now() - start)});
    inner_watch = registry->Watch("web", inner.Callback());
  });
  auto future = listed.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto [list, took] = future.get();
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(Ids(*list), (std::set<std::string>{PodIp(0) + ":8080", PodIp(1) + ":8080"}));
  EXPECT_LT(took, 2000ms) << "List from a callback is answered, not timed out (3 s)";
  EXPECT_TRUE(inner.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s))
      << "a watch started from a callback delivers";

  // A callback that takes its time: the registry's lookups go on meanwhile.
  UpdateRecorder slow_recorder;
  std::atomic<bool> in_slow{false};
  auto slow = registry->Watch("web", [&](const WatchUpdate& update) {
    in_slow = true;
    std::this_thread::sleep_for(1500ms);
    slow_recorder.OnUpdate(update);
  });
  ASSERT_TRUE(WaitFor([&] { return in_slow.load(); }, 5s));
  const auto start = Clock::now();
  auto during = registry->List("web");
  ASSERT_TRUE(during) << during.error().ToString();
  EXPECT_LT(Clock::now() - start, 1000ms) << "a slow callback does not hold up List";
  EXPECT_TRUE(slow_recorder.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s));
  slow.reset();
  watch.reset();  // waits for a running callback, which may touch inner_watch
  inner_watch.reset();
}

// A watch outliving its registry and dropped from its own callback: the last
// owner of both threads goes on the delivery thread, which must neither
// join itself nor leave the c-ares thread running.
TEST_F(DnsRegistryTest, TheLastHandleMayGoInsideItsCallbackAfterTheRegistry) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  // On the heap, owned by the callback: the delivery thread is detached at
  // the end, so nothing it touches may live on this test's stack.
  struct Shared {
    std::mutex mu;
    std::unique_ptr<WatchHandle> watch;
    std::promise<void> stopped;
    std::atomic<int> calls{0};
  };
  auto shared = std::make_shared<Shared>();
  {
    std::lock_guard lock(shared->mu);
    shared->watch = registry->Watch("web", [shared](const WatchUpdate&) {
      if (shared->calls.fetch_add(1) > 0) return;
      {
        std::lock_guard lock(shared->mu);
        shared->watch.reset();  // the registry is gone by now: this is the last owner
      }
      shared->stopped.set_value();
    });
    registry.reset();
  }
  ASSERT_EQ(shared->stopped.get_future().wait_for(5s), std::future_status::ready);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(shared->calls.load(), 1);
}

// More SRV records than max_records: the best are kept, whatever order the
// server sends them in or their addresses sort in: lowest priority, then
// highest weight, then target name; and a target's many addresses never
// crowd out a better target.
TEST_F(DnsRegistryTest, MaxRecordsKeepsTheBestPriorityAndWeight) {
  // Priority 20 targets have low addresses (an id-ordered cut would keep
  // them and nothing active), priority 10 targets high ones.
  dns_.SetRecords(SrvHost(kSrv, Pod(0), 8080, 20, 100) + SrvHost(kSrv, Pod(1), 8080, 10, 1) +
                  SrvHost(kSrv, Pod(2), 8080, 10, 9) + SrvHost(kSrv, Pod(3), 8080, 20, 100) +
                  SrvHost(kSrv, Pod(4), 8080, 10, 5) + SrvHost(kSrv, Pod(5), 8080, 10, 5));
  std::string hosts;
  for (int i = 0; i < 6; ++i) {
    const bool standby = i == 0 || i == 3;
    hosts += std::string(standby ? "127.0.1." : "127.0.9.") + std::to_string(10 + i) + " " + Pod(i) + "\n";
  }
  // Pod 0 (priority 20) also has four more addresses, all sorting first.
  for (int j = 1; j <= 4; ++j) hosts += "127.0.0." + std::to_string(j) + " " + Pod(0) + "\n";
  dns_.SetHosts(hosts);
  dns_.Start();

  auto capped = Open(Url("&max_records=3"));
  for (int round = 0; round < 3; ++round) {  // the same answer every time
    auto list = capped->List("web", /*include_unhealthy=*/true);
    ASSERT_TRUE(list) << list.error().ToString();
    EXPECT_EQ(Ids(*list), (std::set<std::string>{"127.0.9.12:8080", "127.0.9.14:8080",
                                                  "127.0.9.15:8080"}))
        << "priority 10 weight 9, then the two of weight 5 (by name); not weight 1, not priority 20";
    for (const auto& status : *list) EXPECT_EQ(status.health, HealthState::kPassing);
  }
  auto five = Open(Url("&max_records=5"));
  auto list = five->List("web", true);
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 5u);
  // All four priority 10 targets, then priority 20's best by name: pod 0,
  // whose addresses are cut to max_records, the lowest first.
  EXPECT_EQ(Ids(*list), (std::set<std::string>{"127.0.0.1:8080", "127.0.9.11:8080", "127.0.9.12:8080",
                                               "127.0.9.14:8080", "127.0.9.15:8080"}));
  auto active = five->List("web");
  ASSERT_TRUE(active);
  EXPECT_EQ(active->size(), 4u) << "priority 20 stays standby";
}

// No server in the URL: the name servers come from the resolv.conf, and a
// missing file or one without a nameserver line is said so, naming the file
// (c-ares would quietly ask 127.0.0.1 instead).
TEST_F(DnsRegistryTest, AMissingOrServerlessResolvConfIsAClearError) {
  const std::string missing = dns_.dir().Sub("no-such-resolv.conf");
  const std::string serverless = dns_.dir().Sub("serverless-resolv.conf");
  std::ofstream(serverless) << "# nameserver 10.0.0.1\nsearch default.svc.cluster.local\noptions ndots:5\n";
  for (const auto& path : {missing, serverless}) {
    auto made = MakeRegistry("dns://?resolv_conf=" + path + "&name=_http._tcp.{service}");
    ASSERT_FALSE(made) << path;
    EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(made.error().message.find(path), std::string::npos) << made.error().message;
    EXPECT_NE(made.error().message.find("name a server in the URL"), std::string::npos)
        << made.error().message;
  }
  EXPECT_NE(MakeRegistry("dns://?resolv_conf=" + serverless).error().message.find("no nameserver"),
            std::string::npos);
  // A server in the URL needs none from the file; the file still gives the
  // search domains, and must exist when named.
  EXPECT_TRUE(MakeRegistry("dns://" + dns_.address() + "?resolv_conf=" + serverless));
  auto named_missing = MakeRegistry("dns://" + dns_.address() + "?resolv_conf=" + missing);
  ASSERT_FALSE(named_missing);
  EXPECT_NE(named_missing.error().message.find(missing), std::string::npos);

  // A file with a nameserver line is enough (its server is not asked here).
  const std::string ok = dns_.dir().Sub("pod-resolv.conf");
  std::ofstream(ok) << "nameserver 127.0.0.1\nsearch default.svc.cluster.local\noptions ndots:5\n";
  auto from_file = MakeRegistry("dns://?resolv_conf=" + ok + "&name=_http._tcp.{service}");
  ASSERT_TRUE(from_file) << from_file.error().ToString();
}

TEST_F(DnsRegistryTest, LowerPriorityServesOnlyWhenNoHigherIsLeft) {
  dns_.SetRecords(SrvHost(kSrv, Pod(0), 8080, 1, 5) + SrvHost(kSrv, Pod(1), 8080, 1, 5) +
                  SrvHost(kSrv, Pod(2), 9090, 2, 5));
  dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(1) + " " + Pod(1) + "\n" + PodIp(2) + " " +
                Pod(2) + "\n");
  dns_.Start();
  auto registry = Open(Url());
  UpdateRecorder recorder;
  auto watch = registry->Watch("web", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s));

  auto all = registry->List("web", /*include_unhealthy=*/true);
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].instance.id, PodIp(2) + ":9090");
  EXPECT_EQ((*all)[2].health, HealthState::kWarning) << "the standby priority shows as such";

  // Both priority-1 targets lose their addresses: priority 2 takes over.
  dns_.SetHosts(PodIp(2) + " " + Pod(2) + "\n");
  dns_.Reload();
  EXPECT_TRUE(recorder.WaitIds({PodIp(2) + ":9090"}, 5s));
  // One comes back: priority 2 steps aside again.
  dns_.SetHosts(PodIp(1) + " " + Pod(1) + "\n" + PodIp(2) + " " + Pod(2) + "\n");
  dns_.Reload();
  EXPECT_TRUE(recorder.WaitIds({PodIp(1) + ":8080"}, 5s));
}

TEST_F(DnsRegistryTest, NxdomainIsReportedAndTheResolverKeepsItsSnapshot) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url());
  UpdateRecorder recorder;
  auto watch = registry->Watch("web", recorder.Callback());
  auto resolver = Resolver::Make(*registry, "web");
  ASSERT_TRUE(resolver);
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 2; }, 5s));

  dns_.SetRecords("");  // the Service is gone: its SRV name no longer exists
  dns_.Restart();
  ASSERT_TRUE(recorder.WaitLatest(
      [](const WatchUpdate& u) { return !u.ok && u.error.code == ErrorCode::kNotFound; }, 5s));
  EXPECT_NE(recorder.latest().error.message.find("NXDOMAIN"), std::string::npos)
      << recorder.latest().error.message;
  ASSERT_TRUE(WaitFor([&] { return !(*resolver)->LastError().empty(); }, 5s));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ((*resolver)->snapshot()->endpoints.size(), 2u) << "the last snapshot is kept";
  EXPECT_GT((*resolver)->Staleness(), 0ms);
  auto list = registry->List("web");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, ErrorCode::kNotFound);

  TwoPods();
  dns_.Restart();
  EXPECT_TRUE(WaitFor([&] { return (*resolver)->LastError().empty(); }, 5s))
      << (*resolver)->LastError();

  auto lenient = Open(Url("&nxdomain=empty"));
  auto empty = lenient->List("nothing-here");
  ASSERT_TRUE(empty) << empty.error().ToString();
  EXPECT_TRUE(empty->empty()) << "nxdomain=empty: an unknown name is no instances";
}

TEST_F(DnsRegistryTest, ServerDownIsReportedAndTheWatchResyncs) {
  TwoPods();
  dns_.Start();
  auto registry = Open(Url("&timeout=200ms&tries=1"));
  UpdateRecorder recorder;
  auto watch = registry->Watch("web", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s));

  dns_.Stop();
  ASSERT_TRUE(recorder.WaitLatest([](const WatchUpdate& u) { return !u.ok; }, 5s));
  const auto error = recorder.latest().error;
  EXPECT_TRUE(error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout)
      << error.ToString();
  auto list = registry->List("web");
  EXPECT_FALSE(list);

  dns_.Start();
  EXPECT_TRUE(recorder.WaitIds({PodIp(0) + ":8080", PodIp(1) + ":8080"}, 5s))
      << "after an error the next good answer is delivered (a resync)";
}

TEST_F(DnsRegistryTest, AThousandSrvRecordsArriveOverTcp) {
  std::string records, hosts;
  for (int i = 0; i < 1000; ++i) {
    records += SrvHost(kSrv, Pod(i), 8000 + i % 50, 10, 1 + i % 7);
    hosts += "127.2." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + " " + Pod(i) + "\n";
  }
  dns_.SetRecords(records);
  dns_.SetHosts(hosts);
  dns_.Start();
  auto registry = Open(Url());
  const auto start = Clock::now();
  // 1,000 SRV records are ~40 kB: UDP answers are cut at 512 bytes (TC bit),
  // so getting all of them means c-ares asked again over TCP.
  auto list = registry->List("web");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(list->size(), 1000u);
  EXPECT_LT(Clock::now() - start, 3s);
  UpdateRecorder recorder;
  auto watch = registry->Watch("web", recorder.Callback());
  ASSERT_TRUE(recorder.WaitLatest([](const WatchUpdate& u) { return u.ok; }, 5s));
  EXPECT_EQ(recorder.latest().instances.size(), 1000u);

  auto capped = Open(Url("&max_records=100"));
  auto few = capped->List("web");
  ASSERT_TRUE(few) << few.error().ToString();
  EXPECT_EQ(few->size(), 100u) << "max_records bounds what one answer can bring";
}

TEST_F(DnsRegistryTest, BadRecordsAreSkippedAndShown) {
  dns_.SetRecords(SrvHost(kSrv, Pod(0), 8080, 10, 1) +
                  SrvHost(kSrv, "ghost.web.default.svc.cluster.local", 8081, 10, 1) +
                  SrvHost(kSrv, Pod(1), 0, 10, 1));
  dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(1) + " " + Pod(1) + "\n");
  dns_.Start();
  auto registry = Open(Url());
  auto list = registry->List("web");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(Ids(*list), (std::set<std::string>{PodIp(0) + ":8080"}))
      << "a target without an address and port 0 give no instance";
  auto all = registry->List("web", true);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].instance.id, "ghost.web.default.svc.cluster.local:8081");
  EXPECT_EQ((*all)[1].health, HealthState::kCritical);
  EXPECT_NE((*all)[1].detail.find("no A/AAAA"), std::string::npos);

  for (const std::string& bad : std::vector<std::string>{"dns://127.0.0.1:1?name=bad..{service}", "dns://127.0.0.1:1?name=nothing-to-fill",
        "dns://127.0.0.1:1?name={service}." + std::string(64, 'x'), "dns://not-an-ip:53",
        "dns://127.0.0.1:0", "dns://?record=a", "dns://?bogus=1", "dns://?resolv_conf=/nonexistent/x"}) {
    auto made = MakeRegistry(bad);
    ASSERT_FALSE(made) << bad;
    EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument) << bad << ": " << made.error().ToString();
  }
  auto dots = registry->List("a..b");
  ASSERT_FALSE(dots);
  EXPECT_EQ(dots.error().code, ErrorCode::kInvalidArgument) << dots.error().ToString();
}

TEST_F(DnsRegistryTest, PlainNamesGiveAddressesOnTheUrlsPort) {
  dns_.SetRecords(HostRecord("db.default.svc.cluster.local", "127.0.3.1") +
                  HostRecord("db.default.svc.cluster.local", "127.0.3.2") +
                  HostRecord("db.default.svc.cluster.local", "::1"));
  dns_.Start();
  auto registry = Open("dns://" + dns_.address() + "?resolv_conf=" + dns_.dir().Sub("resolv.conf") +
                       "&record=a&port=5432");
  auto list = registry->List("db");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(Ids(*list), (std::set<std::string>{"127.0.3.1:5432", "127.0.3.2:5432", "[::1]:5432"}));
  auto v4 = Open("dns://" + dns_.address() + "?resolv_conf=" + dns_.dir().Sub("resolv.conf") +
                 "&record=a&port=5432&family=4");
  auto only4 = v4->List("db");
  ASSERT_TRUE(only4) << only4.error().ToString();
  EXPECT_EQ(only4->size(), 2u);
}

TEST_F(DnsRegistryTest, RegisterIsARead_OnlyError) {
  auto registry = Open("dns://127.0.0.1:1");
  auto registration = registry->Register(Instance("web", "w-1", 8080));
  ASSERT_FALSE(registration);
  EXPECT_EQ(registration.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(registration.error().message.find("read-only"), std::string::npos);
  EXPECT_FALSE(registry->Deregister("web", "w-1"));
  EXPECT_FALSE(registry->Services()) << "DNS cannot enumerate names";
  auto named = Open("dns://127.0.0.1:1?services=web,db");
  EXPECT_EQ(named->Services().value(), (std::vector<std::string>{"web", "db"}));
}

TEST_F(DnsRegistryTest, TheCliListsPicksAndWatchesThroughDns) {
  TwoPods();
  dns_.Start();
  auto list = RunCli({"--registry", Url(), "list", "web"});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(PodIp(1) + ":8080"), std::string::npos) << list.output;
  auto pick = RunCli({"--registry", Url(), "pick", "web", "--policy", "weighted_round_robin",
                      "--count", "4"});
  EXPECT_EQ(pick.exit_code, 0) << pick.output;
  EXPECT_NE(pick.output.find(PodIp(1) + ":8080"), std::string::npos) << pick.output;
  // disco watch prints the pods, then the change when one is rescheduled.
  TempDir dir("disco-dns-cli");
  Process watcher = StartCli({"--registry", Url(), "watch", "web"}, dir.Sub("watch.log"));
  EXPECT_TRUE(WaitFor([&] { return watcher.ReadLog().find(PodIp(1) + ":8080") != std::string::npos; }, 10s))
      << watcher.ReadLog();
  dns_.SetHosts(PodIp(0) + " " + Pod(0) + "\n" + PodIp(7) + " " + Pod(1) + "\n");
  dns_.Reload();
  EXPECT_TRUE(WaitFor([&] { return watcher.ReadLog().find(PodIp(7) + ":8080") != std::string::npos; }, 10s))
      << watcher.ReadLog();
  auto reg = RunCli({"--registry", Url(), "register", "web", "--id", "x", "--address", "127.0.0.1", "--port", "1"});
  EXPECT_NE(reg.exit_code, 0);
  EXPECT_NE(reg.output.find("read-only"), std::string::npos) << reg.output;
}


// A UDP "server" for answers dnsmasq will not give on demand: each query is
// echoed back as a response with `rcode`, or cut after the header with a
// record promised (a malformed answer).
class BrokenDnsServer {
 public:
  enum class Mode { kServfail, kCutShort };
  explicit BrokenDnsServer(Mode mode) : mode_(mode) {
    fd_ = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~BrokenDnsServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int queries() const { return queries_; }

 private:
  void Serve() {
    while (!stop_) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 50) <= 0) continue;
      unsigned char buf[512];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      auto n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 12) continue;
      ++queries_;
      buf[2] |= 0x80;  // QR: a response
      if (mode_ == Mode::kServfail) {
        buf[3] = static_cast<unsigned char>((buf[3] & 0xf0) | 2);
      } else {
        // The question kept (c-ares drops answers to other questions), then
        // one answer promised and none sent.
        std::size_t end = 12;
        while (end < static_cast<std::size_t>(n) && buf[end] != 0) end += buf[end] + 1u;
        n = static_cast<ssize_t>(std::min<std::size_t>(end + 5, static_cast<std::size_t>(n)));
        buf[7] = 1;
      }
      sendto(fd_, buf, static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
  Mode mode_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread thread_;
};

TEST(DnsBrokenServerTest, ServfailAndMalformedAnswersAreErrorsNotEmptySets) {
  for (auto mode : {BrokenDnsServer::Mode::kServfail, BrokenDnsServer::Mode::kCutShort}) {
    BrokenDnsServer server(mode);
    auto registry = MakeRegistry("dns://" + server.address() +
                                 "?name={service}.example.&min_refresh=100ms&max_refresh=200ms&search=");
    ASSERT_TRUE(registry) << registry.error().ToString();
    auto list = (*registry)->List("web");
    ASSERT_FALSE(list);
    const auto want = mode == BrokenDnsServer::Mode::kServfail ? ErrorCode::kUnavailable
                                                               : ErrorCode::kMalformed;
    EXPECT_EQ(list.error().code, want) << list.error().ToString();
    if (mode == BrokenDnsServer::Mode::kServfail) {
      EXPECT_NE(list.error().message.find("SERVFAIL"), std::string::npos) << list.error().message;
    }
    UpdateRecorder recorder;
    auto watch = (*registry)->Watch("web", recorder.Callback());
    EXPECT_TRUE(recorder.WaitLatest([](const WatchUpdate& u) { return !u.ok; }, 5s));
    const int before = server.queries();
    EXPECT_TRUE(WaitFor([&] { return server.queries() > before + 1; }, 3s))
        << "the watch retries (backoff from min_refresh)";
    EXPECT_EQ(recorder.count(), recorder.errors()) << "never an ok update from a broken server";
  }
}

TEST(DnsConsulTest, ServicesRegisteredInConsulAreFoundThroughItsDns) {
  if (!ConsulAgent::Available()) GTEST_SKIP() << "no consul binary";
  ConsulAgent agent;
  agent.Start();
  auto consul = MakeRegistry(agent.url());
  ASSERT_TRUE(consul) << consul.error().ToString();
  auto a = Instance("dns-api", "api-1", 7101);
  a.weight = 3;
  auto b = Instance("dns-api", "api-2", 7102);
  auto ra = (*consul)->Register(a);
  auto rb = (*consul)->Register(b);
  ASSERT_TRUE(ra && rb);

  auto dns = MakeRegistry("dns://127.0.0.1:" + std::to_string(agent.dns_port()) +
                          "?name={service}.service.consul&min_refresh=200ms&max_refresh=1s");
  ASSERT_TRUE(dns) << dns.error().ToString();
  UpdateRecorder recorder;
  auto watch = (*dns)->Watch("dns-api", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"127.0.0.1:7101", "127.0.0.1:7102"}, 10s))
      << recorder.latest().error.ToString();
  auto instances = recorder.latest().instances;
  EXPECT_EQ(instances[0].weight, 3u) << "Consul's Weights.Passing is the SRV weight";
  EXPECT_EQ(instances[1].weight, 1u);

  ASSERT_TRUE((*ra)->Deregister());
  EXPECT_TRUE(recorder.WaitIds({"127.0.0.1:7102"}, 5s));

  // A registrant killed with -9: its TTL check goes critical, and Consul's
  // DNS stops answering with it (passing instances only).
  TempDir dir("disco-dns-consul");
  Process registrant =
      StartCli({"--registry", agent.url(), "register", "dns-api", "--id", "api-3", "--address",
                "127.0.0.1", "--port", "7103", "--ttl", "2"},
               dir.Sub("registrant.log"));
  ASSERT_TRUE(recorder.WaitIds({"127.0.0.1:7102", "127.0.0.1:7103"}, 10s)) << registrant.ReadLog();
  std::this_thread::sleep_for(2s);  // a few heartbeats: the kill lands at a random phase
  ASSERT_TRUE(registrant.Signal(SIGKILL));
  const auto killed = Clock::now();
  ASSERT_TRUE(recorder.WaitIds({"127.0.0.1:7102"}, 10s));
  // The TTL, Consul's own bound (the conformance suite's 1.5 s) and one
  // re-resolution (max_refresh 1 s).
  EXPECT_LT(Clock::now() - killed, 4500ms);

  // An entry no disco client writes (no port): SRV port 0, no instance.
  auto bad = agent.Http("PUT", "/v1/agent/service/register",
                        R"({"ID":"dns-api-malformed","Name":"dns-api"})");
  ASSERT_EQ(bad.status, 200) << bad.body;
  std::this_thread::sleep_for(1500ms);
  auto list = (*dns)->List("dns-api");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_EQ(Ids(*list), (std::set<std::string>{"127.0.0.1:7102"}));
  EXPECT_EQ(recorder.errors(), 0u);

  // A service nobody registered: NXDOMAIN, an error (not an empty set).
  auto none = (*dns)->List("dns-nobody");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound) << none.error().ToString();
}

}  // namespace
}  // namespace disco::testing
