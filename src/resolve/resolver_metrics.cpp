#include "resolve/resolver_metrics.h"

#include <chrono>

namespace disco {

std::vector<std::unique_ptr<CollectorHandle>> AddResolverMetrics(
    MetricsRegistry& metrics, const Resolver& resolver, const OutlierDetector* detector,
    const std::atomic<std::size_t>& held) {
  std::vector<std::unique_ptr<CollectorHandle>> collectors;
  auto per_endpoint = [&resolver](auto value) {
    return [&resolver, value](std::vector<CollectedSample>& out) {
      auto current = resolver.snapshot();
      for (const auto& endpoint : current->endpoints) {
        out.push_back({{resolver.service(), endpoint.instance.id, endpoint.address},
                       static_cast<double>(value(*endpoint.stats))});
      }
    };
  };
  collectors.push_back(
      metrics.AddCollector("disco_balancer_picks_total", "Times the balancer picked this endpoint",
                           CollectedType::kCounter, {"service", "instance", "address"},
                           per_endpoint([](const EndpointStats& s) { return s.picks(); })));
  collectors.push_back(metrics.AddCollector(
      "disco_endpoint_failures_total",
      "Calls to this endpoint that failed (connect error, reset, timeout, 5xx)",
      CollectedType::kCounter, {"service", "instance", "address"},
      per_endpoint([](const EndpointStats& s) { return s.failures(); })));
  collectors.push_back(metrics.AddCollector(
      "disco_endpoint_successes_total", "Calls to this endpoint that succeeded",
      CollectedType::kCounter, {"service", "instance", "address"},
      per_endpoint([](const EndpointStats& s) { return s.successes(); })));
  collectors.push_back(
      metrics.AddCollector("disco_endpoint_active_requests", "Calls to this endpoint in flight now",
                           CollectedType::kGauge, {"service", "instance", "address"},
                           per_endpoint([](const EndpointStats& s) {
                             return s.active_requests.load(std::memory_order_relaxed);
                           })));
  collectors.push_back(metrics.AddCollector(
      "disco_endpoint_ejected", "1 while outlier detection keeps this endpoint out of the picks",
      CollectedType::kGauge, {"service", "instance", "address"},
      per_endpoint([](const EndpointStats& s) {
        return s.ejected.load(std::memory_order_relaxed) ? 1 : 0;
      })));
  collectors.push_back(metrics.AddCollector(
      "disco_resolver_endpoints", "Endpoints in the resolver's current snapshot",
      CollectedType::kGauge, {"service"}, [&resolver](std::vector<CollectedSample>& out) {
        out.push_back(
            {{resolver.service()}, static_cast<double>(resolver.snapshot()->endpoints.size())});
      }));
  collectors.push_back(metrics.AddCollector(
      "disco_resolver_staleness_seconds",
      "How long the registry has been unreachable for this service's view (0 while connected)",
      CollectedType::kGauge, {"service"}, [&resolver](std::vector<CollectedSample>& out) {
        out.push_back(
            {{resolver.service()}, std::chrono::duration<double>(resolver.Staleness()).count()});
      }));
  collectors.push_back(metrics.AddCollector(
      "disco_resolver_held_endpoints",
      "Endpoints kept in the picks after a registry outage although the registry does not "
      "list them (yet), during the recovery grace",
      CollectedType::kGauge, {"service"}, [&resolver, &held](std::vector<CollectedSample>& out) {
        out.push_back({{resolver.service()}, static_cast<double>(held.load())});
      }));
  if (detector != nullptr) {
    collectors.push_back(metrics.AddCollector(
        "disco_outlier_ejections_total", "Endpoints ejected by outlier detection",
        CollectedType::kCounter, {"service"},
        [&resolver, detector](std::vector<CollectedSample>& out) {
          out.push_back({{resolver.service()}, static_cast<double>(detector->ejections_total())});
        }));
    collectors.push_back(metrics.AddCollector(
        "disco_outlier_returns_total",
        "Ejected endpoints returned to the picks after their ejection time",
        CollectedType::kCounter, {"service"},
        [&resolver, detector](std::vector<CollectedSample>& out) {
          out.push_back({{resolver.service()}, static_cast<double>(detector->returns_total())});
        }));
    collectors.push_back(metrics.AddCollector(
        "disco_outlier_ejected_endpoints", "Endpoints ejected now", CollectedType::kGauge,
        {"service"}, [&resolver, detector](std::vector<CollectedSample>& out) {
          out.push_back({{resolver.service()}, static_cast<double>(detector->ejected_now())});
        }));
  }
  return collectors;
}

}  // namespace disco
