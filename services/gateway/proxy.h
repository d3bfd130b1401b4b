// Proxy: the gateway's reverse-proxy handler, one route per configured prefix.
//
// Per request: rate limit by client (429 + Retry-After; the route's own
// limit, then the global one; with Redis the buckets are shared by every
// replica and the local ones are the fallback, see UseSharedState), the edge
// JWT check when the route asks for it (401, the same code as user-service;
// with Redis also 401 for a token revoked by logout), then the
// request goes to the route's service through its http::Channel (resolver +
// balancer + outlier detection, keep-alive pools, retries within a budget),
// with the route's per-try timeout, attempts and overall deadline. Routes to
// one service share its channel, so they must agree on its policy and retry
// budget (Make says which routes do not). Request and response
// bodies pass through, buffered and bounded (request: the server's body
// limit → 413; response: the route config's response_limit → 502).
//
// Headers: hop-by-hop headers (Connection and the ones it names, Keep-Alive,
// TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*) are dropped both ways;
// X-Request-Id is propagated (or made) and echoed; X-Forwarded-For gets the
// client's address appended, X-Forwarded-Host and -Proto are set;
// X-Client-Address (the client as rate-limited here) and X-Request-Timeout-Ms
// (the route's per-try timeout, capped by its deadline) replace any the
// client sent: the upstream's admission control shares its expensive work
// fairly by the first and drops work the gateway will have given up on by
// the second (services/common/admission.h). Retried
// only when safe, by the channel's own rule (ClientRequest::retry_safe):
// idempotent methods, or a request that reaches the upstream with an
// Idempotency-Key header.
//
// Upstream failures become JSON errors: 502 bad_gateway (reset, broken or
// oversized answer), 503 upstream_unavailable (no healthy instance, nothing
// accepts connections, retry budget exhausted), 504 upstream_timeout. An
// upstream's own HTTP answer, whatever its status, is passed through.
//
// Thread safety: Handle runs on any server I/O thread at once; everything it
// touches is the library's channels (thread-safe), the rate limiter (sharded
// locks) and relaxed atomics. Routes are fixed after construction.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/jwt.h"
#include "common/revocation.h"
#include "disco/http/channel.h"
#include "disco/http/client.h"
#include "disco/http/router.h"
#include "disco/metrics.h"
#include "disco/registry.h"
#include "gateway/rate_limiter.h"
#include "gateway/route_config.h"
#include "gateway/shared_rate_limiter.h"

namespace disco::gateway {

struct ProxyTotals {
  std::uint64_t requests = 0;  // requests that reached a proxy route
  std::uint64_t retries = 0;
  std::uint64_t ejections = 0;
  std::uint64_t rate_limited = 0;
  std::uint64_t unauthorized = 0;  // refused by the edge JWT check
  std::uint64_t budget_exhausted = 0;
};

class Proxy {
 public:
  struct Route {
    RouteConfig config;
    // The service's channel, shared by every route to it (the login route
    // and /api/users): one resolver, one balancer, one retry budget.
    http::Channel* channel = nullptr;
    http::CallOptions call;  // the route's attempts and timeouts
    std::string pattern;                   // router pattern, e.g. "/api/users/{rest...}"
    std::unique_ptr<RateLimiter> limiter;  // the route's own limit; null: none
    std::string timeout_ms;                // sent as X-Request-Timeout-Ms
  };

  // `registry` must outlive the proxy. `jwt` is needed (non-null) when a
  // route has auth; it must outlive the proxy. Errors: kInvalidArgument.
  static Result<std::unique_ptr<Proxy>> Make(Registry& registry, GatewayConfig config,
                                             const service::JwtCodec* jwt,
                                             MetricsRegistry* metrics = nullptr);

  // Shares the rate limits with every replica through Redis (the local
  // limiters become the fallback), and refuses tokens revoked by logout on
  // the routes with auth. Either may be null. Call before serving; both must
  // outlive the proxy.
  void UseSharedState(SharedRateLimiter* limiter, service::TokenRevocations* revocations);

  // Adds one any-method route per configured prefix.
  void AddRoutes(http::Router& router);

  // Starts resolving every route's service and waits up to `timeout` in
  // total for the first snapshots (start-up only, blocks).
  void Prepare(std::chrono::milliseconds timeout);

  const std::vector<std::unique_ptr<Route>>& routes() const { return routes_; }
  const GatewayConfig& config() const { return config_; }
  ProxyTotals totals() const;
  // Where the channels' metrics go (the dashboard's history reads their
  // latency histograms there).
  MetricsRegistry& metrics() const { return *metrics_; }

  http::Awaitable<http::Response> Handle(Route& route, http::Request& request);

 private:
  // Handle()'s synchronous halves, kept out of the coroutine: GCC keeps every
  // local of a coroutine in its frame, and a frame above 1 KiB misses both
  // Asio's frame recycling and glibc's tcache (a slow malloc per request).
  // The refusal (rate limit, edge auth), or the request for the upstream.
  // `limited`: the rate limits were already applied (shared ones); `claims`:
  // where the edge check's claims go, for the revocation check (may be null).
  std::variant<http::Response, http::ClientRequest> Forward(Route& route, http::Request& request,
                                                           bool limited = false,
                                                           service::JwtClaims* claims = nullptr);
  // The client as rate-limited: the peer, or the trusted X-Forwarded-For entry.
  std::string_view ClientOf(const http::Request& request) const;
  // This replica's own limits: the refusal, if any.
  std::optional<http::Response> LocalLimit(Route& route, std::string_view client);
  // Handle() with the shared state: the shared limits (else the local ones),
  // then Forward, then the revocation check.
  http::Awaitable<http::Response> HandleShared(Route& route, http::Request& request);
  http::Awaitable<std::optional<http::Response>> SharedLimit(Route& route,
                                                             const http::Request& request);
  // The client's answer (or failure) as the gateway's response.
  http::Response Answer(const Route& route, const http::Request& request,
                        Result<http::ClientResponse>& answer);

  Proxy(GatewayConfig config, const service::JwtCodec* jwt, MetricsRegistry& metrics);

  GatewayConfig config_;
  const service::JwtCodec* jwt_;
  MetricsRegistry* metrics_;
  std::unique_ptr<http::ChannelSet> channels_;
  std::unique_ptr<RateLimiter> limiter_;  // null: rate limiting off
  SharedRateLimiter* shared_limiter_ = nullptr;
  service::TokenRevocations* revocations_ = nullptr;
  std::vector<std::unique_ptr<Route>> routes_;
  Family<Counter>* refused_;  // gateway_refused_total{route,reason}
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> rate_limited_{0};
  std::atomic<std::uint64_t> unauthorized_{0};
};

}  // namespace disco::gateway
