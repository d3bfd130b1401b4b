#include "chaos/chaos_scenarios.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <iterator>
#include <thread>

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "  " + line + "\n";
  return out;
}

// How many keys, and the first few, for a failure message.
std::string Some(const std::vector<std::string>& keys) {
  std::string out = std::to_string(keys.size()) + ":";
  for (std::size_t i = 0; i < keys.size() && i < 5; ++i) out += " " + keys[i];
  return out + (keys.size() > 5 ? " ..." : "");
}

}  // namespace

std::string N(std::size_t n) { return std::to_string(n); }
std::string N(double n) { return std::to_string(static_cast<long long>(n)); }

milliseconds Since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

ChaosStack::Fields CommonFields(ChaosStack& stack, const LoadFigures& all,
                                const LoadFigures& fault) {
  auto down = stack.Downstream();
  auto ejections =
      down.ejections +
      (stack.load().resolver().outlier_detector()
           ? static_cast<double>(stack.load().resolver().outlier_detector()->ejections_total())
           : 0);
  return {{"requests", N(all.requests)},
          {"rate", N(all.rate)},
          {"create_rate", N(all.seconds > 0 ? static_cast<double>(all.posts) / all.seconds : 0)},
          {"failed", N(all.failed)},
          {"retries", N(all.retries + static_cast<std::size_t>(down.retries))},
          {"client_retries", N(all.retries)},
          {"service_retries", N(down.retries)},
          {"ejections", N(ejections)},
          {"timeouts", N(down.timeouts)},
          {"budget_exhausted",
           N(down.exhausted + static_cast<double>(stack.load().client().stats().budget_exhausted))},
          {"replayed", N(all.replayed)},
          {"p50_ms", Ms(all.p50_ms)},
          {"p99_ms", Ms(all.p99_ms)},
          {"fault_p99_ms", Ms(fault.p99_ms)},
          {"max_ms", Ms(all.max_ms)}};
}

void ExpectNoFailures(ChaosStack& stack, const LoadFigures& all) {
  EXPECT_EQ(all.failed, 0u) << "failed requests, first ones:\n"
                            << Joined(stack.load().Failures()) << stack.Logs();
  // Creates are the requests that go on to user-service.
  const double creates_per_second =
      all.seconds > 0 ? static_cast<double>(all.posts) / all.seconds : 0;
  EXPECT_GE(creates_per_second, 200.0 / kChaosSlowdown)
      << "at least 200 requests/s through order-service → user-service";
  // Every acknowledged create (a 201 to the load generator) is in the
  // database exactly once, retries and replays included; a stored order
  // nobody was told about can only belong to a create counted as failed.
  auto acknowledged = stack.load().CreatedKeys();
  std::sort(acknowledged.begin(), acknowledged.end());
  auto stored = stack.OrderKeysInDatabase();  // one per row, sorted
  std::vector<std::string> twice;             // keys of more than one row
  for (std::size_t i = 1; i < stored.size(); ++i) {
    if (stored[i] == stored[i - 1] && (twice.empty() || twice.back() != stored[i]))
      twice.push_back(stored[i]);
  }
  stored.erase(std::unique(stored.begin(), stored.end()), stored.end());
  std::vector<std::string> missing;
  std::set_difference(acknowledged.begin(), acknowledged.end(), stored.begin(), stored.end(),
                      std::back_inserter(missing));
  std::vector<std::string> unacknowledged;
  std::set_difference(stored.begin(), stored.end(), acknowledged.begin(), acknowledged.end(),
                      std::back_inserter(unacknowledged));
  EXPECT_TRUE(missing.empty()) << "acknowledged orders missing from the database: "
                               << Some(missing);
  EXPECT_TRUE(twice.empty()) << "orders stored more than once: " << Some(twice);
  EXPECT_LE(unacknowledged.size(), all.failed)
      << "orders stored that were neither acknowledged nor failed: " << Some(unacknowledged);
}

void KillNineOfAUserService(ChaosStack& s) {
  s.StartLoad();
  std::this_thread::sleep_for(kChaosWarmup);

  ServiceProcess& victim = *s.users()[0];
  const auto killed = Clock::now();
  victim.Kill();
  // Out of the registry within the TTL, and so out of every resolver.
  auto gone = s.WaitEverywhere("user-service", victim.id(), false, 20s);
  const auto fault_end = Clock::now();
  std::this_thread::sleep_for(2s);

  const auto restarted = Clock::now();
  victim.Restart();
  auto back = s.WaitEverywhere("user-service", victim.id(), true, 20s, true);
  const auto recovered = back ? std::optional(Since(restarted)) : std::nullopt;
  std::this_thread::sleep_for(2s);
  s.StopLoad();

  auto all = s.load().Figures();
  auto fault = s.load().Figures(killed, fault_end);
  auto fields = CommonFields(s, all, fault);
  fields.push_back({"detect_ms", Ms(gone)});
  fields.push_back({"recover_ms", Ms(recovered)});
  s.Report("kill9_user_service", fields);

  ASSERT_TRUE(gone) << "the killed instance never left every resolver\n" << s.Logs();
  const auto bound = s.backend().DetectionBound(kServiceRegistryTtl);
  EXPECT_LE(*gone, bound) << "it must leave every resolver within the " << s.backend().name()
                          << " detection bound for a " << kServiceRegistryTtl.count() << " s TTL ("
                          << bound.count() << " ms)";
  EXPECT_TRUE(back) << "the restarted instance never came back\n" << s.Logs();
  ExpectNoFailures(s, all);
}

void RollingRestart(ChaosStack& s) {
  s.StartLoad();
  std::this_thread::sleep_for(kChaosWarmup);

  struct Step {
    ServiceProcess* process;
    std::string service;
    int order_index;  // -1 for user-service
  };
  std::vector<Step> steps = {{s.users()[0].get(), "user-service", -1},
                             {s.users()[1].get(), "user-service", -1},
                             {s.orders()[0].get(), "order-service", 0},
                             {s.orders()[1].get(), "order-service", 1}};
  const auto began = Clock::now();
  milliseconds left_max{0};
  milliseconds back_max{0};
  bool all_left = true;
  bool all_back = true;
  for (const Step& step : steps) {
    ServiceProcess& p = *step.process;
    if (step.order_index >= 0) s.Downstream();  // its counters, before it exits
    ASSERT_TRUE(p.Signal(SIGTERM));
    auto left = s.WaitEverywhere(step.service, p.id(), false, 10s);
    EXPECT_EQ(p.Wait(30s), 0) << p.id() << " did not exit cleanly\n" << p.ReadLog();
    if (step.order_index >= 0) s.Fold(static_cast<std::size_t>(step.order_index));
    if (left)
      left_max = std::max(left_max, *left);
    else
      all_left = false;
    const auto restarted = Clock::now();
    p.Restart();
    auto back = s.WaitEverywhere(step.service, p.id(), true, 20s, true);
    if (back)
      back_max = std::max(back_max, Since(restarted));
    else
      all_back = false;
    std::this_thread::sleep_for(1s);  // let it take its share before the next one goes
  }
  const auto ended = Clock::now();
  std::this_thread::sleep_for(2s);
  s.StopLoad();

  auto all = s.load().Figures();
  auto fault = s.load().Figures(began, ended);
  auto fields = CommonFields(s, all, fault);
  fields.push_back({"restarts", "4"});
  fields.push_back({"detect_ms", all_left ? Ms(left_max) : "-"});
  fields.push_back({"recover_ms", all_back ? Ms(back_max) : "-"});
  s.Report("rolling_restart", fields);

  EXPECT_TRUE(all_left) << "a stopping instance did not leave every resolver";
  EXPECT_TRUE(all_back) << "a restarted instance did not come back\n" << s.Logs();
  ExpectNoFailures(s, all);
}

}  // namespace disco::testing
