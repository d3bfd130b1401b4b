#include "chaos/chaos_checks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <vector>

namespace disco::testing {
namespace {

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

}  // namespace disco::testing
