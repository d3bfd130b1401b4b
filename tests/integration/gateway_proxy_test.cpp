// The gateway's proxy behaviour over real loopback HTTP: the gateway's own
// pieces (Proxy, Catalog, observability routes on an http::Server, as main()
// assembles them) in front of real upstream servers that register in a real
// registry. The registry is etcd when its test fixture is in the tree, the
// in-process memory registry otherwise (every case runs on both).
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/jwt.h"
#include "disco/http/client.h"
#include "disco/http/server.h"
#include "disco/metrics.h"
#include "disco/registry.h"
#include "fixture/http_client.h"
#include "fixture/run_awaitable.h"
#include "fixture/service_process.h"
#include "fixture/test_certs.h"
#include "fixture/upstream_server.h"
#include "fixture/util.h"
#include "gateway/catalog.h"
#include "gateway/observability.h"
#include "gateway/proxy.h"
#include "gateway/route_config.h"

#if __has_include("fixture/etcd_server.h")
#include "fixture/etcd_server.h"
#define DISCO_HAVE_ETCD_FIXTURE 1
#endif

namespace disco {
namespace {

using testing::HttpRequest;
using testing::HttpResponse;
using testing::RawUpstream;
using testing::TestUpstream;
using testing::WaitFor;
using namespace std::chrono_literals;

// One in-process gateway, assembled as services/gateway/main.cpp does.
class InProcessGateway {
 public:
  InProcessGateway(Registry& registry, gateway::GatewayConfig config, const service::JwtCodec* jwt,
                   std::size_t body_limit = 64 * 1024,
                   std::shared_ptr<tls::Config> tls = nullptr) {
    auto made = gateway::Proxy::Make(registry, std::move(config), jwt, &metrics_);
    if (!made) throw std::runtime_error(made.error().ToString());
    proxy_ = std::move(*made);
    catalog_ = std::make_unique<gateway::Catalog>(registry, *proxy_, 100ms);
    identity_ = {"gateway-test", registry.url()};
    gateway::HistoryOptions history;
    history.interval = 100ms;  // ten samples a second: tests wait less
    history.watch = 20ms;
    history_ = std::make_unique<gateway::TrafficHistory>(*catalog_, *proxy_, history);
    http::Router router;
    gateway::AddObservabilityRoutes(router, *catalog_, *proxy_, identity_, history_.get());
    proxy_->AddRoutes(router);
    http::ServerOptions options;
    options.threads = 2;
    options.service = "gateway";
    options.instance_id = "gateway-test";
    options.access_log = false;
    options.body_limit = body_limit;
    options.metrics = &metrics_;
    options.tls = std::move(tls);  // HTTPS to the gateway; its upstreams stay plain
    server_ = std::make_unique<http::Server>(std::move(router), options);
    if (auto ok = server_->Start(); !ok) throw std::runtime_error(ok.error().ToString());
  }
  ~InProcessGateway() { server_->Stop(); }

  std::uint16_t port() const { return server_->port(); }
  gateway::Proxy& proxy() { return *proxy_; }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  MetricsRegistry metrics_;
  std::unique_ptr<gateway::Proxy> proxy_;
  std::unique_ptr<gateway::Catalog> catalog_;
  std::unique_ptr<gateway::TrafficHistory> history_;
  gateway::GatewayIdentity identity_;
  std::unique_ptr<http::Server> server_;
};

gateway::RouteConfig Route(std::string prefix, std::string service) {
  gateway::RouteConfig route;
  route.prefix = std::move(prefix);
  route.service = std::move(service);
  route.per_try_timeout = 1000ms;
  route.deadline = 3000ms;
  return route;
}

gateway::GatewayConfig Config(std::vector<gateway::RouteConfig> routes) {
  gateway::GatewayConfig config;
  config.routes = std::move(routes);
  config.rate_limit.requests_per_second = 0;  // off unless a test turns it on
  config.response_limit = 256 * 1024;
  return config;
}

class GatewayProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef DISCO_HAVE_ETCD_FIXTURE
    etcd_ = std::make_unique<testing::EtcdServer>();
    url_ = etcd_->url();
#else
    url_ = "memory://gateway-test";
#endif
    auto made = MakeRegistry(url_);
    ASSERT_TRUE(made) << made.error().ToString();
    registry_ = std::move(*made);
  }

  // Waits until the gateway routes `target` to an instance (200).
  void WaitRouted(std::uint16_t port, const std::string& target, int expected = 200) {
    ASSERT_TRUE(WaitFor([&] { return HttpRequest(port, "GET", target).status == expected; }, 10s))
        << "the gateway never answered " << expected << " for " << target;
  }

  // Calls `target` until both upstreams have served (both are in the picks).
  void WaitBothServe(std::uint16_t port, const std::string& target, TestUpstream& a,
                     TestUpstream& b) {
    ASSERT_TRUE(WaitFor(
        [&] {
          HttpRequest(port, "GET", target);
          return a.hits() > 0 && b.hits() > 0;
        },
        10s))
        << "both upstreams never served " << target;
  }

#ifdef DISCO_HAVE_ETCD_FIXTURE
  std::unique_ptr<testing::EtcdServer> etcd_;
#endif
  std::string url_;
  std::unique_ptr<Registry> registry_;
  service::JwtCodec jwt_{testing::kTestJwtSecret, std::chrono::hours(1)};
};

TEST_F(GatewayProxyTest, RoutesByPrefixToTheRightService) {
  TestUpstream users(*registry_, "user-service", "users-1");
  TestUpstream orders(*registry_, "order-service", "orders-1");
  InProcessGateway gw(
      *registry_,
      Config({Route("/api/users", "user-service"), Route("/api/orders", "order-service")}),
      nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  WaitRouted(gw.port(), "/api/orders");

  auto user = HttpRequest(gw.port(), "GET", "/api/users/7/echo?x=1");
  ASSERT_EQ(user.status, 200) << user.raw;
  EXPECT_EQ(user.Json()["instance"], "users-1");
  EXPECT_EQ(user.Json()["target"], "/api/users/7/echo?x=1");
  auto order = HttpRequest(gw.port(), "POST", "/api/orders/echo", R"({"a":1})",
                           {{"Content-Type", "application/json"}});
  ASSERT_EQ(order.status, 200) << order.raw;
  EXPECT_EQ(order.Json()["instance"], "orders-1");
  EXPECT_EQ(order.Json()["method"], "POST");
  EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/orders").Json()["instance"],
            "orders-1");  // the prefix itself

  // Not below any prefix: the gateway's own JSON 404, nothing proxied.
  users.ResetHits();
  for (const char* path : {"/api/usersX", "/api/other", "/"}) {
    auto miss = HttpRequest(gw.port(), "GET", path);
    EXPECT_EQ(miss.status, 404) << path;
    EXPECT_EQ(miss.Json()["error"], "not_found") << path;
  }
  EXPECT_EQ(users.hits(), 0u);
}

// upstream_pool reaches the channels' transport: with no idle connections
// kept, every request opens one; with the default pool, sequential requests
// reuse one per gateway I/O thread; a connection idle longer than
// idle_timeout_ms is not reused, and one a past peak left is closed while
// the steady load reuses others.
TEST_F(GatewayProxyTest, UpstreamPoolSettingsDecideConnectionReuse) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto route = Route("/api/users", "user-service");
  route.max_attempts = 1;  // a slow attempt retried would open a connection more
  route.per_try_timeout = 10s;
  route.deadline = 10s;
  auto with_gateway = [&](gateway::UpstreamPoolConfig pool, auto&& test) {
    auto config = Config({route});
    config.upstream_pool = pool;
    InProcessGateway gw(*registry_, config, nullptr);
    WaitRouted(gw.port(), "/api/users/echo");
    test(gw.port());
  };
  auto opened_by = [&](gateway::UpstreamPoolConfig pool, int requests, auto pause) {
    std::uint64_t opened = 0;
    with_gateway(pool, [&](std::uint16_t port) {
      const std::uint64_t before = users.accepted_connections();
      const std::uint64_t hits = users.hits();
      for (int i = 0; i < requests; ++i) {
        std::this_thread::sleep_for(pause);
        ASSERT_EQ(HttpRequest(port, "GET", "/api/users/echo").status, 200);
      }
      EXPECT_EQ(users.hits() - hits, static_cast<std::uint64_t>(requests)) << "one attempt each";
      opened = users.accepted_connections() - before;
    });
    return opened;
  };
  EXPECT_EQ(opened_by({.max_idle_per_endpoint = 0}, 10, 0ms), 10u);
  EXPECT_LE(opened_by({}, 10, 0ms), 2u) << "the in-process gateway has 2 I/O threads";
  EXPECT_EQ(opened_by({.idle_timeout = 100ms}, 4, 300ms), 4u)
      << "kept 15 s, they would reuse at most 2";

  // A peak of 8 slow requests at once leaves 8 idle connections; then one
  // request every 20 ms keeps the newest warm while the rest age past
  // 300 ms, and are closed.
  with_gateway({.idle_timeout = 300ms}, [&](std::uint16_t port) {
    users.SetHangMs(200);
    users.SetMode(TestUpstream::Mode::kHang);
    std::vector<std::thread> peak;
    for (int i = 0; i < 8; ++i)
      peak.emplace_back([port] { HttpRequest(port, "GET", "/api/users/echo"); });
    for (auto& t : peak) t.join();
    users.SetMode(TestUpstream::Mode::kNormal);
    EXPECT_GE(users.open_connections(), 8u);
    const auto until = std::chrono::steady_clock::now() + 800ms;
    while (std::chrono::steady_clock::now() < until) {
      ASSERT_EQ(HttpRequest(port, "GET", "/api/users/echo").status, 200);
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(WaitFor([&] { return users.open_connections() <= 2; }, 2s))
        << users.open_connections() << " upstream connections still open";
  });

  // An instance that leaves the registry gets no more requests, so no take
  // to it ever closes its idle connections: the pool's periodic sweep must.
  // A timeout of 1 s: a stall of the test or the gateway shorter than that
  // cannot expire users-2's connections, which are in use.
  with_gateway({.idle_timeout = 1s}, [&](std::uint16_t port) {
    TestUpstream others(*registry_, "user-service", "users-2");
    ASSERT_TRUE(WaitFor(
        [&] {
          return HttpRequest(port, "GET", "/api/users/echo").status == 200 && others.hits() > 0;
        },
        5s));
    ASSERT_GE(users.open_connections(), 1u);
    users.Deregister();
    // Until the gateway's snapshot no longer holds users-1: 10 answers in a
    // row from users-2.
    int in_a_row = 0;
    const auto gone_by = std::chrono::steady_clock::now() + 5s;
    while (in_a_row < 10 && std::chrono::steady_clock::now() < gone_by) {
      const auto before = users.hits();
      ASSERT_EQ(HttpRequest(port, "GET", "/api/users/echo").status, 200);
      in_a_row = users.hits() == before ? in_a_row + 1 : 0;
    }
    ASSERT_EQ(in_a_row, 10) << "users-1 still gets requests after leaving";
    // Timeout 1 s + one sweep period (1 s) + slack, with traffic (the
    // sweep runs on a take, on the thread that makes it: the gateway's
    // accepts alternate between its two I/O threads, so both sweep).
    const std::uint64_t warm = others.accepted_connections();
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (users.open_connections() > 0 && std::chrono::steady_clock::now() < until) {
      ASSERT_EQ(HttpRequest(port, "GET", "/api/users/echo").status, 200);
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(users.open_connections(), 0u) << "idle connections to the instance that left";
    // A sweep closes only what expired: users-2's connections, used every
    // 40 ms or so on each thread, stay.
    EXPECT_LE(others.accepted_connections() - warm, 1u)
        << "the sweep closed connections still in use";
  });
}

TEST_F(GatewayProxyTest, StripPrefixForwardsTheRest) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto route = Route("/u", "user-service");
  route.strip_prefix = true;
  InProcessGateway gw(*registry_, Config({route}), nullptr);
  WaitRouted(gw.port(), "/u/echo");
  EXPECT_EQ(HttpRequest(gw.port(), "GET", "/u/a/echo?q=2").Json()["target"], "/a/echo?q=2");
}

nlohmann::json HeaderValues(const nlohmann::json& echo, const std::string& name) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& pair : echo["headers"]) {
    if (pair[0] == name) out.push_back(pair[1]);
  }
  return out;
}

TEST_F(GatewayProxyTest, RequestIdForwardedForAndHopByHopHeaders) {
  TestUpstream users(*registry_, "user-service", "users-1");
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service")}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");

  // A caller's request id goes upstream and comes back.
  auto given = HttpRequest(gw.port(), "GET", "/api/users/echo", {},
                           {{"X-Request-Id", "req-42"},
                            {"X-Forwarded-For", "203.0.113.9"},
                            {"Connection", "X-Hop-Named"},
                            {"X-Hop-Named", "secret"},
                            {"Keep-Alive", "timeout=5"},
                            {"TE", "trailers"},
                            {"Proxy-Authorization", "Basic abc"},
                            {"Upgrade", "websocket"},
                            {"X-Custom", "kept"},
                            {"Authorization", "Bearer passes-through"}});
  ASSERT_EQ(given.status, 200) << given.raw;
  auto echo = given.Json();
  EXPECT_EQ(given.Header("x-request-id"), "req-42");
  EXPECT_EQ(HeaderValues(echo, "x-request-id"), nlohmann::json::array({"req-42"}));
  // X-Forwarded-For: the caller's chain with the peer appended.
  EXPECT_EQ(HeaderValues(echo, "x-forwarded-for"),
            nlohmann::json::array({"203.0.113.9, 127.0.0.1"}));
  EXPECT_EQ(HeaderValues(echo, "x-forwarded-proto"), nlohmann::json::array({"http"}));
  EXPECT_EQ(HeaderValues(echo, "x-custom"), nlohmann::json::array({"kept"}));
  EXPECT_EQ(HeaderValues(echo, "authorization"), nlohmann::json::array({"Bearer passes-through"}));
  for (const char* hop : {"x-hop-named", "keep-alive", "te", "proxy-authorization", "upgrade"}) {
    EXPECT_TRUE(HeaderValues(echo, hop).empty()) << hop << " reached the upstream";
  }
  // Connection upstream is the gateway's own keep-alive, never the caller's.
  for (const auto& value : HeaderValues(echo, "connection")) EXPECT_EQ(value, "keep-alive");

  // No id given: the gateway makes one, sends it upstream and echoes it.
  auto made = HttpRequest(gw.port(), "GET", "/api/users/echo");
  std::string id = made.Header("x-request-id");
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(HeaderValues(made.Json(), "x-request-id"), nlohmann::json::array({id}));
  EXPECT_EQ(HeaderValues(made.Json(), "x-forwarded-for"), nlohmann::json::array({"127.0.0.1"}));

  // Response: hop-by-hop headers dropped, repeated headers all kept.
  auto cookies = HttpRequest(gw.port(), "GET", "/api/users/cookies");
  ASSERT_EQ(cookies.status, 200);
  int set_cookie = 0;
  for (const auto& [name, value] : cookies.headers) {
    if (name == "set-cookie") ++set_cookie;
    EXPECT_NE(name, "keep-alive");
    EXPECT_NE(name, "proxy-authenticate");
  }
  EXPECT_EQ(set_cookie, 2);
  EXPECT_EQ(cookies.Header("x-upstream"), "yes");
}

// Behind a gateway serving HTTPS, the upstream learns that its caller used
// HTTPS (X-Forwarded-Proto), as it needs to for redirects and Secure cookies.
TEST_F(GatewayProxyTest, OverTlsTheUpstreamIsToldTheCallerUsedHttps) {
  testing::TempDir dir{"disco-gateway-tls"};
  testing::TestCa ca{dir.path(), "gateway"};
  const auto issued = ca.Issue("gateway", {});
  auto server_tls = tls::Config::Load(tls::Role::kServer, {issued.cert_file, issued.key_file, ""});
  ASSERT_TRUE(server_tls) << server_tls.error().ToString();
  auto client_tls = tls::Config::Load(tls::Role::kClient, {"", "", ca.ca_file()});
  ASSERT_TRUE(client_tls) << client_tls.error().ToString();

  TestUpstream users(*registry_, "user-service", "users-1");
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service")}), nullptr,
                      64 * 1024, *server_tls);
  auto caller_registry = MakeRegistry("memory://gateway-tls-caller");
  ASSERT_TRUE(caller_registry);
  http::ClientOptions options;
  options.tls = *client_tls;
  options.max_attempts = 1;
  http::Client caller(**caller_registry, options);
  auto echo = [&]() -> Result<http::ClientResponse> {
    http::ClientRequest request;
    request.url = "https://127.0.0.1:" + std::to_string(gw.port()) + "/api/users/echo";
    request.headers = {{"X-Forwarded-Proto", "http"}};  // a caller's claim, replaced
    return testing::RunAwaitable(caller.Send(std::move(request)));
  };
  ASSERT_TRUE(WaitFor([&] {
    auto answer = echo();
    return answer && answer->status == 200;
  }, 10s)) << "the gateway never routed over HTTPS";
  auto answer = echo();
  ASSERT_TRUE(answer) << answer.error().ToString();
  auto json = nlohmann::json::parse(answer->body);
  EXPECT_EQ(HeaderValues(json, "x-forwarded-proto"), nlohmann::json::array({"https"}));
}

TEST_F(GatewayProxyTest, BodiesPassThroughBothWays) {
  TestUpstream users(*registry_, "user-service", "users-1");
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service")}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");

  std::string body;
  for (int i = 0; i < 50'000; ++i) body += static_cast<char>('a' + i % 26);
  auto echoed =
      HttpRequest(gw.port(), "PUT", "/api/users/echo", body, {{"Content-Type", "text/plain"}});
  ASSERT_EQ(echoed.status, 200);
  EXPECT_EQ(echoed.Json()["body"], body);
  EXPECT_EQ(HeaderValues(echoed.Json(), "content-type"), nlohmann::json::array({"text/plain"}));

  auto big = HttpRequest(gw.port(), "GET", "/api/users/big?n=200000");
  ASSERT_EQ(big.status, 200);
  EXPECT_EQ(big.body, std::string(200'000, 'x'));
  EXPECT_EQ(big.Header("content-type"), "application/octet-stream");
}

TEST_F(GatewayProxyTest, LimitsAnswer413And431And502) {
  TestUpstream users(*registry_, "user-service", "users-1");
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service")}), nullptr,
                      /*body_limit=*/64 * 1024);
  WaitRouted(gw.port(), "/api/users/echo");
  users.ResetHits();

  auto too_big = HttpRequest(gw.port(), "POST", "/api/users/echo", std::string(100'000, 'b'));
  EXPECT_EQ(too_big.status, 413);
  EXPECT_EQ(too_big.Json()["error"], "payload_too_large");
  auto huge_header =
      HttpRequest(gw.port(), "GET", "/api/users/echo", {}, {{"X-Big", std::string(20'000, 'h')}});
  EXPECT_EQ(huge_header.status, 431);
  EXPECT_EQ(users.hits(), 0u) << "a refused request reached the upstream";

  // An upstream answer above the response limit (256 KiB here) is a 502.
  auto huge_answer = HttpRequest(gw.port(), "GET", "/api/users/big?n=300000");
  EXPECT_EQ(huge_answer.status, 502);
  EXPECT_EQ(huge_answer.Json()["error"], "bad_gateway");
  EXPECT_NE(huge_answer.Json()["message"].get<std::string>().find("larger than"),
            std::string::npos);
}

TEST_F(GatewayProxyTest, NoInstanceIs503) {
  InProcessGateway gw(*registry_, Config({Route("/api/ghosts", "ghost-service")}), nullptr);
  auto answer = HttpRequest(gw.port(), "GET", "/api/ghosts/1");
  EXPECT_EQ(answer.status, 503) << answer.raw;
  EXPECT_EQ(answer.Json()["error"], "upstream_unavailable");
  EXPECT_NE(answer.Json()["message"].get<std::string>().find("ghost-service"), std::string::npos);
  EXPECT_NE(answer.Json()["message"].get<std::string>().find(answer.Header("x-request-id")),
            std::string::npos);
}

TEST_F(GatewayProxyTest, UpstreamTimeoutIs504) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto route = Route("/api/users", "user-service");
  route.per_try_timeout = 300ms;
  route.max_attempts = 1;
  InProcessGateway gw(*registry_, Config({route}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  users.SetMode(TestUpstream::Mode::kHang);
  users.SetHangMs(3000);
  auto started = std::chrono::steady_clock::now();
  auto answer = HttpRequest(gw.port(), "GET", "/api/users/echo");
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(answer.status, 504) << answer.raw;
  EXPECT_EQ(answer.Json()["error"], "upstream_timeout");
  EXPECT_LT(took, 2000ms);
}

TEST_F(GatewayProxyTest, DeadlineBoundsRetries) {
  TestUpstream a(*registry_, "user-service", "users-a");
  TestUpstream b(*registry_, "user-service", "users-b");
  auto route = Route("/api/users", "user-service");
  route.per_try_timeout = 400ms;
  route.max_attempts = 5;
  route.deadline = 600ms;
  InProcessGateway gw(*registry_, Config({route}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  a.SetMode(TestUpstream::Mode::kHang);
  b.SetMode(TestUpstream::Mode::kHang);
  auto started = std::chrono::steady_clock::now();
  auto answer = HttpRequest(gw.port(), "GET", "/api/users/echo");
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(answer.status, 504);
  EXPECT_LT(took, 1500ms) << "the overall deadline was not respected (five tries take 2 s)";
  EXPECT_LE(a.hits() + b.hits(), 2u + 2u);  // the WaitRouted hits plus at most two tries
}

TEST_F(GatewayProxyTest, ResetAndGarbageAre502) {
  RawUpstream reset(*registry_, "reset-service", "reset-1", RawUpstream::Mode::kReset);
  RawUpstream garbage(*registry_, "garbage-service", "garbage-1", RawUpstream::Mode::kGarbage);
  InProcessGateway gw(
      *registry_, Config({Route("/reset", "reset-service"), Route("/garbage", "garbage-service")}),
      nullptr);
  ASSERT_TRUE(
      WaitFor([&] { return HttpRequest(gw.port(), "POST", "/reset/x").status == 502; }, 10s));
  auto resets = reset.hits();
  auto answer = HttpRequest(gw.port(), "POST", "/reset/x", "{}");
  EXPECT_EQ(answer.status, 502) << answer.raw;
  EXPECT_EQ(answer.Json()["error"], "bad_gateway");
  EXPECT_EQ(reset.hits(), resets + 1) << "a POST without Idempotency-Key was retried";

  ASSERT_TRUE(
      WaitFor([&] { return HttpRequest(gw.port(), "GET", "/garbage/x").status == 502; }, 10s));
  auto bad = HttpRequest(gw.port(), "GET", "/garbage/x");
  EXPECT_EQ(bad.status, 502);
  EXPECT_EQ(bad.Json()["error"], "bad_gateway");
  // Two different failures, named as such in the calls' outcomes: a reset
  // is not a malformed answer.
  auto metrics = HttpRequest(gw.port(), "GET", "/metrics").body;
  EXPECT_NE(metrics.find(R"(http_client_requests_total{service="reset-service",outcome="reset"})"),
            std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find(R"(http_client_requests_total{service="garbage-service",outcome="bad_answer"})"),
      std::string::npos)
      << metrics;
}

TEST_F(GatewayProxyTest, RetriesOnlyWhatIsSafe) {
  TestUpstream bad(*registry_, "user-service", "users-bad");
  TestUpstream good(*registry_, "user-service", "users-good");
  auto route = Route("/api/users", "user-service");
  route.max_attempts = 2;
  auto config = Config({route});
  config.outlier_detection.reset();  // keep the bad instance in the picks
  InProcessGateway gw(*registry_, config, nullptr);
  WaitBothServe(gw.port(), "/api/users/echo", bad, good);
  bad.SetMode(TestUpstream::Mode::kStatus503);

  // GET: every request ends on the good instance.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/users/echo").status, 200);
  // POST with an Idempotency-Key: retry-safe, so also always 200.
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(HttpRequest(gw.port(), "POST", "/api/users/echo", "{}",
                          {{"Idempotency-Key", "k" + std::to_string(i)}})
                  .status,
              200);
  }
  // POST without: never retried, so the bad instance's 503 comes through
  // (round robin sends every other request there).
  bad.ResetHits();
  good.ResetHits();
  int passed_through = 0;
  for (int i = 0; i < 10; ++i) {
    auto answer = HttpRequest(gw.port(), "POST", "/api/users/echo", "{}");
    if (answer.status == 503) {
      ++passed_through;
      EXPECT_EQ(answer.Json()["error"], "overloaded")
          << "the upstream's own answer is passed through";
    }
  }
  EXPECT_EQ(bad.hits() + good.hits(), 10u) << "a plain POST was retried";
  EXPECT_EQ(static_cast<std::uint64_t>(passed_through), bad.hits());
  EXPECT_GT(passed_through, 0);

  // A key named by Connection is hop-by-hop: it never reaches the upstream,
  // which so cannot act on the request once. The client's rule looks at what
  // is forwarded: not retried either.
  bad.ResetHits();
  good.ResetHits();
  for (int i = 0; i < 10; ++i) {
    HttpRequest(
        gw.port(), "POST", "/api/users/echo", "{}",
        {{"Idempotency-Key", "hop" + std::to_string(i)}, {"Connection", "Idempotency-Key"}});
  }
  EXPECT_EQ(bad.hits() + good.hits(), 10u) << "a POST whose key was not forwarded was retried";
  EXPECT_GT(bad.hits(), 0u);

  // TRACE is idempotent (RFC 9110 9.2.2): retried like GET.
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(HttpRequest(gw.port(), "TRACE", "/api/users/echo").status, 200);
}

TEST_F(GatewayProxyTest, RetryBudgetLimitsUpstreamHits) {
  TestUpstream a(*registry_, "user-service", "users-a");
  TestUpstream b(*registry_, "user-service", "users-b");
  auto route = Route("/api/users", "user-service");
  route.max_attempts = 3;
  route.per_try_timeout = 2000ms;
  route.deadline = 5000ms;
  route.retry_budget_percent = 20;
  route.retry_budget_min = 2;
  auto config = Config({route});
  config.outlier_detection.reset();
  InProcessGateway gw(*registry_, config, nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  // Every instance fails slowly: requests pile up, each wants two retries.
  a.SetHangMs(300);
  b.SetHangMs(300);
  a.SetMode(TestUpstream::Mode::kSlow503);
  b.SetMode(TestUpstream::Mode::kSlow503);
  a.ResetHits();
  b.ResetHits();
  constexpr int kRequests = 30;
  std::atomic<int> unavailable{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&] {
      if (HttpRequest(gw.port(), "GET", "/api/users/echo").status == 503) unavailable.fetch_add(1);
    });
  }
  for (auto& t : clients) t.join();
  auto stats = gw.proxy().totals();
  std::uint64_t hits = a.hits() + b.hits();
  EXPECT_EQ(unavailable.load(), kRequests);
  // Every hit is a first try or a retry the budget granted; nothing else.
  EXPECT_EQ(hits, kRequests + stats.retries);
  EXPECT_GT(stats.budget_exhausted, 0u) << "the budget never refused a retry";
  EXPECT_LT(hits, 3u * kRequests) << "retries were not limited";
  std::printf(
      "retry budget: %d requests, %llu upstream hits, %llu retries, %llu refused by the budget\n",
      kRequests, static_cast<unsigned long long>(hits),
      static_cast<unsigned long long>(stats.retries),
      static_cast<unsigned long long>(stats.budget_exhausted));
  auto metrics = gw.metrics().Render();
  EXPECT_NE(metrics.find("http_client_retry_budget_exhausted_total{service=\"user-service\"}"),
            std::string::npos);
  EXPECT_NE(
      metrics.find("http_client_retries_total{service=\"user-service\",reason=\"server_error\"}"),
      std::string::npos)
      << metrics;
}

TEST_F(GatewayProxyTest, RateLimitAnswers429ThenRefills) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto config = Config({Route("/api/users", "user-service")});
  // One token a second: the seven requests below must all land before one
  // comes back, and a slow (sanitized) run can take a good part of a second.
  config.rate_limit.requests_per_second = 1;
  config.rate_limit.burst = 5;
  InProcessGateway gw(*registry_, config, nullptr);
  // Before the burst: wait until routed without spending tokens on 503s.
  ASSERT_TRUE(WaitFor(
      [&] {
        return !gw.proxy()
                    .routes()[0]
                    ->channel->resolver()
                    .snapshot()
                    ->empty();
      },
      10s));
  users.ResetHits();
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/users/echo").status, 200) << i;
  auto limited = HttpRequest(gw.port(), "GET", "/api/users/echo");
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.Json()["error"], "rate_limited");
  EXPECT_EQ(limited.Header("retry-after"), "1");
  EXPECT_EQ(users.hits(), 5u);
  // Another client key (a forwarded address) does not help while it is untrusted.
  EXPECT_EQ(
      HttpRequest(gw.port(), "GET", "/api/users/echo", {}, {{"X-Forwarded-For", "198.51.100.7"}})
          .status,
      429);
  std::this_thread::sleep_for(1100ms);  // a token back
  EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/users/echo").status, 200);
  EXPECT_EQ(gw.proxy().totals().rate_limited, 2u);
}

TEST_F(GatewayProxyTest, TrustedForwardedForKeysByTheForwardedClient) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto config = Config({Route("/api/users", "user-service")});
  config.rate_limit.requests_per_second = 0.5;
  config.rate_limit.burst = 1;
  config.rate_limit.trust_forwarded_for = true;
  InProcessGateway gw(*registry_, config, nullptr);
  ASSERT_TRUE(WaitFor(
      [&] {
        return !gw.proxy()
                    .routes()[0]
                    ->channel->resolver()
                    .snapshot()
                    ->empty();
      },
      10s));
  auto as = [&](const std::string& client) {
    return HttpRequest(gw.port(), "GET", "/api/users/echo", {},
                       {{"X-Forwarded-For", "10.9.9.9, " + client}})
        .status;
  };
  EXPECT_EQ(as("192.0.2.1"), 200);
  EXPECT_EQ(as("192.0.2.1"), 429);
  EXPECT_EQ(as("192.0.2.2"), 200);  // another client behind the trusted proxy
}

TEST_F(GatewayProxyTest, EdgeJwtRejectsBeforeTheUpstream) {
  TestUpstream orders(*registry_, "order-service", "orders-1");
  auto route = Route("/api/orders", "order-service");
  route.auth = true;
  InProcessGateway gw(*registry_, Config({route}), &jwt_);
  auto token = jwt_.Issue(7, "alice");
  ASSERT_TRUE(token);
  ASSERT_TRUE(WaitFor(
      [&] {
        return HttpRequest(gw.port(), "GET", "/api/orders", {},
                           {{"Authorization", "Bearer " + *token}})
                   .status == 200;
      },
      10s));
  orders.ResetHits();

  auto expired = jwt_.Issue(7, "alice", std::chrono::system_clock::now() - std::chrono::hours(3));
  service::JwtCodec other(std::string(40, 'z'), std::chrono::hours(1));
  auto forged = other.Issue(7, "alice");
  struct Case {
    const char* name;
    testing::Headers headers;
    const char* error;
  } cases[] = {
      {"missing", {}, "missing_token"},
      {"not bearer", {{"Authorization", "Basic YWxpY2U6cHc="}}, "invalid_token"},
      {"garbage", {{"Authorization", "Bearer not.a.jwt"}}, "invalid_token"},
      {"expired", {{"Authorization", "Bearer " + *expired}}, "invalid_token"},
      {"wrong secret", {{"Authorization", "Bearer " + *forged}}, "invalid_token"},
  };
  for (const auto& c : cases) {
    auto answer = HttpRequest(gw.port(), "GET", "/api/orders/1", {}, c.headers);
    EXPECT_EQ(answer.status, 401) << c.name;
    EXPECT_EQ(answer.Json()["error"], c.error) << c.name;
    EXPECT_EQ(answer.Header("www-authenticate"), "Bearer") << c.name;
  }
  EXPECT_EQ(orders.hits(), 0u) << "a request without a valid token reached the upstream";
  auto ok = HttpRequest(gw.port(), "GET", "/api/orders/echo", {},
                        {{"Authorization", "Bearer " + *token}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(HeaderValues(ok.Json(), "authorization"), nlohmann::json::array({"Bearer " + *token}));
  EXPECT_EQ(gw.proxy().totals().unauthorized, 5u);
}

TEST_F(GatewayProxyTest, ServiceDiscoveryDashboardAndMetrics) {
  TestUpstream u1(*registry_, "user-service", "users-1");
  TestUpstream u2(*registry_, "user-service", "users-2");
  TestUpstream other(*registry_, "billing", "billing-1");  // not routed: still discovered
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service")}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  for (int i = 0; i < 10; ++i) HttpRequest(gw.port(), "GET", "/api/users/echo");

  nlohmann::json targets;
  ASSERT_TRUE(WaitFor(
      [&] {
        targets = HttpRequest(gw.port(), "GET", "/sd/prometheus").Json();
        return targets.is_array() && targets.size() == 3;
      },
      10s))
      << targets.dump();
  std::set<std::string> seen;
  for (const auto& group : targets) {
    ASSERT_EQ(group["targets"].size(), 1u);
    seen.insert(group["labels"]["__meta_disco_service"].get<std::string>() + "/" +
                group["labels"]["__meta_disco_instance"].get<std::string>() + "@" +
                group["targets"][0].get<std::string>());
  }
  EXPECT_EQ(seen,
            (std::set<std::string>{"billing/billing-1@127.0.0.1:" + std::to_string(other.port()),
                                   "user-service/users-1@127.0.0.1:" + std::to_string(u1.port()),
                                   "user-service/users-2@127.0.0.1:" + std::to_string(u2.port())}));

  auto state = HttpRequest(gw.port(), "GET", "/dashboard/state").Json();
  EXPECT_EQ(state["registry"], registry_->url());
  EXPECT_EQ(state["gateway"]["id"], "gateway-test");
  EXPECT_GE(state["totals"]["requests"].get<int>(), 10);
  nlohmann::json users;
  for (const auto& s : state["services"]) {
    if (s["name"] == "user-service") users = s;
  }
  ASSERT_FALSE(users.is_null()) << state.dump();
  EXPECT_EQ(users["policy"], "round_robin");
  ASSERT_EQ(users["instances"].size(), 2u);
  std::uint64_t picks = 0;
  for (const auto& i : users["instances"]) {
    EXPECT_GE(i["picks"].get<std::uint64_t>(), 5u) << "round robin shares the traffic";
    EXPECT_EQ(i["ejected"], false);
    picks += i["picks"].get<std::uint64_t>();
  }
  EXPECT_GE(picks, 10u);

  auto page = HttpRequest(gw.port(), "GET", "/dashboard");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("/dashboard/state"), std::string::npos);
  EXPECT_NE(page.body.find("/dashboard/series"), std::string::npos);

  // The history: samples of both routed instances, the unrouted service's
  // instance in the timeline, bounded as configured.
  nlohmann::json series;
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpRequest(gw.port(), "GET", "/api/users/echo");
        series = HttpRequest(gw.port(), "GET", "/dashboard/series").Json();
        std::size_t busy = 0;
        for (const auto& i : series["instances"]) {
          for (const auto& rps : i["rps"]) {
            if (i["service"] == "user-service" && rps.is_number() && rps.get<double>() > 0) {
              ++busy;
              break;
            }
          }
        }
        return busy == 2;
      },
      10s, 50ms))
      << series.dump();
  EXPECT_EQ(series["capacity"], 300);
  EXPECT_EQ(series["interval_ms"], 100);
  ASSERT_EQ(series["services"].size(), 1u) << "only routed services have rates";
  EXPECT_EQ(series["services"][0]["name"], "user-service");
  EXPECT_EQ(series["services"][0]["rps"].size(), series["t"].size());
  std::set<std::string> registered;
  for (const auto& e : series["events"]) {
    if (e["kind"] == "registered")
      registered.insert(e["service"].get<std::string>() + "/" + e["id"].get<std::string>());
  }
  EXPECT_EQ(registered, (std::set<std::string>{"billing/billing-1", "user-service/users-1",
                                               "user-service/users-2"}));
  EXPECT_EQ(HttpRequest(gw.port(), "GET", "/dashboard/series").Header("cache-control"), "no-store");

  auto metrics = HttpRequest(gw.port(), "GET", "/metrics").body;
  for (const std::string& expected :
       {std::string("disco_balancer_picks_total{service=\"user-service\",instance=\"users-1\""),
        std::string("disco_resolver_staleness_seconds{service=\"user-service\"} 0"),
        std::string("http_client_requests_total{service=\"user-service\",outcome=\"200\"}"),
        std::string(
            "http_server_requests_total{service=\"gateway\",route=\"/api/users/{rest...}\"")}) {
    EXPECT_NE(metrics.find(expected), std::string::npos) << expected;
  }
  // The registry reports into the process-wide metrics (made before the gateway here).
  EXPECT_NE(MetricsRegistry::Default().Render().find("disco_registry_operations_total{backend="),
            std::string::npos);
}

// A route's own limit (the login route's) applies per client on top of the
// global one, and only to that route.
TEST_F(GatewayProxyTest, RouteRateLimitIsItsOwn) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto login = Route("/api/users/login", "user-service");
  // A token every two seconds: the three logins land before one comes back.
  login.rate_limit = gateway::RouteRateLimit{.requests_per_second = 0.5, .burst = 2};
  InProcessGateway gw(*registry_, Config({Route("/api/users", "user-service"), login}), nullptr);
  ASSERT_EQ(gw.proxy().routes()[0]->channel, gw.proxy().routes()[1]->channel)
      << "routes to one service share its channel";
  WaitRouted(gw.port(), "/api/users/echo");
  users.ResetHits();
  const auto first = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpRequest(gw.port(), "POST", "/api/users/login/echo", "{}").status, 200);
  EXPECT_EQ(HttpRequest(gw.port(), "POST", "/api/users/login", "{}").status, 200);
  auto limited = HttpRequest(gw.port(), "POST", "/api/users/login", "{}");
  const auto took = std::chrono::steady_clock::now() - first;
  EXPECT_EQ(limited.status, 429) << limited.raw;
  EXPECT_EQ(limited.Json()["error"], "rate_limited");
  // The next token is 2 s after the first login, less the time the three
  // took: "2" when they took under 1 s, "1" on a slower run.
  if (took < 1s)
    EXPECT_EQ(limited.Header("retry-after"), "2");
  else
    EXPECT_TRUE(limited.Header("retry-after") == "1" || limited.Header("retry-after") == "2")
        << limited.Header("retry-after");
  EXPECT_NE(limited.Json()["message"].get<std::string>().find("/api/users/login"),
            std::string::npos);
  EXPECT_EQ(users.hits(), 2u);
  // Other paths of the service are not limited by it.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/users/echo").status, 200);
  EXPECT_NE(gw.metrics().Render().find("gateway_refused_total{route=\"/api/users/login/{rest...}\","
                                       "reason=\"route_rate_limited\"} 1"),
            std::string::npos);
}

// Upstream, the gateway names the client (the key it rate-limits by) and
// its patience; what a client sent in these headers is replaced.
TEST_F(GatewayProxyTest, SendsClientAddressAndTimeoutUpstream) {
  TestUpstream users(*registry_, "user-service", "users-1");
  auto route = Route("/api/users", "user-service");
  route.per_try_timeout = 1200ms;
  route.deadline = 3000ms;
  auto short_deadline = Route("/api/short", "user-service");
  short_deadline.per_try_timeout = 1200ms;
  short_deadline.deadline = 700ms;
  InProcessGateway gw(*registry_, Config({route, short_deadline}), nullptr);
  WaitRouted(gw.port(), "/api/users/echo");
  auto echo = HttpRequest(gw.port(), "GET", "/api/users/echo", {},
                          {{"X-Client-Address", "203.0.113.1"}, {"X-Request-Timeout-Ms", "999999"}})
                  .Json();
  EXPECT_EQ(HeaderValues(echo, "x-client-address"), nlohmann::json::array({"127.0.0.1"}));
  EXPECT_EQ(HeaderValues(echo, "x-request-timeout-ms"), nlohmann::json::array({"1200"}));
  auto capped = HttpRequest(gw.port(), "GET", "/api/short/echo").Json();
  EXPECT_EQ(HeaderValues(capped, "x-request-timeout-ms"), nlohmann::json::array({"700"}));
}

// An instance answering 503 with Retry-After is shedding load: it works, and
// ejecting it would only push its load onto the others.
TEST_F(GatewayProxyTest, SheddingInstanceIsNotEjected) {
  TestUpstream shedding(*registry_, "user-service", "users-shedding");
  TestUpstream good(*registry_, "user-service", "users-good");
  auto config = Config({Route("/api/users", "user-service")});
  config.outlier_detection = OutlierOptions{};
  config.outlier_detection->consecutive_failures = 3;
  InProcessGateway gw(*registry_, config, nullptr);
  WaitBothServe(gw.port(), "/api/users/echo", shedding, good);
  shedding.SetMode(TestUpstream::Mode::kShedding);
  shedding.ResetHits();
  for (int i = 0; i < 20; ++i) HttpRequest(gw.port(), "POST", "/api/users/echo", "{}");
  EXPECT_EQ(gw.proxy().totals().ejections, 0u);
  EXPECT_GE(shedding.hits(), 8u) << "the shedding instance still gets its share";
}

TEST_F(GatewayProxyTest, OutlierDetectionEjectsAFailingInstance) {
  TestUpstream bad(*registry_, "user-service", "users-bad");
  TestUpstream good(*registry_, "user-service", "users-good");
  auto config = Config({Route("/api/users", "user-service")});
  config.outlier_detection = OutlierOptions{};
  config.outlier_detection->consecutive_failures = 3;
  InProcessGateway gw(*registry_, config, nullptr);
  WaitBothServe(gw.port(), "/api/users/echo", bad, good);
  bad.SetMode(TestUpstream::Mode::kStatus503);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(HttpRequest(gw.port(), "GET", "/api/users/echo").status, 200);
  EXPECT_EQ(gw.proxy().totals().ejections, 1u);
  bad.ResetHits();
  for (int i = 0; i < 10; ++i) HttpRequest(gw.port(), "GET", "/api/users/echo");
  EXPECT_EQ(bad.hits(), 0u) << "an ejected instance still got traffic";
  auto state = HttpRequest(gw.port(), "GET", "/dashboard/state").Json();
  EXPECT_EQ(state["totals"]["ejections"], 1);
  // The dashboard's timeline has the ejection, with its cause, and the
  // samples count it.
  nlohmann::json series;
  ASSERT_TRUE(WaitFor(
      [&] {
        series = HttpRequest(gw.port(), "GET", "/dashboard/series").Json();
        std::uint64_t counted = 0;
        for (const auto& n : series["services"][0]["ejections"])
          if (n.is_number()) counted += n.get<std::uint64_t>();
        return counted == 1;
      },
      5s, 50ms))
      << series.dump();
  std::size_t ejected = 0;
  for (const auto& e : series["events"]) {
    if (e["kind"] != "ejected") continue;
    ++ejected;
    EXPECT_EQ(e["id"], "users-bad");
    EXPECT_EQ(e["service"], "user-service");
    EXPECT_NE(e["detail"].get<std::string>().find("server_error"), std::string::npos) << e.dump();
  }
  EXPECT_EQ(ejected, 1u) << series.dump();
}

}  // namespace
}  // namespace disco
