#include "disco/retry.h"

#include <gtest/gtest.h>

#include <vector>

namespace disco {
namespace {

using namespace std::chrono_literals;

TEST(RetryTest, RetriesOnlyWhatAnotherEndpointMightServe) {
  EXPECT_TRUE(IsRetryable(CallOutcome::kConnectRefused, 0));
  EXPECT_TRUE(IsRetryable(CallOutcome::kConnectFailed, 0));
  EXPECT_TRUE(IsRetryable(CallOutcome::kReset, 0));
  EXPECT_TRUE(IsRetryable(CallOutcome::kTimeout, 0));
  EXPECT_TRUE(IsRetryable(CallOutcome::kServerError, 503));
  EXPECT_FALSE(IsRetryable(CallOutcome::kServerError, 500));
  EXPECT_FALSE(IsRetryable(CallOutcome::kSuccess, 200));
}

TEST(RetryTest, BackoffIsJitteredBelowAGrowingCappedCeiling) {
  RetryOptions options{.backoff_base = 25ms, .backoff_max = 250ms};
  EXPECT_EQ(RetryBackoff(options, 1), 0ms);
  for (std::uint32_t attempt = 2; attempt < 10; ++attempt) {
    auto ceiling = std::min<std::int64_t>(250, 25 << (attempt - 2));
    std::int64_t low = 1 << 30, high = -1;
    for (int i = 0; i < 2000; ++i) {
      auto d = RetryBackoff(options, attempt).count();
      ASSERT_GE(d, 0);
      ASSERT_LE(d, ceiling);
      low = std::min(low, d);
      high = std::max(high, d);
    }
    // Full jitter spreads over the whole range.
    EXPECT_LE(low, ceiling / 4) << attempt;
    EXPECT_GE(high, ceiling * 3 / 4) << attempt;
  }
}

TEST(RetryBudgetTest, AllowsMinConcurrencyWhenIdle) {
  RetryBudget budget(20.0, 3);
  std::vector<RetryBudget::Token> tokens;
  for (int i = 0; i < 3; ++i) {
    auto token = budget.TryAcquire();
    ASSERT_TRUE(token);
    tokens.push_back(std::move(*token));
  }
  EXPECT_FALSE(budget.TryAcquire());
  EXPECT_EQ(budget.exhausted_total(), 1u);
  tokens.pop_back();
  EXPECT_TRUE(budget.TryAcquire()) << "a finished retry gives its place back";
}

TEST(RetryBudgetTest, ScalesWithRequestsInFlight) {
  RetryBudget budget(20.0, 3);
  std::vector<std::unique_ptr<RetryBudget::Request>> requests;
  for (int i = 0; i < 100; ++i) requests.push_back(std::make_unique<RetryBudget::Request>(budget));
  std::vector<RetryBudget::Token> tokens;
  while (auto token = budget.TryAcquire()) tokens.push_back(std::move(*token));
  EXPECT_EQ(tokens.size(), 20u);
  EXPECT_EQ(budget.retries_total(), 20u);
  requests.clear();
  EXPECT_EQ(budget.active_requests(), 0u);
}

}  // namespace
}  // namespace disco
