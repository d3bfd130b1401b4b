// The gateway's route config, rate limiter and the router features it uses
// (rest captures, any-method routes): pure logic, injected clock.
#include <gtest/gtest.h>

#include "disco/http/client.h"
#include "disco/http/router.h"
#include "gateway/history.h"
#include "gateway/rate_limiter.h"
#include "gateway/route_config.h"

namespace disco::gateway {
namespace {

using namespace std::chrono_literals;

TEST(GatewayConfig, DefaultRoutesAreTheDemos) {
  auto config = DefaultGatewayConfig();
  ASSERT_EQ(config.routes.size(), 4u);
  EXPECT_EQ(config.routes[0].prefix, "/api/users");
  EXPECT_EQ(config.routes[0].service, "user-service");
  EXPECT_FALSE(config.routes[0].rate_limit);
  EXPECT_EQ(config.routes[1].prefix, "/api/orders");
  EXPECT_EQ(config.routes[1].service, "order-service");
  // A bcrypt upstream per request: a client's own limit, far below the global one.
  for (std::size_t i : {2u, 3u}) {
    EXPECT_EQ(config.routes[i].service, "user-service");
    ASSERT_TRUE(config.routes[i].rate_limit) << config.routes[i].prefix;
    EXPECT_LE(config.routes[i].rate_limit->requests_per_second, 5);
  }
  EXPECT_EQ(config.routes[2].prefix, "/api/users/login");
  EXPECT_EQ(config.routes[3].prefix, "/api/users/register");
  EXPECT_TRUE(config.outlier_detection.has_value());
  EXPECT_GT(config.rate_limit.requests_per_second, 0);
}

// Routes to one service share its channel: a setting given once holds for
// every route to that service, so a config that set it on one route only
// (as docs/gateway.md's example did) keeps starting when a default changes.
TEST(GatewayConfig, AChannelSettingSetOnOneRouteHoldsForEveryRouteToThatService) {
  auto config = ParseGatewayConfig(R"({
    "routes": [{"prefix": "/api/users", "service": "user-service", "policy": "least_request",
                "retry_budget_percent": 10, "retry_budget_min": 3},
               {"prefix": "/api/users/login", "service": "user-service"},
               {"prefix": "/api/orders", "service": "order-service"}]})");
  ASSERT_TRUE(config) << config.error().message;
  const auto& login = config->routes.at(1);
  EXPECT_EQ(login.policy, "least_request");
  EXPECT_EQ(login.retry_budget_percent, 10);
  EXPECT_EQ(login.retry_budget_min, 3u);
  const auto& orders = config->routes.at(2);  // another service: the defaults
  EXPECT_EQ(orders.policy, "round_robin");
  EXPECT_EQ(orders.retry_budget_min, RouteConfig{}.retry_budget_min);
}

TEST(GatewayConfig, ParsesEveryField) {
  auto config = ParseGatewayConfig(R"({
    "_why": "keys starting with _ are comments",
    "routes": [{"prefix": "/api/users/", "service": "user-service", "policy": "least_request", "auth": true,
                "strip_prefix": true, "max_attempts": 3, "per_try_timeout_ms": 250, "deadline_ms": 900,
                "retry_budget_percent": 10, "retry_budget_min": 1, "_note": {"any": "value"}}],
    "rate_limit": {"requests_per_second": 5, "burst": 10, "trust_forwarded_for": true},
    "outlier_detection": {"consecutive_failures": 2, "base_ejection_ms": 1000, "max_ejection_ms": 5000,
                          "max_ejected_percent": 34, "eject_on_refused": false},
    "upstream_pool": {"max_idle_per_endpoint": 300, "idle_timeout_ms": 2500},
    "response_limit": 4096})");
  ASSERT_TRUE(config) << config.error().message;
  const auto& r = config->routes.at(0);
  EXPECT_EQ(r.prefix, "/api/users");  // trailing slash dropped
  EXPECT_EQ(r.policy, "least_request");
  EXPECT_TRUE(r.auth);
  EXPECT_TRUE(r.strip_prefix);
  EXPECT_EQ(r.max_attempts, 3);
  EXPECT_EQ(r.per_try_timeout, 250ms);
  EXPECT_EQ(r.deadline, 900ms);
  EXPECT_EQ(r.retry_budget_percent, 10);
  EXPECT_EQ(r.retry_budget_min, 1u);
  EXPECT_EQ(config->rate_limit.requests_per_second, 5);
  EXPECT_EQ(config->rate_limit.burst, 10);
  EXPECT_TRUE(config->rate_limit.trust_forwarded_for);
  ASSERT_TRUE(config->outlier_detection);
  EXPECT_EQ(config->outlier_detection->consecutive_failures, 2u);
  EXPECT_EQ(config->outlier_detection->max_ejected_percent, 34u);
  EXPECT_EQ(config->outlier_detection->base_ejection, 1000ms);
  EXPECT_EQ(config->outlier_detection->max_ejection, 5000ms);
  EXPECT_FALSE(config->outlier_detection->eject_on_refused);
  EXPECT_EQ(config->response_limit, 4096u);
  EXPECT_EQ(config->upstream_pool.max_idle_per_endpoint, 300u);
  EXPECT_EQ(config->upstream_pool.idle_timeout, 2500ms);
  EXPECT_FALSE(r.rate_limit);
  auto limited = ParseGatewayConfig(
      R"({"routes":[{"prefix":"/login","service":"s","rate_limit":{"requests_per_second":0.5,"burst":3}},
                    {"prefix":"/other","service":"s","rate_limit":null}]})");
  ASSERT_TRUE(limited) << limited.error().message;
  ASSERT_TRUE(limited->routes[0].rate_limit);
  EXPECT_EQ(limited->routes[0].rate_limit->requests_per_second, 0.5);
  EXPECT_EQ(limited->routes[0].rate_limit->burst, 3);
  EXPECT_FALSE(limited->routes[1].rate_limit);
  auto off = ParseGatewayConfig(
      R"({"routes":[{"prefix":"/","service":"s"}],"outlier_detection":null,"upstream_pool":null})");
  ASSERT_TRUE(off);
  EXPECT_FALSE(off->outlier_detection);
  EXPECT_EQ(off->upstream_pool.max_idle_per_endpoint, UpstreamPoolConfig{}.max_idle_per_endpoint);
  // The gateway's defaults are the client's: one figure in the docs.
  EXPECT_EQ(UpstreamPoolConfig{}.max_idle_per_endpoint, http::ClientOptions{}.max_idle_per_endpoint);
  EXPECT_EQ(UpstreamPoolConfig{}.idle_timeout, http::ClientOptions{}.pool_idle_timeout);
}

TEST(GatewayConfig, RejectsBadConfigNamingTheField) {
  struct Case {
    const char* json;
    const char* mentions;
  } cases[] = {
      {"[]", "JSON object"},
      {"{}", "routes"},
      {R"({"routes":[]})", "routes"},
      {R"({"routes":[{"service":"s"}]})", "routes[0].prefix"},
      {R"({"routes":[{"prefix":"api","service":"s"}]})", "routes[0].prefix"},
      {R"({"routes":[{"prefix":"/a/*","service":"s"}]})", "routes[0].prefix"},
      {R"({"routes":[{"prefix":"/a","service":"bad name"}]})", "routes[0].service"},
      {R"({"routes":[{"prefix":"/a","service":"s","policy":"fastest"}]})", "routes[0].policy"},
      {R"({"routes":[{"prefix":"/a","service":"s","max_attempts":0}]})", "routes[0].max_attempts"},
      {R"({"routes":[{"prefix":"/a","service":"s","auth":"yes"}]})", "routes[0].auth"},
      {R"({"routes":[{"prefix":"/a","service":"s"},{"prefix":"/a/","service":"t"}]})", "twice"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"rate_limit":{"burst":0}})",
       "rate_limit.burst"},
      {R"({"routes":[{"prefix":"/a","service":"s","rate_limit":{"requests_per_second":0}}]})",
       "routes[0].rate_limit.requests_per_second"},
      {R"({"routes":[{"prefix":"/a","service":"s","rate_limit":5}]})", "routes[0].rate_limit"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"outlier_detection":{"max_ejected_percent":101}})",
       "max_ejected_percent"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":64})", "upstream_pool"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":{"max_idle_per_endpoint":-1}})",
       "upstream_pool.max_idle_per_endpoint"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":{"max_idle_per_endpoint":"9"}})",
       "upstream_pool.max_idle_per_endpoint"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":{"idle_timeout_ms":0}})",
       "upstream_pool.idle_timeout_ms"},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":{"max_idle_per_endpoint":0.5}})",
       "upstream_pool.max_idle_per_endpoint must be a whole number"},
      {R"({"routes":[{"prefix":"/a","service":"s","max_attempts":2.5}]})",
       "routes[0].max_attempts must be a whole number"},
      // A misspelt key is named, wherever it is.
      {R"({"route":[{"prefix":"/a","service":"s"}]})", "config: unknown key \"route\""},
      {R"({"routes":[{"prefix":"/a","service":"s","retries":2,"timeout":5}]})",
       "routes[0]: unknown key \"retries\", \"timeout\""},
      {R"({"routes":[{"prefix":"/a","service":"s","max_attempt":2}]})",
       "routes[0]: unknown key \"max_attempt\""},
      {R"({"routes":[{"prefix":"/a","service":"s","rate_limit":{"rps":5}}]})",
       "routes[0].rate_limit: unknown key \"rps\""},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"rate_limit":{"trust_forwarded":true}})",
       "rate_limit: unknown key \"trust_forwarded\""},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"outlier_detection":{"failures":3}})",
       "outlier_detection: unknown key \"failures\""},
      {R"({"routes":[{"prefix":"/a","service":"s"}],"upstream_pool":{"max_idle":0}})",
       "upstream_pool: unknown key \"max_idle\""},
  };
  for (const auto& c : cases) {
    auto parsed = ParseGatewayConfig(c.json);
    ASSERT_FALSE(parsed) << c.json;
    EXPECT_NE(parsed.error().message.find(c.mentions), std::string::npos)
        << c.json << ": " << parsed.error().message;
  }
}

TEST(GatewayConfig, PrefixMatchesWholeSegments) {
  EXPECT_TRUE(PrefixMatches("/api/users", "/api/users"));
  EXPECT_TRUE(PrefixMatches("/api/users", "/api/users/7"));
  EXPECT_FALSE(PrefixMatches("/api/users", "/api/usersX"));
  EXPECT_TRUE(PrefixMatches("/", "/anything"));
}

TEST(RateLimiter, BurstThenRefillAtTheRate) {
  auto now = std::chrono::steady_clock::time_point(std::chrono::seconds(1000));
  RateLimiter limiter(2.0, 3.0, 1000, [&] { return now; });
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("a").allowed) << i;
  auto refused = limiter.Acquire("a");
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 500ms);
  EXPECT_TRUE(limiter.Acquire("b").allowed) << "keys have their own buckets";
  now += 250ms;
  EXPECT_FALSE(limiter.Acquire("a").allowed);
  now += 250ms;
  EXPECT_TRUE(limiter.Acquire("a").allowed);
  EXPECT_FALSE(limiter.Acquire("a").allowed);
  now += 10s;  // never more than the burst
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("a").allowed);
  EXPECT_FALSE(limiter.Acquire("a").allowed);
}

TEST(RateLimiter, ForgetsQuietClientsAndStaysBounded) {
  auto now = std::chrono::steady_clock::time_point(std::chrono::seconds(1000));
  RateLimiter limiter(10.0, 10.0, 16 * 4, [&] { return now; });
  for (int i = 0; i < 1000; ++i) limiter.Acquire("client-" + std::to_string(i));
  EXPECT_LE(limiter.tracked(), 16u * 4u);
  now += 2s;  // every bucket is full again
  limiter.Acquire("late");
  EXPECT_LE(limiter.tracked(), 16u * 4u);
}

TEST(RouterRest, RestCaptureAndAnyMethod) {
  http::Router router;
  int which = 0;
  auto handler = [&which](int n) {
    return [&which, n](http::Request&) -> http::Awaitable<http::Response> {
      which = n;
      co_return http::Response{};
    };
  };
  router.Add("*", "/api/users/{rest...}", handler(1));
  router.Add("GET", "/api/users/me", handler(2));
  router.Add("*", "/{rest...}", handler(3));
  std::vector<std::pair<std::string_view, std::string_view>> params;
  auto m = router.Match("DELETE", "/api/users/7/x", params);
  ASSERT_EQ(m.kind, http::RouteMatch::Kind::kFound);
  EXPECT_EQ(m.pattern, "/api/users/{rest...}");
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "rest");
  EXPECT_EQ(params[0].second, "7/x");
  params.clear();
  EXPECT_EQ(router.Match("GET", "/api/users", params).pattern, "/api/users/{rest...}");
  EXPECT_EQ(params.at(0).second, "");
  params.clear();
  EXPECT_EQ(router.Match("GET", "/api/users/me", params).pattern, "/api/users/me");
  params.clear();
  EXPECT_EQ(router.Match("POST", "/api/users/me", params).pattern, "/api/users/{rest...}");
  params.clear();
  EXPECT_EQ(router.Match("GET", "/api/usersX", params).pattern, "/{rest...}");
  params.clear();
  EXPECT_EQ(router.Match("GET", "/", params).pattern, "/{rest...}");
}

// A route below another (the gateway's /api/users/login under /api/users)
// wins for its own paths only.
TEST(RouterRest, TheLongerPrefixWins) {
  http::Router router;
  auto handler = [](http::Request&) -> http::Awaitable<http::Response> {
    co_return http::Response{};
  };
  router.Add("*", "/api/users/{rest...}", handler);
  router.Add("*", "/api/users/login/{rest...}", handler);
  std::vector<std::pair<std::string_view, std::string_view>> params;
  EXPECT_EQ(router.Match("POST", "/api/users/login", params).pattern, "/api/users/login/{rest...}");
  params.clear();
  EXPECT_EQ(router.Match("POST", "/api/users/loginX", params).pattern, "/api/users/{rest...}");
  params.clear();
  EXPECT_EQ(router.Match("GET", "/api/users/7", params).pattern, "/api/users/{rest...}");
}

}  // namespace
// The dashboard's latency quantiles, from one second's bucket counts.
TEST(GatewayHistory, BucketQuantileInterpolatesInsideTheBucket) {
  const std::vector<double> bounds{0.001, 0.002, 0.005, 0.01};
  // 100 calls: 50 under 1 ms, 40 in (1, 2] ms, 9 in (2, 5], 1 past 10 ms.
  const std::vector<std::uint64_t> counts{50, 40, 9, 0, 1};
  EXPECT_NEAR(*gateway::BucketQuantile(bounds, counts, 0.5), 0.001, 1e-12);
  EXPECT_NEAR(*gateway::BucketQuantile(bounds, counts, 0.7), 0.0015, 1e-12);
  EXPECT_NEAR(*gateway::BucketQuantile(bounds, counts, 0.99), 0.005, 1e-12);
  EXPECT_EQ(*gateway::BucketQuantile(bounds, counts, 1.0), 0.01) << "+Inf reads as the last bound";
  EXPECT_FALSE(gateway::BucketQuantile(bounds, std::vector<std::uint64_t>(5, 0), 0.5));
  EXPECT_FALSE(gateway::BucketQuantile(bounds, std::vector<std::uint64_t>{1, 2}, 0.5))
      << "counts must match the bounds";
}

}  // namespace disco::gateway
