// The one place that decides whether a failed attempt of an outgoing HTTP
// call is tried again on another instance (http::Client). Built on
// disco::IsRetryable (disco/retry.h); the resilience work (budget, backoff)
// grows from here.
#pragma once

#include "disco/outlier.h"
#include "disco/retry.h"

namespace disco::http {

// A connect failure is always safe to retry: the request never left. Resets,
// timeouts and 503s are retried only for retry-safe (idempotent) requests,
// since the first instance may have acted on the request.
// REQUIRES: attempt >= 1 (the attempt that just failed).
inline bool ShouldRetry(CallOutcome outcome, int http_status, bool retry_safe, int attempt,
                        int max_attempts) {
  if (attempt >= max_attempts || !IsRetryable(outcome, http_status)) return false;
  if (outcome == CallOutcome::kConnectRefused || outcome == CallOutcome::kConnectFailed)
    return true;
  return retry_safe;
}

}  // namespace disco::http
