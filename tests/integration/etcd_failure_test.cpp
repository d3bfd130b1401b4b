// The etcd backend when things break: killed registrants, etcd restarts (same
// and fresh data dir), compaction, a hung etcd, an unreachable registry.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>

#include "disco/resolver.h"
#include "etcd_test_util.h"
#include "registry/etcd/etcd_test_hooks.h"

namespace disco::testing {
namespace {

Process StartCliRegistrant(const EtcdServer& etcd, const std::string& service,
                           const std::string& id, std::uint16_t port, int ttl,
                           const std::string& log) {
  return Process(
      {DISCO_CLI_PATH, "--registry", etcd.url(), "register", service, "--id", id, "--address",
       "127.0.0.1", "--port", std::to_string(port), "--ttl", std::to_string(ttl)},
      log);
}

TEST(EtcdFailureTest, RegistrantKilledWithSigkillDisappearsWithinTtlPlusOneSecond) {
  EtcdServer etcd;
  TempDir dir;
  auto registry = OpenEtcd(etcd.url());
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  auto registrant = StartCliRegistrant(etcd, "svc", "x", 9000, 2, dir.Sub("register.log"));
  ASSERT_TRUE(watcher.WaitIds({"x"}, 10s)) << registrant.ReadLog();

  auto killed_at = SteadyClock::now();
  registrant.Kill();
  ASSERT_TRUE(watcher.WaitIds({}, 6s));
  auto gone_after = MillisSince(killed_at);
  RecordProperty("removal_after_kill_ms", std::to_string(gone_after));
  EXPECT_LE(gone_after, 3000) << "TTL 2 s + 1 s";
  EXPECT_EQ(ListedIds(*registry, "svc"), std::vector<std::string>{});
}

TEST(EtcdFailureTest, EtcdRestartWithSameDataDirRestoresEverything) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url(), 1000ms);
  auto registration = registry->Register(Instance("svc", "a", 9000), Ttl(2));
  ASSERT_TRUE(registration) << registration.error().ToString();
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  auto resolver = Resolver::Make(*registry, "svc");
  ASSERT_TRUE(resolver);
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 1; }, 5s));

  etcd.Stop();
  // The watcher says the registry is gone; the resolver keeps serving its
  // last snapshot and reports staleness; the registrant is restoring.
  ASSERT_TRUE(watcher.WaitError(5s));
  EXPECT_EQ(watcher.last_error().code, ErrorCode::kUnavailable) << watcher.last_error().ToString();
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->Staleness() > 0ms; }, 5s));
  EXPECT_FALSE((*resolver)->LastError().empty());
  auto picked = (*resolver)->Pick();
  ASSERT_NE(picked, nullptr) << "the last known snapshot is still served";
  EXPECT_EQ(picked->instance.id, "a");
  ASSERT_TRUE(
      WaitFor([&] { return (*registration)->state() == RegistrationState::kRestoring; }, 5s));

  // One-shot calls fail fast while it is down.
  auto start = SteadyClock::now();
  auto list = registry->List("svc");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, ErrorCode::kUnavailable) << list.error().ToString();
  EXPECT_LE(MillisSince(start), 2000);
  std::this_thread::sleep_for(3s);  // longer than the TTL: the lease must survive the outage

  etcd.Start();
  ASSERT_TRUE(WaitFor([&] { return (*registration)->state() == RegistrationState::kActive; }, 5s));
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));
  EXPECT_TRUE(watcher.last_was_ok());
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->Staleness() == 0ms; }, 5s));
  EXPECT_EQ(Ids(watcher.instances()), ListedIds(*registry, "svc"));

  // And the watch works again for new changes.
  auto second = registry->Register(Instance("svc", "b", 9001), Ttl(2));
  ASSERT_TRUE(second);
  ASSERT_TRUE(watcher.WaitIds({"a", "b"}, 5s));
}

TEST(EtcdFailureTest, EtcdRestartWithFreshDataDirReRegistersAndResyncs) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url(), 1000ms);
  auto a = registry->Register(Instance("svc", "a", 9000), Ttl(2));
  auto b = registry->Register(Instance("svc", "b", 9001), Ttl(3));
  ASSERT_TRUE(a && b);
  // A key only the old cluster had: the watcher must forget it.
  etcd.Put("services/svc/orphan", R"({"Op":0,"Addr":"127.0.0.1:9009","Metadata":null})");
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  // No recovery grace (ResolverTest covers it): when the restart is slow
  // enough for the watch to report the outage, the grace would rightly keep
  // the old cluster's orphan in the picks for 10 s, longer than this waits.
  auto resolver = Resolver::Make(*registry, "svc", ResolverOptions{.recovery_grace = 0ms});
  ASSERT_TRUE(resolver);
  ASSERT_TRUE(watcher.WaitIds({"a", "b", "orphan"}, 5s));
  // Move the old cluster's revision well past what the new one will reach
  // soon, so resuming from an old revision would visibly miss events.
  for (int i = 0; i < 20; ++i) etcd.Put("other/key", std::to_string(i));

  etcd.Wipe();  // same ports, empty data dir: no keys, no leases, revision 1
  // Keep-alives now answer TTL 0; both registrants grant new leases and put again.
  ASSERT_TRUE(watcher.WaitIds({"a", "b"}, 8s)) << ::testing::PrintToString(watcher.ids());
  ASSERT_TRUE(WaitFor(
      [&] {
        return (*a)->state() == RegistrationState::kActive &&
               (*b)->state() == RegistrationState::kActive;
      },
      5s));
  EXPECT_EQ(ListedIds(*registry, "svc"), (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 2; }, 5s));
  EXPECT_EQ((*resolver)->Staleness(), 0ms);

  // The new cluster's events reach the watcher.
  auto c = registry->Register(Instance("svc", "c", 9002), Ttl(2));
  ASSERT_TRUE(c);
  ASSERT_TRUE(watcher.WaitIds({"a", "b", "c"}, 5s));
}

TEST(EtcdFailureTest, CompactionPastTheWatchRevisionForcesAResyncWithoutLoss) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url());
  etcd.Put("services/svc/a", R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  etcd.Put("services/svc/b", R"({"Op":0,"Addr":"127.0.0.1:9001","Metadata":null})");

  // Between the watcher's Range and its watch creation, change the service
  // and compact past the revision it will watch from: etcd cancels the watch
  // with compact_revision, and only a full resync can show these changes.
  std::atomic<int> armed{1};
  etcd::SetBeforeWatchCreateHookForTesting([&](std::string_view service, std::int64_t start) {
    if (service != "svc" || armed.fetch_sub(1) != 1) return;
    etcd.Delete("services/svc/a");
    etcd.Put("services/svc/c", R"({"Op":0,"Addr":"127.0.0.1:9002","Metadata":null})");
    etcd.Put("services/svc/b", R"({"Op":0,"Addr":"127.0.0.1:9011","Metadata":null})");
    auto revision = etcd.CurrentRevision();
    ASSERT_GT(revision, start);
    etcd.Compact(revision);
  });
  auto before = etcd::WatchCountersForTesting();
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"b", "c"}, 10s)) << ::testing::PrintToString(watcher.ids());
  etcd::SetBeforeWatchCreateHookForTesting(nullptr);
  auto after = etcd::WatchCountersForTesting();
  EXPECT_GE(after.compaction_cancels, before.compaction_cancels + 1);
  EXPECT_EQ(watcher.errors(), 0) << "a compaction is not an outage";
  EXPECT_EQ(watcher.instances().at(0).port, 9011) << "the changed value is seen, not the old one";
  EXPECT_EQ(Ids(watcher.instances()), ListedIds(*registry, "svc"));

  // The resynced watch keeps following changes.
  etcd.Delete("services/svc/b");
  ASSERT_TRUE(watcher.WaitIds({"c"}, 5s));
}

// etcd-io/etcd#18089 (fixed in etcd 3.4.34 / 3.5.15, Debian 12 ships
// 3.4.23): a compaction at a delete's own revision removes that tombstone, and
// a watch starting at exactly that revision never reports the delete. The
// watcher must not start there: it would keep the deleted instance forever.
TEST(EtcdFailureTest, CompactionAtTheRevisionAWatchStartsFromKeepsItsDelete) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url());
  etcd.Put("services/svc/a", R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  etcd.Put("services/svc/b", R"({"Op":0,"Addr":"127.0.0.1:9001","Metadata":null})");
  std::atomic<int> armed{1};
  std::atomic<bool> compacted_at_start{false};
  etcd::SetBeforeWatchCreateHookForTesting([&](std::string_view service, std::int64_t start) {
    if (service != "svc" || armed.fetch_sub(1) != 1) return;
    // One write after the Range: the delete lands at the revision the watch
    // resumes from, and the compaction is at that very revision.
    etcd.Delete("services/svc/a");
    auto revision = etcd.CurrentRevision();
    compacted_at_start = revision == start;
    etcd.Compact(revision);
  });
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  bool seen = watcher.WaitIds({"b"}, 5s);
  etcd::SetBeforeWatchCreateHookForTesting(nullptr);
  ASSERT_TRUE(compacted_at_start) << "the scenario did not compact at the watch's start";
  ASSERT_TRUE(seen) << "the delete at the compaction revision was lost: "
                    << ::testing::PrintToString(watcher.ids());
  EXPECT_EQ(watcher.errors(), 0);
  // Still following changes.
  etcd.Put("services/svc/c", R"({"Op":0,"Addr":"127.0.0.1:9002","Metadata":null})");
  ASSERT_TRUE(watcher.WaitIds({"b", "c"}, 5s));
}

TEST(EtcdFailureTest, CompactionWhileWatchingLosesNothing) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url());
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({}, 5s));
  for (int i = 0; i < 10; ++i) {
    etcd.Put("services/svc/i" + std::to_string(i),
             R"({"Op":0,"Addr":"127.0.0.1:)" + std::to_string(9000 + i) + R"("})");
  }
  etcd.Compact(etcd.CurrentRevision());
  for (int i = 0; i < 10; i += 2) etcd.Delete("services/svc/i" + std::to_string(i));
  etcd.Compact(etcd.CurrentRevision());
  std::vector<std::string> expected = {"i1", "i3", "i5", "i7", "i9"};
  ASSERT_TRUE(watcher.WaitIds(expected, 5s)) << ::testing::PrintToString(watcher.ids());
  EXPECT_EQ(ListedIds(*registry, "svc"), expected);
  EXPECT_EQ(watcher.errors(), 0);
}

TEST(EtcdFailureTest, HungEtcdIsDetectedAndEverythingStopsInBoundedTime) {
  EtcdServer etcd;
  auto registry = OpenEtcd(etcd.url(), 1000ms);
  auto registration = registry->Register(Instance("svc", "a", 9000), Ttl(2));
  ASSERT_TRUE(registration);
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s));
  // Seeing b proves the watch stream is established (a came from the Range).
  auto b = registry->Register(Instance("svc", "b", 9001), Ttl(2));
  ASSERT_TRUE(b);
  ASSERT_TRUE(watcher.WaitIds({"a", "b"}, 5s));
  auto before = etcd::WatchCountersForTesting();

  etcd.Pause();  // SIGSTOP: connections stay open, nothing answers
  auto paused_at = SteadyClock::now();
  auto list = registry->List("svc");
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, ErrorCode::kTimeout) << list.error().ToString();
  EXPECT_LE(MillisSince(paused_at), 2000);
  // The quiet watch stream is probed with a progress request (3 s of silence,
  // then 3 s without an answer), after which its Range times out (1 s).
  ASSERT_TRUE(watcher.WaitError(12s)) << "a hung etcd left the watch silent";
  RecordProperty("hung_detected_after_ms", std::to_string(MillisSince(paused_at)));
  EXPECT_EQ(watcher.last_error().code, ErrorCode::kTimeout) << watcher.last_error().ToString();
  EXPECT_GE(etcd::WatchCountersForTesting().silent_streams, before.silent_streams + 1);
  EXPECT_EQ((*registration)->state(), RegistrationState::kRestoring);

  // Stopping while etcd hangs is bounded: the watch at once, the registration
  // by one request timeout (its lease revoke cannot be answered).
  auto start = SteadyClock::now();
  watch.reset();
  EXPECT_LE(MillisSince(start), 500);
  start = SteadyClock::now();
  auto deregistered = (*registration)->Deregister();
  EXPECT_FALSE(deregistered);
  EXPECT_LE(MillisSince(start), 2000);
  EXPECT_EQ((*registration)->state(), RegistrationState::kDeregistered);

  // Once etcd runs again, a's unrefreshed lease expires (or the queued revoke
  // lands) while b's registrant keeps or restores b.
  etcd.Resume();
  WatchRecorder again;
  auto rewatch = registry->Watch("svc", again.Callback());
  ASSERT_TRUE(again.WaitIds({"b"}, 8s)) << ::testing::PrintToString(again.ids());
  ASSERT_TRUE(WaitFor([&] { return (*b)->state() == RegistrationState::kActive; }, 5s));
}

TEST(EtcdFailureTest, UnreachableRegistryFailsFastAndWatchReportsIt) {
  std::uint16_t dead = FreePort();
  auto registry = OpenEtcd("etcd://127.0.0.1:" + std::to_string(dead), 2000ms);
  auto start = SteadyClock::now();
  auto list = registry->List("svc");
  ASSERT_FALSE(list);
  EXPECT_TRUE(list.error().code == ErrorCode::kUnavailable ||
              list.error().code == ErrorCode::kTimeout)
      << list.error().ToString();
  EXPECT_NE(list.error().message.find(std::to_string(dead)), std::string::npos)
      << "the error names the endpoint: " << list.error().message;
  auto registration = registry->Register(Instance("svc", "a", 9000), Ttl(2));
  ASSERT_FALSE(registration);
  EXPECT_TRUE(registration.error().code == ErrorCode::kUnavailable ||
              registration.error().code == ErrorCode::kTimeout);
  EXPECT_FALSE(registry->Services());
  EXPECT_FALSE(registry->Deregister("svc", "a"));
  EXPECT_LE(MillisSince(start), 3000)
      << "four calls, each bounded by request_timeout + 1 s at most";

  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitError(3s));
  EXPECT_EQ(watcher.updates(), watcher.errors());
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(watcher.errors(), 1) << "one error per outage, not one per retry";
  start = SteadyClock::now();
  watch.reset();
  EXPECT_LE(MillisSince(start), 500);
}

TEST(EtcdFailureTest, WatcherRecoversWhenEtcdStartsAfterTheWatch) {
  EtcdServer etcd;
  etcd.Stop();
  auto registry = OpenEtcd(etcd.url(), 1000ms);
  WatchRecorder watcher;
  auto watch = registry->Watch("svc", watcher.Callback());
  ASSERT_TRUE(watcher.WaitError(3s));
  etcd.Start();
  etcd.Put("services/svc/a", R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  ASSERT_TRUE(watcher.WaitIds({"a"}, 5s)) << "reconnect backoff is capped at a few seconds";
}

}  // namespace
}  // namespace disco::testing
