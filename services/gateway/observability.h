// The gateway's observability endpoints (the proxy routes live in proxy.h):
//
//   GET /sd/prometheus    Prometheus HTTP service discovery (http_sd_configs):
//                         one target group per instance of every service
//                         in the catalog, [{"targets":["host:port"],
//                         "labels":{"__meta_disco_service":...,
//                         "__meta_disco_instance":..., ...}}]
//   GET /dashboard        the live dashboard page (embedded at build time)
//   GET /dashboard/state  what the page polls: registry, gateway, totals and
//                         every service with its instances and counters
//   GET /dashboard/series the last minutes for the charts: per-instance
//                         rates, per-service latency, failures, retries,
//                         ejections and the registry event timeline
//                         (gateway/history.h; 404 without a history)
//
// /metrics is the server's own (every disco binary serves it).
//
// Thread safety: the handlers run on any I/O thread; they only read the
// catalog (a copied list), snapshots and atomics. Both referenced objects
// must outlive the router.
#pragma once

#include <string>

#include "disco/http/router.h"
#include "gateway/catalog.h"
#include "gateway/history.h"
#include "gateway/proxy.h"

namespace disco::gateway {

struct GatewayIdentity {
  std::string id;        // the gateway's instance id in the registry
  std::string registry;  // the registry URL (without secrets)
};

// `history` may be null (no charts); it must outlive the router too.
void AddObservabilityRoutes(http::Router& router, const Catalog& catalog, const Proxy& proxy,
                            const GatewayIdentity& identity,
                            const TrafficHistory* history = nullptr);

// The bodies, for tests.
std::string PrometheusTargetsJson(const Catalog& catalog);
std::string DashboardStateJson(const Catalog& catalog, const Proxy& proxy,
                               const GatewayIdentity& identity);

// The dashboard page (services/gateway/dashboard/index.html, embedded).
std::string_view DashboardHtml();

}  // namespace disco::gateway
