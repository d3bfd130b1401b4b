// The registry conformance suite: the same cases against every backend
// (memory://, consul://, etcd://, and the last two over mutual TLS), each
// against a real server started for the test on free loopback ports.
//
// Cases that need another process (the CLI as a registrant) or data a good
// client never writes skip on backends where they mean nothing (memory://).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <set>
#include <thread>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/cli.h"
#include "fixture/registry_backend.h"
#include "fixture/update_recorder.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::chrono::milliseconds Since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

std::set<std::string> ListIds(Registry& registry, const std::string& service) {
  auto list = registry.List(service);
  std::set<std::string> ids;
  if (!list) return {"<error: " + list.error().ToString() + ">"};
  for (const auto& status : *list) ids.insert(status.instance.id);
  return ids;
}

bool IsUnreachableError(const Error& error) {
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout;
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = MakeRegistryBackend(GetParam());
    backend_->Start();
    registry_ = Open(backend_->url());
  }

  std::unique_ptr<Registry> Open(const std::string& url) {
    RegistryOptions options;
    options.request_timeout = 2s;
    auto registry = MakeRegistry(url, options);
    EXPECT_TRUE(registry) << registry.error().ToString();
    return registry ? std::move(*registry) : nullptr;
  }

  std::unique_ptr<Registration> MustRegister(const ServiceInstance& instance,
                                             std::chrono::seconds ttl = 10s) {
    RegisterOptions options;
    options.ttl = std::max(ttl, backend_->MinTtl());
    auto registration = registry_->Register(instance, options);
    EXPECT_TRUE(registration) << registration.error().ToString();
    return registration ? std::move(*registration) : nullptr;
  }

  bool remote() const { return backend_->shared_across_processes(); }

  std::unique_ptr<RegistryBackend> backend_;
  std::unique_ptr<Registry> registry_;
};

TEST_P(ConformanceTest, RegisteredInstancesAreListedAndWatched) {
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-web", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({}, 5s)) << "the first update of a watch is the current (empty) set";

  auto a = MustRegister(Instance("conf-web", "web-a", 7001));
  auto b = MustRegister(Instance("conf-web", "web-b", 7002));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->state(), RegistrationState::kActive);
  EXPECT_TRUE(recorder.WaitIds({"web-a", "web-b"}, 5s));
  EXPECT_EQ(ListIds(*registry_, "conf-web"), (std::set<std::string>{"web-a", "web-b"}));

  auto update = recorder.latest();
  ASSERT_EQ(update.instances.size(), 2u);
  EXPECT_EQ(update.instances[0].id, "web-a") << "instances are sorted by id";
  EXPECT_EQ(update.instances[0].Address(), "127.0.0.1:7001");
  EXPECT_EQ(update.instances[1].port, 7002);

  auto services = registry_->Services();
  ASSERT_TRUE(services) << services.error().ToString();
  EXPECT_NE(std::find(services->begin(), services->end(), "conf-web"), services->end());
}

TEST_P(ConformanceTest, DeregisterRemovesTheInstance) {
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-dereg", recorder.Callback());
  auto a = MustRegister(Instance("conf-dereg", "a", 7001));
  auto b = MustRegister(Instance("conf-dereg", "b", 7002));
  ASSERT_TRUE(recorder.WaitIds({"a", "b"}, 5s));

  ASSERT_TRUE(a->Deregister());
  EXPECT_EQ(a->state(), RegistrationState::kDeregistered);
  EXPECT_TRUE(a->Deregister()) << "Deregister is idempotent";
  EXPECT_TRUE(recorder.WaitIds({"b"}, 5s));
  EXPECT_EQ(ListIds(*registry_, "conf-dereg"), (std::set<std::string>{"b"}));

  b.reset();  // destroying the handle deregisters too
  EXPECT_TRUE(recorder.WaitIds({}, 5s));
  EXPECT_EQ(ListIds(*registry_, "conf-dereg"), (std::set<std::string>{}));
  EXPECT_TRUE(registry_->Deregister("conf-dereg", "never-was"))
      << "removing what is not there succeeds";
}

TEST_P(ConformanceTest, RegistryDeregisterRemovesSomeoneElsesInstance) {
  auto other = Open(backend_->url());
  RegisterOptions options;
  options.ttl = std::max<std::chrono::seconds>(3s, backend_->MinTtl());
  auto registration = other->Register(Instance("conf-other", "x", 7001), options);
  ASSERT_TRUE(registration) << registration.error().ToString();
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-other", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"x"}, 5s));

  ASSERT_TRUE(registry_->Deregister("conf-other", "x"));
  EXPECT_TRUE(recorder.WaitIds({}, 5s)) << "Deregister(service, id) removes it";
  if (GetParam() != "memory") {
    // The contract: a running registrant restores its own registration
    // within about TTL/3 (stop the process to remove it for good).
    EXPECT_TRUE(recorder.WaitIds({"x"}, options.ttl + 3s)) << "the registrant restores it";
  }
}

TEST_P(ConformanceTest, EveryFieldRoundTrips) {
  ServiceInstance instance = Instance("conf-fields", "f-1", 7443);
  instance.tags = {"v2", "canary"};
  instance.metadata = {{"proto", "http"}, {"version", "1.4.2"}};
  instance.weight = 7;
  instance.zone = "eu-1a";
  auto registration = MustRegister(instance);
  ASSERT_TRUE(registration);

  auto list = registry_->List("conf-fields");
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().instance, instance);
  EXPECT_EQ(list->front().health, HealthState::kPassing);

  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-fields", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"f-1"}, 5s));
  EXPECT_EQ(recorder.latest().instances.front(), instance);

  auto all = registry_->List("conf-fields", /*include_unhealthy=*/true);
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ(all->front().instance, instance);
}

TEST_P(ConformanceTest, UnknownServiceIsEmptyNotAnError) {
  auto list = registry_->List("conf-nobody");
  ASSERT_TRUE(list) << list.error().ToString();
  EXPECT_TRUE(list->empty());
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-nobody", recorder.Callback());
  EXPECT_TRUE(recorder.WaitIds({}, 5s));
}

TEST_P(ConformanceTest, InvalidInstancesAreRejected) {
  for (auto bad : {Instance("conf-bad", "", 1), Instance("conf-bad", "a b", 1),
                   Instance("conf/bad", "x", 1), Instance("conf-bad", "x", 0)}) {
    auto registration = registry_->Register(bad);
    ASSERT_FALSE(registration) << bad.service << "/" << bad.id;
    EXPECT_EQ(registration.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST_P(ConformanceTest, KilledRegistrantIsDroppedWithinTheBound) {
  if (!remote()) GTEST_SKIP() << backend_->name() << " cannot be shared with another process";
  const auto ttl = std::max<std::chrono::seconds>(2s, backend_->MinTtl());
  TempDir dir("disco-conf");
  Process registrant =
      StartCli({"--registry", backend_->url(), "register", "conf-crash", "--id", "victim",
                "--address", "127.0.0.1", "--port", "7100", "--ttl", std::to_string(ttl.count())},
               dir.Sub("registrant.log"));
  auto survivor = MustRegister(Instance("conf-crash", "survivor", 7101), ttl);
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-crash", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"survivor", "victim"}, 10s)) << registrant.ReadLog();
  // Let a few heartbeats pass, so that the kill lands at a random phase.
  std::this_thread::sleep_for(ttl);
  ASSERT_TRUE(recorder.WaitIds({"survivor", "victim"}, 1s))
      << "heartbeats keep it alive past its TTL";

  ASSERT_TRUE(registrant.Signal(SIGKILL));
  auto killed = Clock::now();
  ASSERT_TRUE(recorder.WaitIds({"survivor"}, backend_->DetectionBound(ttl) + 5s));
  auto detected = Since(killed);
  EXPECT_LE(detected, backend_->DetectionBound(ttl)) << "ttl " << ttl.count() << " s";
  RecordProperty("detection_ms", static_cast<int>(detected.count()));
  EXPECT_EQ(ListIds(*registry_, "conf-crash"), (std::set<std::string>{"survivor"}));
}

TEST_P(ConformanceTest, RegistryRestartRestoresRegistrationsAndWatches) {
  const auto ttl = std::max<std::chrono::seconds>(3s, backend_->MinTtl());
  auto registration = MustRegister(Instance("conf-restart", "r-1", 7200), ttl);
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-restart", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"r-1"}, 5s));

  backend_->Kill();
  EXPECT_TRUE(recorder.WaitError(10s)) << "the watch reports the outage";
  EXPECT_TRUE(WaitFor([&] { return registration->state() == RegistrationState::kRestoring; }, 15s))
      << "the registration notices it cannot refresh";
  backend_->Start();

  // No manual step: the registration comes back by itself, and the watch
  // resyncs and shows it.
  EXPECT_TRUE(recorder.WaitIds({"r-1"}, 30s));
  EXPECT_TRUE(WaitFor([&] { return registration->state() == RegistrationState::kActive; }, 30s));
  EXPECT_TRUE(WaitFor(
      [&] { return ListIds(*registry_, "conf-restart") == std::set<std::string>{"r-1"}; }, 10s));

  // And the watch is live again, not just resynced once.
  auto another = MustRegister(Instance("conf-restart", "r-2", 7201), ttl);
  EXPECT_TRUE(recorder.WaitIds({"r-1", "r-2"}, 10s));
}

TEST_P(ConformanceTest, MalformedRegistryDataIsSkipped) {
  auto good = MustRegister(Instance("conf-malformed", "good", 7300));
  if (!backend_->InjectMalformed("conf-malformed")) {
    GTEST_SKIP() << backend_->name() << " cannot hold malformed data";
  }
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-malformed", recorder.Callback());
  EXPECT_TRUE(recorder.WaitIds({"good"}, 5s));
  EXPECT_EQ(ListIds(*registry_, "conf-malformed"), (std::set<std::string>{"good"}));
  // Changes after the bad entry still arrive.
  auto more = MustRegister(Instance("conf-malformed", "more", 7301));
  EXPECT_TRUE(recorder.WaitIds({"good", "more"}, 5s));
}

TEST_P(ConformanceTest, UnreachableRegistryGivesAClearErrorFast) {
  std::string url = backend_->UnreachableUrl();
  if (url.empty()) {
    backend_->Stop();  // memory://: the store marked unavailable
    url = backend_->url();
  }
  auto registry = Open(url);
  ASSERT_TRUE(registry);

  auto started = Clock::now();
  auto list = registry->List("conf-any");
  ASSERT_FALSE(list);
  EXPECT_TRUE(IsUnreachableError(list.error())) << list.error().ToString();
  auto services = registry->Services();
  ASSERT_FALSE(services);
  EXPECT_TRUE(IsUnreachableError(services.error())) << services.error().ToString();
  auto registration = registry->Register(Instance("conf-any", "x", 7400));
  ASSERT_FALSE(registration);
  EXPECT_TRUE(IsUnreachableError(registration.error())) << registration.error().ToString();
  EXPECT_LT(Since(started), 6s);

  UpdateRecorder recorder;
  started = Clock::now();
  auto watch = registry->Watch("conf-any", recorder.Callback());
  ASSERT_TRUE(recorder.WaitError(5s));
  EXPECT_LT(Since(started), 5s);
  EXPECT_TRUE(IsUnreachableError(recorder.latest().error)) << recorder.latest().error.ToString();
}

TEST_P(ConformanceTest, StoppedRegistryIsReportedAndTheWatchResyncsWhenItReturns) {
  auto registration = MustRegister(Instance("conf-stop", "s-1", 7500), 3s);
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-stop", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"s-1"}, 5s));

  backend_->Stop();
  ASSERT_TRUE(recorder.WaitError(10s));
  auto started = Clock::now();
  auto list = registry_->List("conf-stop");
  ASSERT_FALSE(list);
  EXPECT_TRUE(IsUnreachableError(list.error())) << list.error().ToString();
  EXPECT_LT(Since(started), 5s);

  backend_->Start();
  EXPECT_TRUE(recorder.WaitIds({"s-1"}, 30s))
      << "after an error the next ok update is a full resync";
}

TEST_P(ConformanceTest, ResolverServesItsLastSnapshotWhileTheRegistryIsDown) {
  auto a = MustRegister(Instance("conf-resolve", "a", 7601), 3s);
  auto b = MustRegister(Instance("conf-resolve", "b", 7602), 3s);
  auto resolver = Resolver::Make(*registry_, "conf-resolve");
  ASSERT_TRUE(resolver) << resolver.error().ToString();
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 2; }, 5s));

  backend_->Kill();
  ASSERT_TRUE(WaitFor([&] { return !(*resolver)->LastError().empty(); }, 10s));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ((*resolver)->snapshot()->endpoints.size(), 2u) << "the last known snapshot is kept";
  std::set<std::string> picked;
  for (int i = 0; i < 10; ++i) {
    auto endpoint = (*resolver)->Pick();
    ASSERT_NE(endpoint, nullptr);
    picked.insert(endpoint->instance.id);
  }
  EXPECT_EQ(picked, (std::set<std::string>{"a", "b"}));
  EXPECT_GT((*resolver)->Staleness(), 0ms);

  backend_->Start();
  EXPECT_TRUE(WaitFor([&] { return (*resolver)->LastError().empty(); }, 30s))
      << (*resolver)->LastError();
  EXPECT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 2; }, 30s));
}

TEST_P(ConformanceTest, WatchStopsPromptlyAndCallsNothingAfterwards) {
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-stopwatch", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({}, 5s));
  std::this_thread::sleep_for(300ms);  // a blocking query is now in flight

  auto started = Clock::now();
  watch.reset();
  EXPECT_LT(Since(started), 1s) << "stopping must not wait for the blocking query";
  auto seen = recorder.count();
  auto registration = MustRegister(Instance("conf-stopwatch", "late", 7700));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(recorder.count(), seen) << "no callback after the handle is gone";
}

TEST_P(ConformanceTest, ManyHandlesTearDownQuickly) {
  std::vector<std::unique_ptr<Registration>> registrations;
  std::vector<std::unique_ptr<WatchHandle>> watches;
  std::vector<std::unique_ptr<UpdateRecorder>> recorders;
  for (int i = 0; i < 10; ++i) {
    registrations.push_back(
        MustRegister(Instance("conf-many", "m-" + std::to_string(i), 7800 + i)));
    recorders.push_back(std::make_unique<UpdateRecorder>());
    watches.push_back(registry_->Watch("conf-many", recorders.back()->Callback()));
  }
  std::set<std::string> all;
  for (int i = 0; i < 10; ++i) all.insert("m-" + std::to_string(i));
  for (auto& recorder : recorders) EXPECT_TRUE(recorder->WaitIds(all, 10s));
  auto started = Clock::now();
  watches.clear();
  registrations.clear();
  registry_.reset();
  EXPECT_LT(Since(started), 5s);
}

TEST_P(ConformanceTest, HandlesOutliveTheirRegistry) {
  auto registration = MustRegister(Instance("conf-outlive", "o-1", 7900));
  UpdateRecorder recorder;
  auto watch = registry_->Watch("conf-outlive", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"o-1"}, 5s));
  registry_.reset();  // the handles keep what they need alive

  auto observer = Open(backend_->url());
  EXPECT_EQ(ListIds(*observer, "conf-outlive"), (std::set<std::string>{"o-1"}));
  auto other = observer->Register(Instance("conf-outlive", "o-2", 7901));
  ASSERT_TRUE(other) << other.error().ToString();
  EXPECT_TRUE(recorder.WaitIds({"o-1", "o-2"}, 5s)) << "the watch still delivers";
  registration.reset();
  EXPECT_TRUE(recorder.WaitIds({"o-2"}, 5s)) << "and the registration still deregisters";
}

std::string BackendName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  std::replace(name.begin(), name.end(), '-', '_');  // "etcd-tls": gtest names take no '-'
  return name;
}

INSTANTIATE_TEST_SUITE_P(Backends, ConformanceTest, ::testing::ValuesIn(RegistryBackendNames()),
                         BackendName);
// The same cases with the registry over mutual TLS (issue 14): a client
// certificate in the URL, the CLI registrant included.
INSTANTIATE_TEST_SUITE_P(Tls, ConformanceTest, ::testing::ValuesIn(TlsRegistryBackendNames()),
                         BackendName);

}  // namespace
}  // namespace disco::testing
