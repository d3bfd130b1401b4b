// The gateway's configuration: which path prefixes go to which service, and
// how (balancer policy, retries, timeouts, edge JWT check), plus rate
// limiting and outlier detection. Read from a JSON file (--routes FILE); with
// no file the demo's routes apply:
//
//   {
//     "routes": [
//       {"prefix": "/api/users/login", "service": "user-service",
//        "rate_limit": {"requests_per_second": 2, "burst": 10}},
//       {"prefix": "/api/users/register", "service": "user-service",
//        "rate_limit": {"requests_per_second": 2, "burst": 10}},
//       {"prefix": "/api/users",  "service": "user-service",  "policy": "round_robin",
//        "auth": false, "strip_prefix": false,
//        "max_attempts": 2, "per_try_timeout_ms": 5000, "deadline_ms": 10000,
//        "retry_budget_percent": 20, "retry_budget_min": 10},
//       {"prefix": "/api/orders", "service": "order-service"}
//     ],
//     "rate_limit": {"requests_per_second": 1000, "burst": 2000, "trust_forwarded_for": false},
//     "outlier_detection": {"consecutive_failures": 5, "base_ejection_ms": 30000,
//                           "max_ejection_ms": 300000, "max_ejected_percent": 50},
//     "response_limit": 8388608
//   }
//
// Every field but "prefix" and "service" is optional. Routes to one service
// share its channel (one balancer, one retry budget), so they must agree on
// "policy", "retry_budget_percent" and "retry_budget_min": a route that
// leaves one out takes it from the first route to that service that sets it,
// and two that set it differently make the gateway refuse to start, naming
// the route; attempts and timeouts are
// each route's own. A prefix matches itself
// and everything below it ("/api/users" matches "/api/users" and
// "/api/users/7", not "/api/usersX"); the longest prefix wins. A route's own
// "rate_limit" (per client, as the global one) applies on top of the global
// one: the demo's login and register routes get a low one, since each of
// their requests costs a bcrypt upstream.
//
// Thread safety: plain values, built once at start-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/outlier.h"
#include "disco/tls.h"

namespace disco::gateway {

// A route's own per-client limit, on top of the gateway's global one.
struct RouteRateLimit {
  double requests_per_second = 2;  // > 0
  double burst = 10;
};

struct RouteConfig {
  std::string prefix;   // "/api/users": no trailing slash, starts with '/'
  std::string service;  // registry name of the upstream service
  std::string policy = "round_robin";
  bool auth = false;          // verify the Bearer JWT here before proxying
  bool strip_prefix = false;  // forward "/api/users/7" as "/7"
  int max_attempts = 2;       // 1 = no retry
  std::chrono::milliseconds per_try_timeout{5000};
  std::chrono::milliseconds deadline{10000};
  double retry_budget_percent = 20.0;
  std::uint32_t retry_budget_min = 10;  // as http::ClientOptions
  std::optional<RouteRateLimit> rate_limit{};  // none: only the global limit
};

struct RateLimitConfig {
  double requests_per_second = 1000;  // per client; 0 turns rate limiting off
  double burst = 2000;                // bucket size: requests allowed at once after a quiet spell
  // Take the client from the last X-Forwarded-For entry (the address our
  // trusted front proxy saw) instead of the connection's peer. Only safe
  // behind a proxy that appends it; otherwise any client picks its own key.
  bool trust_forwarded_for = false;
};

// Idle keep-alive connections to upstreams (http::ClientOptions): per I/O
// thread and upstream instance. Requests in flight to one instance beyond
// max_idle_per_endpoint close their connection when answered (and the next
// ones open new ones), so it should be at least the concurrency one
// instance sees. Connections idle longer than idle_timeout are closed at
// the next request to that instance or, up to a second later, at a request
// to any instance on the same I/O thread (no timer; docs/gateway.md).
struct UpstreamPoolConfig {
  std::size_t max_idle_per_endpoint = 256;  // 0: a new connection per request
  std::chrono::milliseconds idle_timeout{15'000};
};

struct GatewayConfig {
  std::vector<RouteConfig> routes;
  UpstreamPoolConfig upstream_pool;
  RateLimitConfig rate_limit;
  std::optional<OutlierOptions> outlier_detection = OutlierOptions{};  // null in JSON: off
  std::size_t response_limit = 8 * 1024 * 1024;  // larger upstream answers → 502
  // Not from the JSON: the gateway's --tls-ca (TLS to upstreams; null: HTTP).
  std::shared_ptr<tls::Config> upstream_tls{};
};

// The demo's routes: /api/users → user-service, /api/orders → order-service,
// and /api/users/login and /api/users/register (bcrypt upstream) with a
// per-client limit of 2 requests/s, burst 10.
GatewayConfig DefaultGatewayConfig();

// Parses and validates (prefixes, service names, policies, ranges).
// Errors: kInvalidArgument naming the field.
Result<GatewayConfig> ParseGatewayConfig(std::string_view json);
Result<GatewayConfig> LoadGatewayConfig(const std::string& path);

// Whether `path` is `prefix` or below it.
bool PrefixMatches(std::string_view prefix, std::string_view path);

}  // namespace disco::gateway
