// Outlier detection: ejects endpoints that keep failing, so every balancer
// skips them, and lets them back after a growing ejection time.
//
// It only observes: callers Record() the outcome of each call, and the
// detector sets EndpointStats::ejected, which every picker already honours.
// Rules (defaults as Envoy's, with the share raised for small demo services):
//   - N consecutive failures (default 5: connect error, reset, timeout, 5xx)
//     eject the endpoint for base × times-ejected (30 s, capped at 300 s);
//   - a refused connection is definitive (nothing listens there any more): the
//     endpoint is ejected at once instead of after N failures;
//   - at most max_ejected_percent of the service's endpoints are ejected at
//     once, but at least one may be when there are two or more, and the last
//     endpoint that is not ejected never is;
//   - after an ejection ends, the times-ejected multiplier decays by one per
//     base interval without a new ejection.
//
// Thread safety: Record() and Sweep() may be called from any thread; the
// counting is relaxed atomics, ejection decisions (rare) take a mutex.
// Update() is called by the control plane (the resolver) on each snapshot.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "disco/balancer.h"
#include "disco/snapshot.h"

namespace disco {

// What one call to an endpoint came to, as far as the endpoint's health goes.
enum class CallOutcome {
  kSuccess,         // it answered with a status below 500: the endpoint works
  kConnectRefused,  // nothing listens: definitive
  kConnectFailed,   // connect timeout, unreachable
  kReset,           // connection reset or closed mid-request
  kTimeout,         // no answer within the per-try timeout
  kServerError,     // 5xx
};

std::string_view CallOutcomeName(CallOutcome outcome);
// The error a failed attempt becomes when it is the call's last: the one
// place where the two vocabularies meet. kConnectRefused/kConnectFailed →
// kUnavailable, kTimeout → kTimeout, kReset → kReset, kServerError (an
// answer that is not HTTP we can read; a 5xx answer is a value) → kMalformed.
ErrorCode ErrorCodeFor(CallOutcome outcome);
inline bool IsFailure(CallOutcome outcome) { return outcome != CallOutcome::kSuccess; }

// Counts one call's outcome in the endpoint's stats (successes or failures,
// and the run of consecutive failures); returns that run, 0 after a success.
// Used by Resolver::Report and by the outlier detector, with or without it.
std::uint32_t CountOutcome(EndpointStats& stats, CallOutcome outcome);

struct OutlierOptions {
  std::uint32_t consecutive_failures = 5;
  std::chrono::milliseconds base_ejection{30'000};
  std::chrono::milliseconds max_ejection{300'000};
  std::uint32_t max_ejected_percent = 50;
  bool eject_on_refused = true;
};

struct OutlierEvent {
  enum class Kind { kEjected, kReturned };
  Kind kind;
  std::string service{};
  std::string id{};
  std::string address{};
  CallOutcome cause = CallOutcome::kSuccess;  // for kEjected
  std::chrono::milliseconds duration{0};      // for kEjected
};

class OutlierDetector {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  explicit OutlierDetector(std::string service, OutlierOptions options = {}, Clock clock = {});

  // The endpoints that exist now (the share of ejected endpoints is computed
  // on this set). Ejections of endpoints that stay are kept.
  void Update(SnapshotConstPtr snapshot);

  // Records one call's outcome. Also runs Sweep() at most every 100 ms.
  void Record(const Endpoint& endpoint, CallOutcome outcome);

  // Returns endpoints whose ejection time is over to the picks.
  void Sweep();

  // Called (under the detector's lock, keep it short) on every ejection and return.
  void SetListener(std::function<void(const OutlierEvent&)> listener);

  std::uint64_t ejections_total() const { return ejections_.load(std::memory_order_relaxed); }
  std::uint64_t returns_total() const { return returns_.load(std::memory_order_relaxed); }
  std::size_t ejected_now() const;
  const OutlierOptions& options() const { return options_; }

 private:
  std::int64_t NowNs() const;
  void TryEject(const Endpoint& endpoint, CallOutcome cause, std::int64_t now_ns);
  void SweepLocked(std::int64_t now_ns);

  const std::string service_;
  const OutlierOptions options_;
  const Clock clock_;
  mutable std::mutex mu_;
  SnapshotConstPtr snapshot_{};  // guarded by mu_
  std::function<void(const OutlierEvent&)> listener_;
  std::atomic<std::int64_t> next_sweep_ns_{0};
  std::atomic<std::uint64_t> ejections_{0};
  std::atomic<std::uint64_t> returns_{0};
};

// A balancer decorator: behaves as `child`, and hands each new snapshot to
// `detector` so its ejection share is computed on the current endpoint set.
std::unique_ptr<Balancer> WithOutlierDetection(std::unique_ptr<Balancer> child,
                                               std::shared_ptr<OutlierDetector> detector);

}  // namespace disco
