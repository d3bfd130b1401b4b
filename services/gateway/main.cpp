// gateway: the disco demo's single entry point — a discovery-aware reverse
// proxy (/api/users/* → user-service, /api/orders/* → order-service) with
// edge JWT checks, per-client rate limiting, Prometheus service discovery
// and a live dashboard.
#include <spdlog/fmt/fmt.h>

#include <CLI/CLI.hpp>

#include "common/revocation.h"
#include "common/runtime.h"
#include "common/startup.h"
#include "gateway/catalog.h"
#include "gateway/observability.h"
#include "gateway/proxy.h"
#include "gateway/route_config.h"
#include "gateway/shared_rate_limiter.h"

int main(int argc, char** argv) {
  using namespace disco;
  BlockStopSignals();

  service::ServiceConfig config;
  config.service = "gateway";
  config.port = 8080;
  std::string routes_file;
  std::optional<double> rate_limit;
  std::optional<double> rate_burst;
  bool trust_forwarded_for = false;
  int catalog_refresh_ms = 2000;

  CLI::App app{
      "gateway: the disco demo's entry point — discovery-aware reverse proxy, edge JWT check, rate "
      "limiting, Prometheus service discovery (/sd/prometheus) and a live dashboard (/dashboard)",
      "gateway"};
  service::AddCommonFlags(app, config);
  // The shared flags that only make sense for a service with storage or
  // that issues tokens.
  for (const char* storage_flag : {"--db", "--db-connections", "--sqlite-sync", "--jwt-ttl"}) {
    app.remove_option(app.get_option(storage_flag));
  }
  app.add_option(
         "--routes", routes_file,
         "Route config (JSON: prefixes → services, policy, retries, timeouts, auth, rate "
         "limits); default: /api/users → user-service (its login and register: 2 requests/s "
         "per client, burst 10), /api/orders → order-service")
      ->envname("DISCO_ROUTES")
      ->check(CLI::ExistingFile);
  app.add_option("--rate-limit", rate_limit,
                 "Requests per second allowed per client (overrides the route config; 0: off; "
                 "default 1000)")
      ->envname("DISCO_RATE_LIMIT")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--rate-burst", rate_burst,
                 "Burst allowed per client (overrides the route config; default 2000)")
      ->envname("DISCO_RATE_BURST")
      ->check(CLI::Range(1.0, 1e9));
  app.add_flag("--trust-forwarded-for", trust_forwarded_for,
               "Rate-limit by the last X-Forwarded-For entry instead of the peer address (only "
               "behind a proxy "
               "that appends it)")
      ->envname("DISCO_TRUST_FORWARDED_FOR");
  app.add_option("--catalog-refresh-ms", catalog_refresh_ms,
                 "How often the list of services is read for /sd/prometheus and the dashboard")
      ->envname("DISCO_CATALOG_REFRESH_MS")
      ->check(CLI::Range(100, 600'000))
      ->capture_default_str();
  app.footer(
      "Environment: every flag has a DISCO_* twin (DISCO_PORT, DISCO_REGISTRY, DISCO_ROUTES, "
      "...);\n"
      "DISCO_JWT_SECRET holds the JWT secret (needed only when a route has \"auth\": true).\n"
      "Endpoints: /api/... (proxied), /dashboard, /dashboard/state, /dashboard/series, "
      "/sd/prometheus, /metrics, "
      "/health.\n"
      "Example: gateway --registry etcd://127.0.0.1:2379 --port 8080");
  if (auto exit = service::ParseFlags(app, argc, argv, config)) return *exit;

  return service::GuardMain(config, [&] {
    auto& log = service::Log();
    auto gateway_config = routes_file.empty()
                              ? Result<gateway::GatewayConfig>(gateway::DefaultGatewayConfig())
                              : gateway::LoadGatewayConfig(routes_file);
    if (!gateway_config) {
      log.error("gateway: --routes: {}", gateway_config.error().message);
      return 2;
    }
    if (rate_limit) gateway_config->rate_limit.requests_per_second = *rate_limit;
    if (rate_burst) gateway_config->rate_limit.burst = *rate_burst;
    if (trust_forwarded_for) gateway_config->rate_limit.trust_forwarded_for = true;

    std::unique_ptr<service::JwtCodec> jwt;
    bool needs_jwt = false;
    for (const auto& route : gateway_config->routes) needs_jwt = needs_jwt || route.auth;
    if (needs_jwt) {
      auto loaded = service::LoadJwt(config, "no token from user-service will pass the edge check",
                                     "a route checks JWTs at the edge: ");
      if (!loaded) return loaded.error();
      jwt = std::move(*loaded);
    }

    auto tls = service::LoadTls(config);
    if (!tls) return tls.error();
    auto registry = service::ConnectRegistry(config);
    if (!registry) return registry.error();
    gateway_config->upstream_tls = tls->client;
    auto proxy = gateway::Proxy::Make(**registry, *gateway_config, jwt.get());
    if (!proxy) {
      log.error("gateway: {}", proxy.error().message);
      return 2;
    }
    auto redis = service::ConnectRedis(config, "shared rate limits and revocations");
    if (!redis) return redis.error();
    std::unique_ptr<gateway::SharedRateLimiter> shared_limiter;
    if (*redis) {
      shared_limiter = std::make_unique<gateway::SharedRateLimiter>(**redis, (*proxy)->metrics());
    }
    service::TokenRevocations revocations(jwt ? redis->get() : nullptr, (*proxy)->metrics());
    (*proxy)->UseSharedState(shared_limiter.get(), &revocations);
    (*proxy)->Prepare(std::chrono::seconds(2));
    for (const auto& route : gateway_config->routes) {
      std::string limit;
      if (route.rate_limit) {
        limit = fmt::format(", {} requests/s per client, burst {}",
                            route.rate_limit->requests_per_second, route.rate_limit->burst);
      }
      log.info("route {} → {} (policy {}, {} attempt(s), per try {} ms, deadline {} ms{}{})",
               route.prefix, route.service, route.policy, route.max_attempts,
               route.per_try_timeout.count(), route.deadline.count(),
               route.auth ? ", JWT checked here" : "", limit);
    }
    const auto& rl = gateway_config->rate_limit;
    if (rl.requests_per_second > 0) {
      log.info("rate limit: {} requests/s per client, burst {}, client = {}, {}",
               rl.requests_per_second, rl.burst,
               rl.trust_forwarded_for ? "last X-Forwarded-For entry" : "peer address",
               shared_limiter ? "shared by the replicas through redis (local when it cannot answer)"
                              : "counted by this replica alone");
    } else {
      log.info("rate limit: off");
    }

    gateway::Catalog catalog(**registry, **proxy, std::chrono::milliseconds(catalog_refresh_ms));
    // The id is known before start-up unless the port is chosen by the OS.
    if (config.port != 0) service::FinishConfig(config, config.port);
    gateway::GatewayIdentity identity{config.id.empty() ? config.service : config.id,
                                      (*registry)->url()};

    gateway::TrafficHistory history(catalog, **proxy);

    http::Router router;
    gateway::AddObservabilityRoutes(router, catalog, **proxy, identity, &history);
    (*proxy)->AddRoutes(router);
    service::ServiceRuntime runtime(config, **registry, *tls);
    return runtime.Serve(std::move(router));
  });
}
