// Chaos tests (issue 6): failures of real processes under a steady load of
// creates through order-service → user-service, on etcd and on Consul.
//
// The client is ChaosStack's LoadGenerator: the library's http::Client
// calling order-service through discovery (so failures of order-service
// instances are hidden by the same retries and outlier detection that
// order-service uses towards user-service). Each test prints one line
//   CHAOS scenario=<name> backend=<etcd|consul> requests=... failed=... ...
// (also appended to <build>/test-artifacts/chaos.txt) with the figures
// quoted in docs/benchmarks.md.
//
// Bounds leave room for a loaded 2-core CI machine; the tests run one at a
// time (RUN_SERIAL), since they measure latency.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <iterator>
#include <thread>

#include "chaos/chaos_scenarios.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The client's first retry waits at most this long (ClientOptions::backoff_base).
constexpr auto kFirstBackoff = 25ms;

class ChaosTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ChaosOptions options;
    options.backend = GetParam();
    stack_ = std::make_unique<ChaosStack>(options);
  }

  // The shared figures and bars (chaos_scenarios.h).
  ChaosStack::Fields Common(const LoadFigures& all, const LoadFigures& fault) {
    return CommonFields(*stack_, all, fault);
  }
  void ExpectNoFailures(const LoadFigures& all) { disco::testing::ExpectNoFailures(*stack_, all); }

  std::unique_ptr<ChaosStack> stack_;
};

// 1. kill -9 of one of two user-service instances.
TEST_P(ChaosTest, KillNineOfAUserServiceFailsNoRequest) { KillNineOfAUserService(*stack_); }

// 2. The registry stopped for 30 s, then started again.
TEST_P(ChaosTest, RegistryOutageOf30sFailsNoRequest) {
  ChaosStack& s = *stack_;
  s.StartLoad();
  std::this_thread::sleep_for(kChaosWarmup);

  const auto stopped = Clock::now();
  s.backend().Stop();
  // Every resolver notices and serves its last snapshot, reporting staleness.
  std::optional<milliseconds> noticed;
  if (WaitFor([&] { return s.ResolversFresh(false); }, 15s, 50ms)) noticed = Since(stopped);
  std::this_thread::sleep_until(stopped + 30s);
  const double stale_s = s.MinStaleness();
  const bool stale_before_return = s.ResolversFresh(false);

  s.backend().Start();
  const auto returned = Clock::now();
  // Every instance registered again (its registration active and listed).
  std::vector<std::pair<ServiceProcess*, std::string>> instances;
  for (auto& p : s.users()) instances.push_back({p.get(), "user-service"});
  for (auto& p : s.orders()) instances.push_back({p.get(), "order-service"});
  std::optional<milliseconds> registered_max = milliseconds(0);
  std::string not_registered;
  for (auto& [process, service] : instances) {
    if (!WaitFor([&, p = process, name = service] { return s.RegisteredAndActive(*p, name); }, 20s,
                 50ms)) {
      not_registered += " " + process->id();
      registered_max.reset();
    } else if (registered_max) {
      registered_max = std::max(*registered_max, Since(returned));
    }
  }
  // Every resolver resynced.
  std::optional<milliseconds> resynced;
  if (WaitFor([&] { return s.ResolversFresh(true); }, 20s, 50ms)) resynced = Since(returned);
  bool all_visible = true;
  for (auto& [process, service] : instances) {
    // Present, not necessarily usable: an instance the machine stalled may
    // rightly be ejected for 30 s by a caller (the balancer's decision).
    all_visible = all_visible && s.WaitEverywhere(service, process->id(), true, 10s);
  }
  std::this_thread::sleep_for(5s);
  s.StopLoad();

  auto all = s.load().Figures();
  auto fault = s.load().Figures(stopped, returned + 5s);
  auto fields = Common(all, fault);
  fields.push_back({"outage_s", "30"});
  fields.push_back({"detect_ms", Ms(noticed)});
  fields.push_back({"stale_s", Ms(stale_s)});
  fields.push_back({"reregister_ms", Ms(registered_max)});
  fields.push_back({"resync_ms", Ms(resynced)});
  s.Report("registry_outage_30s", fields);

  EXPECT_TRUE(noticed) << "the resolvers never reported the registry unreachable";
  EXPECT_TRUE(stale_before_return) << "staleness must be reported through the outage";
  EXPECT_GE(stale_s, 20.0);
  ASSERT_TRUE(registered_max) << "not registered again:" << not_registered << "\n" << s.Logs();
  EXPECT_LE(*registered_max, 5s) << "every instance must be registered again within 5 s";
  EXPECT_TRUE(resynced) << "a resolver did not resync\n" << s.Logs();
  EXPECT_TRUE(all_visible) << "an instance is missing from a resolver after the outage";
  ExpectNoFailures(all);
}

// 3. Rolling restart of every instance (SIGTERM, start again, one at a time).
TEST_P(ChaosTest, RollingRestartFailsNoRequest) { RollingRestart(*stack_); }

// 4. An instance that accepts connections but never answers (SIGSTOP): first
// one of the user-services (order-service's tries time out and go to the
// other), then one of the order-services (the load generator's do).
TEST_P(ChaosTest, HungInstanceTimesOutPerTryAndSucceedsElsewhere) {
  ChaosStack& s = *stack_;
  const auto started = Clock::now();
  s.StartLoad();
  std::this_thread::sleep_for(kChaosWarmup);
  const auto baseline = s.load().Figures(started, Clock::now());
  constexpr auto kHang = 6s;  // longer than the TTL: it also leaves the registry

  // Phase A: a user-service hangs.
  ServiceProcess& user = *s.users()[0];
  const auto user_stopped = Clock::now();
  ASSERT_TRUE(s.StopOutsideWrites(user, "user"));
  auto user_out = s.WaitEverywhere("user-service", user.id(), false, 10s, true);
  std::this_thread::sleep_until(user_stopped + kHang);
  ASSERT_TRUE(user.Signal(SIGCONT));
  const auto user_resumed = Clock::now();
  auto user_back = s.WaitEverywhere("user-service", user.id(), true, 20s, true);
  const auto timeouts_a = s.Downstream().timeouts;
  std::this_thread::sleep_for(1s);

  // Phase B: an order-service hangs.
  ServiceProcess& order = *s.orders()[0];
  s.Downstream();
  const auto order_stopped = Clock::now();
  ASSERT_TRUE(s.StopOutsideWrites(order, "order"));
  auto order_out = s.WaitEverywhere("order-service", order.id(), false, 10s, true, {order.pid()});
  std::this_thread::sleep_until(order_stopped + kHang);
  ASSERT_TRUE(order.Signal(SIGCONT));
  const auto order_resumed = Clock::now();
  auto order_back = s.WaitEverywhere("order-service", order.id(), true, 20s, true);
  std::this_thread::sleep_for(2s);
  s.StopLoad();

  auto all = s.load().Figures();
  auto user_fault = s.load().Figures(user_stopped, user_resumed);
  auto order_fault = s.load().Figures(order_stopped, order_resumed);
  // "Per-try timeout plus one retry": the timeout, the first retry's backoff,
  // and the retry itself, which takes what a normal request takes (allowing
  // for a loaded machine: three times the baseline p99, at least 300 ms).
  const auto retry_allowance =
      kFirstBackoff +
      std::max(milliseconds(300), milliseconds(static_cast<long>(3 * baseline.p99_ms)));
  const auto user_bound = s.options().call_timeout + retry_allowance;
  const auto order_bound = s.options().load_per_try_timeout + retry_allowance;

  auto fields = Common(all, user_fault);
  fields.push_back({"baseline_p99_ms", Ms(baseline.p99_ms)});
  fields.push_back({"user_hang_p99_ms", Ms(user_fault.p99_ms)});
  fields.push_back({"user_hang_bound_ms", N(static_cast<double>(user_bound.count()))});
  fields.push_back({"order_hang_p99_ms", Ms(order_fault.p99_ms)});
  fields.push_back({"order_hang_bound_ms", N(static_cast<double>(order_bound.count()))});
  fields.push_back({"user_detect_ms", Ms(user_out)});
  fields.push_back({"order_detect_ms", Ms(order_out)});
  fields.push_back({"user_recover_ms", Ms(user_back)});
  fields.push_back({"order_recover_ms", Ms(order_back)});
  s.Report("sigstop", fields);

  EXPECT_TRUE(user_out) << "the hung user-service stayed in the picks\n" << s.Logs();
  EXPECT_TRUE(order_out) << "the hung order-service stayed in the picks";
  EXPECT_TRUE(user_back) << "the resumed user-service did not come back\n" << s.Logs();
  EXPECT_TRUE(order_back) << "the resumed order-service did not come back\n" << s.Logs();
  EXPECT_GT(timeouts_a, 0) << "order-service's tries to the hung user-service must time out";
  EXPECT_GT(order_fault.retries, 0u) << "the load generator's tries to the hung order-service "
                                        "must time out and be retried";
  EXPECT_LE(user_fault.p99_ms, static_cast<double>(user_bound.count()));
  EXPECT_LE(order_fault.p99_ms, static_cast<double>(order_bound.count()));
  ExpectNoFailures(all);
}

INSTANTIATE_TEST_SUITE_P(Backends, ChaosTest, ::testing::Values("etcd", "consul"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace disco::testing
