// The gateway binary in a real stack: etcd, two user-service instances and
// the gateway, each a process started by PID on free loopback ports.
//   - a stock Prometheus (Debian's) finds every instance through the
//     gateway's HTTP service discovery and scrapes each one "up";
//   - the dashboard in headless Chromium, under load, draws its charts and
//     shows a failover: after kill -9 of one instance its rate falls to zero,
//     the other's rises, the ejection comes before the registry's removal and
//     the instance leaves the table (tests/browser/dashboard_test.mjs),
//     writing screenshots into <build>/test-artifacts/.
// Needs the etcd test fixture (tests/fixture/etcd_server.h); without it the
// file compiles to nothing.
#if __has_include("fixture/etcd_server.h")

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "fixture/etcd_server.h"
#include "fixture/http_client.h"
#include "fixture/process.h"
#include "fixture/service_process.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Percent-encodes a PromQL query for a URL's query string.
std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// How many `- alert:` rules a rules file holds.
std::size_t CountAlerts(const std::string& rules) {
  std::size_t n = 0;
  for (std::size_t at = 0; (at = rules.find("- alert:", at)) != std::string::npos; ++at) ++n;
  return n;
}

class GatewayStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) {
      ServiceOptions options;
      options.binary = UserServicePath();
      options.registry = etcd_.url();
      options.db = dir_.Sub("users.db");
      options.log_path = dir_.Sub("user-" + std::to_string(i) + ".log");
      options.args = {"--bcrypt-cost", "4", "--access-log", "false"};
      users_.push_back(std::make_unique<ServiceProcess>(options));
    }
    ServiceOptions gw;
    gw.binary = GatewayPath();
    gw.registry = etcd_.url();
    gw.log_path = dir_.Sub("gateway.log");
    gw.args = {"--catalog-refresh-ms", "200", "--access-log", "false"};
    gateway_ = std::make_unique<ServiceProcess>(gw);
  }

  // Waits until the gateway's SD endpoint lists `n` targets.
  nlohmann::json WaitTargets(std::size_t n) {
    nlohmann::json targets;
    WaitFor(
        [&] {
          targets = HttpRequest(gateway_->port(), "GET", "/sd/prometheus").Json();
          return targets.is_array() && targets.size() == n;
        },
        15s, 100ms);
    return targets;
  }

  EtcdServer etcd_;
  TempDir dir_{"disco-gw-stack"};
  std::vector<std::unique_ptr<ServiceProcess>> users_;
  std::unique_ptr<ServiceProcess> gateway_;
};

TEST_F(GatewayStackTest, ProxiesTheDemoThroughDiscovery) {
  auto registered =
      HttpRequest(gateway_->port(), "POST", "/api/users/register",
                  R"({"username":"gwuser","password":"password123","email":"gw@example.com"})",
                  {{"Content-Type", "application/json"}});
  ASSERT_EQ(registered.status, 201) << registered.raw;
  auto login = HttpRequest(gateway_->port(), "POST", "/api/users/login",
                           R"({"username":"gwuser","password":"password123"})",
                           {{"Content-Type", "application/json"}});
  ASSERT_EQ(login.status, 200) << login.raw;
  std::string token = login.Json()["token"];
  std::set<std::string> answered_by;
  for (int i = 0; i < 6; ++i) {
    auto me = HttpRequest(gateway_->port(), "GET", "/api/users/me", {},
                          {{"Authorization", "Bearer " + token}});
    ASSERT_EQ(me.status, 200) << me.raw;
  }
  auto state = HttpRequest(gateway_->port(), "GET", "/dashboard/state").Json();
  for (const auto& service : state["services"]) {
    if (service["name"] != "user-service") continue;
    ASSERT_EQ(service["instances"].size(), 2u) << state.dump();
    for (const auto& instance : service["instances"])
      EXPECT_GE(instance["picks"].get<int>(), 3) << state.dump();
  }
  // Every binary serves Prometheus metrics with the library's families.
  auto metrics = HttpRequest(gateway_->port(), "GET", "/metrics").body;
  for (const char* family :
       {"disco_balancer_picks_total{service=\"user-service\"", "disco_registry_operations_total",
        "disco_resolver_staleness_seconds", "http_client_requests_total",
        "http_server_request_duration_seconds_bucket"}) {
    EXPECT_NE(metrics.find(family), std::string::npos) << family;
  }
  auto user_metrics = HttpRequest(users_[0]->port(), "GET", "/metrics").body;
  EXPECT_NE(
      user_metrics.find(
          "disco_registry_operations_total{backend=\"etcd\",operation=\"register\",result=\"ok\"}"),
      std::string::npos)
      << user_metrics;
}

TEST_F(GatewayStackTest, PrometheusDiscoversAndScrapesEveryInstance) {
  const std::string prometheus = "/usr/bin/prometheus";
  ASSERT_EQ(access(prometheus.c_str(), X_OK), 0)
      << "Debian's prometheus is not installed (scripts/install-deps.sh)";
  ASSERT_EQ(WaitTargets(3).size(), 3u)
      << "the gateway's SD endpoint does not list 2 users + the gateway";

  // The shipped configuration and alert rules (deploy/prometheus/), with
  // this gateway's address and 1 s intervals.
  std::uint16_t port = FreePort();
  const std::string deploy = std::string(DISCO_SOURCE_DIR) + "/deploy/prometheus/";
  std::string config_text = ReadFile(deploy + "prometheus.yml");
  auto replace = [&](std::string_view from, const std::string& to) {
    for (std::size_t at = 0; (at = config_text.find(from, at)) != std::string::npos;
         at += to.size())
      config_text.replace(at, from.size(), to);
  };
  replace("http://127.0.0.1:8080/sd/prometheus",
          "http://127.0.0.1:" + std::to_string(gateway_->port()) + "/sd/prometheus");
  replace(": 5s", ": 1s");
  const std::string config = dir_.Sub("prometheus.yml");
  std::ofstream(config) << config_text;
  std::filesystem::copy_file(deploy + "alerts.yml", dir_.Sub("alerts.yml"));
  Process server(
      {prometheus, "--config.file=" + config, "--storage.tsdb.path=" + dir_.Sub("prometheus-data"),
       "--web.listen-address=127.0.0.1:" + std::to_string(port), "--log.level=warn"},
      dir_.Sub("prometheus.log"));

  std::set<std::string> expected = {"user-service/" + users_[0]->id(),
                                    "user-service/" + users_[1]->id(), "gateway/" + gateway_->id()};
  std::set<std::string> up;
  nlohmann::json last;
  bool all_up = WaitFor(
      [&] {
        auto answer = HttpRequest(port, "GET", "/api/v1/targets?state=active", {}, {}, 2s);
        if (answer.status != 200) return false;
        last = answer.Json();
        up.clear();
        for (const auto& target : last["data"]["activeTargets"]) {
          if (target["health"] == "up") {
            up.insert(target["labels"]["disco_service"].get<std::string>() + "/" +
                      target["labels"]["disco_instance"].get<std::string>());
          }
        }
        return up == expected;
      },
      40s, 250ms);
  EXPECT_TRUE(all_up) << "Prometheus saw " << last.dump() << "\nlog:\n" << server.ReadLog();

  // Traffic through the gateway, so the caller-side series exist.
  for (int i = 0; i < 10; ++i) HttpRequest(gateway_->port(), "GET", "/api/users/1");
  // The series the alert rules key on exist under the labels they use: the
  // scraped process as disco_service, the series' own `service` untouched
  // (the called service on the gateway's caller-side series).
  const std::pair<std::string, std::string> series[] = {
      {"up", R"({disco_service="user-service"})"},
      {"disco_resolver_endpoints", R"({disco_service="gateway",service="user-service"})"},
      {"http_client_requests_total", R"({disco_service="gateway",service="user-service"})"},
      {"disco_outlier_ejections_total", R"({disco_service="gateway",service="user-service"})"},
      {"disco_resolver_staleness_seconds", R"({disco_service="gateway",service="user-service"})"},
      {"http_server_requests_total", R"({disco_service="user-service",service="user-service"})"},
      {"http_server_request_duration_seconds_bucket", R"({disco_service="gateway",service="gateway"})"},
      {"disco_registry_operations_total", R"({disco_service="user-service",result="ok"})"},
      {"disco_registrations", R"({disco_service="user-service",state="active"})"},
  };
  for (const auto& [name, selector] : series) {
    nlohmann::json answer;
    bool found = WaitFor(
        [&] {
          auto reply = HttpRequest(port, "GET", "/api/v1/query?query=" + UrlEncode(name + selector),
                                   {}, {}, 2s);
          if (reply.status != 200) return false;
          answer = reply.Json();
          return !answer["data"]["result"].empty();
        },
        20s, 250ms);
    EXPECT_TRUE(found) << name << selector << ": " << answer.dump();
  }
  // Every panel of the shipped Grafana dashboard (deploy/grafana/) queries
  // without error, and shows data except where only failures would give it.
  auto dashboard = nlohmann::json::parse(
      ReadFile(std::string(DISCO_SOURCE_DIR) + "/deploy/grafana/disco-dashboard.json"));
  std::size_t panels = 0;
  for (const auto& panel : dashboard["panels"]) {
    if (panel["type"] == "row") continue;
    ++panels;
    const std::string title = panel["title"];
    const bool may_be_empty = title == "5xx ratio by service";
    bool any_data = false;
    std::string answers;
    bool ok = WaitFor(
        [&] {
          any_data = false;
          answers.clear();
          for (const auto& target : panel["targets"]) {
            std::string expr = target["expr"];
            for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"$service", ".*"},
                                    {"$__rate_interval", "1m"}}) {
              for (std::size_t at = 0; (at = expr.find(from, at)) != std::string::npos;)
                expr.replace(at, from.size(), to);
            }
            auto reply = HttpRequest(port, "GET", "/api/v1/query?query=" + UrlEncode(expr), {}, {}, 2s);
            answers += expr + " -> " + reply.body + "\n";
            if (reply.status != 200) return false;
            if (!reply.Json()["data"]["result"].empty()) any_data = true;
          }
          return any_data || may_be_empty;
        },
        15s, 500ms);
    EXPECT_TRUE(ok) << title << ":\n" << answers;
  }
  EXPECT_GE(panels, 10u);

  // Every alert rule loads and evaluates against the real series without error.
  const std::size_t expected_rules = CountAlerts(ReadFile(deploy + "alerts.yml"));
  ASSERT_GE(expected_rules, 7u);
  nlohmann::json rules;
  bool evaluated = WaitFor(
      [&] {
        auto reply = HttpRequest(port, "GET", "/api/v1/rules?type=alert", {}, {}, 2s);
        if (reply.status != 200) return false;
        rules = reply.Json();
        std::size_t ok = 0;
        for (const auto& group : rules["data"]["groups"])
          for (const auto& rule : group["rules"])
            if (rule["health"] == "ok") ++ok;
        return ok == expected_rules;
      },
      20s, 250ms);
  EXPECT_TRUE(evaluated) << rules.dump();
  server.Stop();
}

TEST_F(GatewayStackTest, DashboardInChromiumShowsAFailover) {
  const std::string source = DISCO_SOURCE_DIR;
  ASSERT_TRUE(std::filesystem::exists(source + "/tests/browser/node_modules/playwright-core"))
      << "run scripts/install-deps.sh (npm ci in tests/browser)";
  ASSERT_EQ(access("/usr/bin/chromium", X_OK), 0) << "Debian's chromium is not installed";
  // Steady load for the whole scene, at a fixed rate so that the survivor's
  // rise after the kill is the victim's share moving, not the load changing.
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread load([&] {
    auto next = std::chrono::steady_clock::now();
    while (!stop.load()) {
      if (HttpRequest(gateway_->port(), "GET", "/api/users/1", {}, {}, 2s).status > 0) ++answered;
      next += 25ms;  // 40 requests/s
      auto now = std::chrono::steady_clock::now();
      if (next < now) next = now;
      std::this_thread::sleep_until(next);
    }
  });
  const std::string artifacts = DISCO_TEST_ARTIFACTS_DIR;
  std::filesystem::create_directories(artifacts);
  auto& victim = *users_[1];
  auto started = std::chrono::steady_clock::now();
  Process node({"node", source + "/tests/browser/dashboard_test.mjs", "--url",
                "http://127.0.0.1:" + std::to_string(gateway_->port()) + "/dashboard", "--service",
                "user-service", "--instances", users_[0]->id() + "," + victim.id(), "--kill-id",
                victim.id(), "--kill-pid", std::to_string(victim.pid()), "--within-ms", "10000",
                "--artifacts", artifacts},
               dir_.Sub("node.log"));
  int status = node.Wait(90s);
  stop = true;
  load.join();
  std::string log = node.ReadLog();
  std::printf("%s", log.c_str());
  std::printf("browser scene: %.1f s, %d requests answered through the gateway\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
              answered.load());
  ASSERT_NE(status, -1) << "the browser script did not finish:\n" << log;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
  EXPECT_FALSE(victim.running()) << "the script did not kill the instance";
  EXPECT_TRUE(std::filesystem::exists(artifacts + "/dashboard.png"));
  EXPECT_TRUE(std::filesystem::exists(artifacts + "/dashboard-failover.png"));
  std::printf("screenshots: %s/dashboard.png, %s/dashboard-failover.png\n", artifacts.c_str(),
              artifacts.c_str());
}

}  // namespace
}  // namespace disco::testing

#endif  // __has_include("fixture/etcd_server.h")
