#include "disco/retry.h"

#include <algorithm>
#include <cmath>

#include "util/fast_random.h"

namespace disco {

bool IsRetryable(CallOutcome outcome, int http_status) {
  switch (outcome) {
    case CallOutcome::kConnectRefused:
    case CallOutcome::kConnectFailed:
    case CallOutcome::kReset:
    case CallOutcome::kTimeout:
      return true;
    case CallOutcome::kServerError:
      return http_status == 503;
    case CallOutcome::kSuccess:
      return false;
  }
  return false;
}

std::chrono::milliseconds RetryBackoff(const RetryOptions& options, std::uint32_t attempt) {
  if (attempt < 2) return std::chrono::milliseconds(0);
  auto shift = std::min<std::uint32_t>(attempt - 2, 20);
  auto ceiling = std::min<std::int64_t>(options.backoff_max.count(), options.backoff_base.count() << shift);
  if (ceiling <= 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(FastRandom() % static_cast<std::uint64_t>(ceiling + 1)));
}

std::optional<RetryBudget::Token> RetryBudget::TryAcquire() {
  Refusal ignored;
  return TryAcquire(ignored);
}

std::optional<RetryBudget::Token> RetryBudget::TryAcquire(Refusal& why) {
  const auto active = active_.load(std::memory_order_relaxed);
  const auto limit = std::max<std::uint32_t>(
      min_concurrency_, static_cast<std::uint32_t>(std::floor(active * percent_ / 100.0)));
  auto current = retries_.load(std::memory_order_relaxed);
  while (current < limit) {
    if (retries_.compare_exchange_weak(current, current + 1, std::memory_order_relaxed)) {
      granted_.fetch_add(1, std::memory_order_relaxed);
      return Token(*this);
    }
  }
  exhausted_.fetch_add(1, std::memory_order_relaxed);
  why = {current, limit, active};
  return std::nullopt;
}

}  // namespace disco
