#include "disco/outlier.h"

#include <algorithm>

#include "util/log.h"

namespace disco {
namespace {

constexpr std::int64_t kSweepIntervalNs = 100'000'000;  // 100 ms

std::int64_t ToNs(std::chrono::milliseconds ms) { return ms.count() * 1'000'000; }

}  // namespace

std::string_view CallOutcomeName(CallOutcome outcome) {
  switch (outcome) {
    case CallOutcome::kSuccess: return "success";
    case CallOutcome::kConnectRefused: return "connect_refused";
    case CallOutcome::kConnectFailed: return "connect_failed";
    case CallOutcome::kReset: return "reset";
    case CallOutcome::kTimeout: return "timeout";
    case CallOutcome::kServerError: return "server_error";
  }
  return "unknown";
}

ErrorCode ErrorCodeFor(CallOutcome outcome) {
  switch (outcome) {
    case CallOutcome::kTimeout: return ErrorCode::kTimeout;
    case CallOutcome::kReset: return ErrorCode::kReset;
    case CallOutcome::kServerError: return ErrorCode::kMalformed;
    case CallOutcome::kConnectRefused:
    case CallOutcome::kConnectFailed: return ErrorCode::kUnavailable;
    case CallOutcome::kSuccess: break;
  }
  return ErrorCode::kInternal;  // a success is not an error
}

std::uint32_t CountOutcome(EndpointStats& stats, CallOutcome outcome) {
  if (outcome == CallOutcome::kSuccess) {
    stats.Count(EndpointStats::kSuccesses);
    // Read before writing: while an endpoint is healthy this line is only
    // read, so callers on different cores do not pass it back and forth.
    if (stats.consecutive_failures.load(std::memory_order_relaxed) != 0)
      stats.consecutive_failures.store(0, std::memory_order_relaxed);
    return 0;
  }
  stats.Count(EndpointStats::kFailures);
  return stats.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
}

OutlierDetector::OutlierDetector(std::string service, OutlierOptions options, Clock clock)
    : service_(std::move(service)),
      options_(options),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

std::int64_t OutlierDetector::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_().time_since_epoch()).count();
}

void OutlierDetector::Update(SnapshotConstPtr snapshot) {
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
}

void OutlierDetector::SetListener(std::function<void(const OutlierEvent&)> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::size_t OutlierDetector::ejected_now() const {
  std::lock_guard lock(mu_);
  if (!snapshot_) return 0;
  return static_cast<std::size_t>(
      std::count_if(snapshot_->endpoints.begin(), snapshot_->endpoints.end(), [](const Endpoint& e) { return e.ejected(); }));
}

void OutlierDetector::Record(const Endpoint& endpoint, CallOutcome outcome) {
  auto& stats = *endpoint.stats;
  std::int64_t now = NowNs();
  const std::uint32_t failures = CountOutcome(stats, outcome);
  if (outcome != CallOutcome::kSuccess) {
    bool definitive = outcome == CallOutcome::kConnectRefused && options_.eject_on_refused;
    if ((definitive || failures >= options_.consecutive_failures) && !endpoint.ejected()) {
      TryEject(endpoint, outcome, now);
    }
  }
  auto next = next_sweep_ns_.load(std::memory_order_relaxed);
  if (now >= next && next_sweep_ns_.compare_exchange_strong(next, now + kSweepIntervalNs)) {
    std::unique_lock lock(mu_, std::try_to_lock);
    if (lock.owns_lock()) SweepLocked(now);
  }
}

void OutlierDetector::Sweep() {
  std::lock_guard lock(mu_);
  SweepLocked(NowNs());
}

void OutlierDetector::TryEject(const Endpoint& endpoint, CallOutcome cause, std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  auto& stats = *endpoint.stats;
  if (stats.ejected.load(std::memory_order_relaxed)) return;
  std::size_t total = snapshot_ ? snapshot_->endpoints.size() : 0;
  std::size_t ejected = 0;
  bool member = false;
  if (snapshot_) {
    for (const auto& e : snapshot_->endpoints) {
      if (e.ejected()) ++ejected;
      if (e.stats == endpoint.stats) member = true;
    }
  }
  // Small services: allow one ejection as soon as there are two endpoints,
  // never the last endpoint that is still in the picks.
  std::size_t allowed = total * options_.max_ejected_percent / 100;
  if (total >= 2) allowed = std::max<std::size_t>(allowed, 1);
  allowed = std::min(allowed, total == 0 ? 0 : total - 1);
  if (!member || ejected >= allowed) {
    log::Get().debug("outlier {}: not ejecting {} ({}): {} of {} already ejected", service_, endpoint.instance.id,
                     CallOutcomeName(cause), ejected, total);
    return;
  }
  auto times = stats.times_ejected.fetch_add(1, std::memory_order_relaxed) + 1;
  auto duration = std::min(options_.base_ejection * static_cast<std::int64_t>(times), options_.max_ejection);
  stats.ejected_until_ns.store(now_ns + ToNs(duration), std::memory_order_relaxed);
  stats.consecutive_failures.store(0, std::memory_order_relaxed);
  stats.ejected.store(true, std::memory_order_relaxed);
  ejections_.fetch_add(1, std::memory_order_relaxed);
  log::Get().warn("outlier {}: ejected {} ({}) for {} ms after {}", service_, endpoint.instance.id, endpoint.address,
                  duration.count(), CallOutcomeName(cause));
  if (listener_) {
    listener_(OutlierEvent{OutlierEvent::Kind::kEjected, service_, endpoint.instance.id, endpoint.address, cause,
                           duration});
  }
}

void OutlierDetector::SweepLocked(std::int64_t now_ns) {
  if (!snapshot_) return;
  for (const auto& endpoint : snapshot_->endpoints) {
    auto& stats = *endpoint.stats;
    auto until = stats.ejected_until_ns.load(std::memory_order_relaxed);
    if (stats.ejected.load(std::memory_order_relaxed)) {
      if (now_ns < until) continue;
      stats.ejected.store(false, std::memory_order_relaxed);
      stats.consecutive_failures.store(0, std::memory_order_relaxed);
      returns_.fetch_add(1, std::memory_order_relaxed);
      log::Get().info("outlier {}: {} ({}) returns to the picks", service_, endpoint.instance.id, endpoint.address);
      if (listener_) {
        listener_(OutlierEvent{OutlierEvent::Kind::kReturned, service_, endpoint.instance.id, endpoint.address,
                               CallOutcome::kSuccess, std::chrono::milliseconds(0)});
      }
    } else if (stats.times_ejected.load(std::memory_order_relaxed) > 0 &&
               now_ns >= until + ToNs(options_.base_ejection)) {
      // Healthy for a whole base interval since the last ejection ended: the
      // next ejection, if any, will be shorter.
      stats.times_ejected.fetch_sub(1, std::memory_order_relaxed);
      stats.ejected_until_ns.store(until + ToNs(options_.base_ejection), std::memory_order_relaxed);
    }
  }
}

namespace {

class OutlierBalancer final : public Balancer {
 public:
  OutlierBalancer(std::unique_ptr<Balancer> child, std::shared_ptr<OutlierDetector> detector)
      : child_(std::move(child)), detector_(std::move(detector)) {}

  std::string_view name() const override { return child_->name(); }

  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    detector_->Update(snapshot);
    return child_->Build(std::move(snapshot));
  }

 private:
  std::unique_ptr<Balancer> child_;
  std::shared_ptr<OutlierDetector> detector_;
};

}  // namespace

std::unique_ptr<Balancer> WithOutlierDetection(std::unique_ptr<Balancer> child,
                                               std::shared_ptr<OutlierDetector> detector) {
  return std::make_unique<OutlierBalancer>(std::move(child), std::move(detector));
}

}  // namespace disco
