// Retries: which failures are retried, how long to wait, and a budget that
// keeps retries from flooding a service that is already failing.
//
// Thread safety: RetryOptions and the free functions are pure; RetryBudget
// is shared by every request of a client and uses atomics only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>

#include "disco/outlier.h"

namespace disco {

struct RetryOptions {
  std::uint32_t max_attempts = 3;                 // the first try included
  std::chrono::milliseconds per_try_timeout{1000};
  std::chrono::milliseconds deadline{5000};       // overall; no attempt starts or runs past it
  std::chrono::milliseconds backoff_base{25};
  std::chrono::milliseconds backoff_max{250};
};

// True for outcomes worth trying elsewhere: connect errors, resets, timeouts,
// and an HTTP 503 (kServerError with status 503). Other 5xx are not retried:
// the request reached a working server that failed on it.
bool IsRetryable(CallOutcome outcome, int http_status);

// Delay before attempt `attempt` (2 = the first retry): uniform in
// [0, min(backoff_max, backoff_base × 2^(attempt-2))] ("full jitter"), so
// that clients which failed together do not retry together.
std::chrono::milliseconds RetryBackoff(const RetryOptions& options, std::uint32_t attempt);

// Envoy's retry budget: retries in flight may be at most budget_percent of
// requests in flight, but at least min_concurrency (Envoy's default is 3;
// ours is 10, for the reason at http::ClientOptions::retry_budget_min).
class RetryBudget {
 public:
  explicit RetryBudget(double budget_percent = 20.0, std::uint32_t min_concurrency = 10)
      : percent_(budget_percent), min_concurrency_(min_concurrency) {}

  // Counts a request in flight for as long as it lives.
  class Request {
   public:
    explicit Request(RetryBudget& budget) : budget_(&budget) { budget_->active_.fetch_add(1); }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request() { budget_->active_.fetch_sub(1); }

   private:
    RetryBudget* budget_;
  };

  // Permission for one retry, held while the retry runs.
  class Token {
   public:
    explicit Token(RetryBudget& budget) : budget_(&budget) {}
    Token(Token&& other) noexcept : budget_(std::exchange(other.budget_, nullptr)) {}
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() {
      if (budget_) budget_->retries_.fetch_sub(1);
    }

   private:
    RetryBudget* budget_;
  };

  // The figures a refusal was decided on.
  struct Refusal {
    std::uint32_t retries_in_flight;
    std::uint32_t limit;
    std::uint32_t requests_in_flight;
  };
  // A token if a retry may start now; nullopt (and a count, and `why`) if
  // the budget is spent. (Two overloads, not a default argument: the first
  // keeps the 0.2 library's symbol.)
  std::optional<Token> TryAcquire();
  std::optional<Token> TryAcquire(Refusal& why);

  std::uint64_t exhausted_total() const { return exhausted_.load(std::memory_order_relaxed); }
  std::uint64_t retries_total() const { return granted_.load(std::memory_order_relaxed); }
  std::uint32_t active_requests() const { return active_.load(std::memory_order_relaxed); }
  std::uint32_t retries_in_flight() const { return retries_.load(std::memory_order_relaxed); }

 private:
  const double percent_;
  const std::uint32_t min_concurrency_;
  std::atomic<std::uint32_t> active_{0};
  std::atomic<std::uint32_t> retries_{0};
  std::atomic<std::uint64_t> granted_{0};
  std::atomic<std::uint64_t> exhausted_{0};
};

}  // namespace disco
