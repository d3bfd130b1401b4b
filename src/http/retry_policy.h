// The one place that decides whether a failed attempt of an outgoing HTTP
// call is tried again on another instance. The resilience layer (retry
// budget, backoff, outlier feedback) grows from here.
#pragma once

#include <string_view>

namespace disco::http {

enum class AttemptFailure {
  kNone,
  kConnect,    // no connection: the request never left, safe for any method
  kReset,      // connection reset or closed before a complete answer
  kTimeout,    // the per-try deadline passed after the request was sent
  kStatus503,  // the instance answered 503 (overloaded, draining)
  kProtocol,   // the answer was not HTTP we can read: retrying will not help
};

std::string_view AttemptFailureName(AttemptFailure failure);

// REQUIRES: attempt >= 1 (the attempt that just failed).
inline bool ShouldRetry(AttemptFailure failure, bool retry_safe, int attempt, int max_attempts) {
  if (attempt >= max_attempts) return false;
  switch (failure) {
    case AttemptFailure::kConnect: return true;
    case AttemptFailure::kReset:
    case AttemptFailure::kTimeout:
    case AttemptFailure::kStatus503: return retry_safe;
    case AttemptFailure::kNone:
    case AttemptFailure::kProtocol: return false;
  }
  return false;
}

}  // namespace disco::http
