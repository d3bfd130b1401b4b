// A resolver's metrics, computed at scrape time from the counters its
// endpoints and outlier detector keep: nothing extra on the pick path.
//
//   per endpoint {service, instance, address}: disco_balancer_picks_total,
//     disco_endpoint_{successes,failures}_total, disco_endpoint_active_requests,
//     disco_endpoint_ejected
//   per service: disco_resolver_endpoints, disco_resolver_staleness_seconds,
//     disco_resolver_held_endpoints, and with outlier detection
//     disco_outlier_{ejections,returns}_total, disco_outlier_ejected_endpoints
//
// Thread safety: the collectors run on the scraping thread and read only
// what Resolver's accessors and relaxed atomics give.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <vector>

#include "disco/metrics.h"
#include "disco/outlier.h"
#include "disco/resolver.h"

namespace disco {

// Registers the collectors; scrapes read `resolver`, `detector` (may be
// null: no outlier metrics) and `held` (endpoints kept through a recovery
// grace) until the handles are destroyed.
// REQUIRES: all three outlive the returned handles.
std::vector<std::unique_ptr<CollectorHandle>> AddResolverMetrics(
    MetricsRegistry& metrics, const Resolver& resolver, const OutlierDetector* detector,
    const std::atomic<std::size_t>& held);

}  // namespace disco
