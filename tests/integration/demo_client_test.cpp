// `disco demo`, the demo client, against real services: straight through
// discovery (no gateway) on etcd, with two instances of each service, and its
// exit code and transcript when nothing answers. (Through the gateway, with
// the failover scene, it runs in the end-to-end test of scripts/demo.sh.)
#if __has_include("fixture/etcd_server.h")

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fixture/cli.h"
#include "fixture/etcd_server.h"
#include "fixture/service_process.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

std::vector<json> JsonLines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

TEST(DemoClientTest, WalksThroughBothServicesFoundInTheRegistry) {
  EtcdServer etcd;
  TempDir dir("disco-demo-client");
  std::vector<std::unique_ptr<ServiceProcess>> services;
  for (int i = 1; i <= 2; ++i) {
    ServiceOptions user;
    user.binary = UserServicePath();
    user.registry = etcd.url();
    user.db = dir.Sub("users.db");
    user.id = "user-service-" + std::to_string(i);
    user.log_path = dir.Sub(user.id + ".log");
    user.args = {"--bcrypt-cost", "4", "--access-log", "false"};
    services.push_back(std::make_unique<ServiceProcess>(user));
    ServiceOptions order;
    order.binary = OrderServicePath();
    order.registry = etcd.url();
    order.db = dir.Sub("orders.db");
    order.id = "order-service-" + std::to_string(i);
    order.log_path = dir.Sub(order.id + ".log");
    order.args = {"--access-log", "false"};
    services.push_back(std::make_unique<ServiceProcess>(order));
  }

  auto result = RunCli({"--registry", etcd.url(), "demo", "--orders", "4", "--loop", "3",
                        "--interval-ms", "0", "--json"},
                       60s);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto lines = JsonLines(result.output);
  ASSERT_GE(lines.size(), 3u) << result.output;
  EXPECT_EQ(lines.front()["type"], "start");
  EXPECT_EQ(lines.front()["via"], "registry");
  const json& summary = lines.back();
  ASSERT_EQ(summary["type"], "summary") << result.output;
  // register, login, me, 4 orders, list, get; then 3 rounds of me, create, get.
  EXPECT_EQ(summary["steps"], 9 + 3 * 3) << summary.dump();
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["rounds"], 3);
  std::set<std::string> steps;
  for (const auto& line : lines) {
    if (line["type"] != "step") continue;
    EXPECT_TRUE(line["ok"].get<bool>()) << line.dump();
    EXPECT_FALSE(line["served_by"].get<std::string>().empty()) << line.dump();
    if (line["step"] == "list_orders") {
      EXPECT_EQ(line["detail"].get<std::string>().rfind("4 orders", 0), 0u) << line.dump();
    }
    steps.insert(line["step"].get<std::string>());
  }
  EXPECT_EQ(steps, (std::set<std::string>{"register", "login", "me", "create_order", "list_orders",
                                          "get_order"}));
  // Round robin over two instances of each: both served.
  for (const char* service : {"user-service", "order-service"}) {
    EXPECT_EQ(summary["services"].value(service, json::object()).size(), 2u) << summary.dump();
  }

  // The text transcript says the same for people.
  auto text = RunCli({"--registry", etcd.url(), "demo", "--orders", "1"}, 60s);
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("POST /api/users/register"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("summary: 6 steps, 6 ok, 0 failed"), std::string::npos) << text.output;
}

TEST(DemoClientTest, FailsWithExitCodeOneWhenNothingAnswers) {
  std::uint16_t closed = FreePort();
  auto result = RunCli({"demo", "--gateway", "http://127.0.0.1:" + std::to_string(closed), "--json",
                        "--call-timeout-ms", "1000"},
                       30s);
  EXPECT_EQ(result.exit_code, 1) << result.output;
  auto lines = JsonLines(result.output);
  ASSERT_FALSE(lines.empty()) << result.output;
  const json& summary = lines.back();
  EXPECT_EQ(summary["type"], "summary");
  EXPECT_EQ(summary["failed"], 1) << "the walkthrough stops at the first step it cannot pass";
  EXPECT_EQ(summary["ok"], 0);

  // https:// gateways are called over TLS (demo.sh --tls); another scheme
  // is a usage error.
  auto bad = RunCli({"demo", "--gateway", "ftp://127.0.0.1:1"}, 10s);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("http(s)://"), std::string::npos) << bad.output;
}

}  // namespace
}  // namespace disco::testing

#endif  // __has_include("fixture/etcd_server.h")
