// Logs an operator can ship (issue 17): one request through the gateway,
// order-service and user-service — three processes on real etcd — is found
// in all three logs by its trace id, and the lines form a tree
// (span_id → parent_id) rooted at the caller's traceparent. Every line of
// every log is JSON with ts, level, service, instance and request_id.
#if __has_include("fixture/etcd_server.h")

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixture/etcd_server.h"
#include "fixture/http_client.h"
#include "fixture/service_process.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class TraceLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServiceOptions user;
    user.binary = UserServicePath();
    user.registry = etcd_.url();
    user.db = dir_.Sub("users.db");
    user.id = "user-1";
    user.log_path = dir_.Sub("user.log");
    user.args = {"--bcrypt-cost", "4"};
    user_ = std::make_unique<ServiceProcess>(user);
    ServiceOptions order;
    order.binary = OrderServicePath();
    order.registry = etcd_.url();
    order.db = dir_.Sub("orders.db");
    order.id = "order-1";
    order.log_path = dir_.Sub("order.log");
    order_ = std::make_unique<ServiceProcess>(order);
    ServiceOptions gw;
    gw.binary = GatewayPath();
    gw.registry = etcd_.url();
    gw.id = "gateway-1";
    gw.log_path = dir_.Sub("gateway.log");
    gateway_ = std::make_unique<ServiceProcess>(gw);
  }

  // Every line of a log as JSON; a line that is not JSON fails the test.
  std::vector<json> Lines(const std::string& name) {
    std::ifstream in(dir_.Sub(name));
    std::vector<json> out;
    std::string line;
    while (std::getline(in, line)) {
      auto parsed = json::parse(line, nullptr, false);
      EXPECT_FALSE(parsed.is_discarded()) << name << ": not JSON: " << line;
      if (!parsed.is_discarded()) out.push_back(std::move(parsed));
    }
    return out;
  }

  // The access line of `method path` in trace `trace_id`, waiting for the
  // access log's once-a-second flush.
  json AccessLine(const std::string& log, const std::string& trace_id, const std::string& method,
                  const std::string& path) {
    json found;
    WaitFor(
        [&] {
          for (auto& line : Lines(log)) {
            if (line.value("type", "") == "access" && line.value("trace_id", "") == trace_id &&
                line["method"] == method && line["path"] == path) {
              found = line;
              return true;
            }
          }
          return false;
        },
        5s, 100ms);
    return found;
  }

  std::string Login() {
    auto registered =
        JsonRequest(gateway_->port(), "POST", "/api/users/register",
                    {{"username", "tracer"}, {"password", "password123"}, {"email", "t@example.com"}});
    EXPECT_EQ(registered.status, 201) << registered.raw;
    auto login = JsonRequest(gateway_->port(), "POST", "/api/users/login",
                             {{"username", "tracer"}, {"password", "password123"}});
    EXPECT_EQ(login.status, 200) << login.raw;
    return login.Json().value("token", "");
  }

  EtcdServer etcd_;
  TempDir dir_{"disco-trace-logs"};
  std::unique_ptr<ServiceProcess> user_, order_, gateway_;
};

TEST_F(TraceLogsTest, OneRequestIsJoinedAcrossThreeProcessesByTraceId) {
  std::string token = Login();
  ASSERT_FALSE(token.empty());
  const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string caller_span = "00f067aa0ba902b7";
  auto created = JsonRequest(gateway_->port(), "POST", "/api/orders",
                             {{"product", "Widget"}, {"quantity", 1}, {"price", "2.50"}},
                             {{"Authorization", "Bearer " + token},
                              {"traceparent", "00-" + trace_id + "-" + caller_span + "-01"},
                              {"X-Request-Id", "trace-test-1"}});
  ASSERT_EQ(created.status, 201) << created.raw;

  json gateway = AccessLine("gateway.log", trace_id, "POST", "/api/orders");
  json order = AccessLine("order.log", trace_id, "POST", "/api/orders");
  json user = AccessLine("user.log", trace_id, "GET", "/api/users/me");
  ASSERT_FALSE(gateway.is_null()) << "gateway.log has no line of the trace";
  ASSERT_FALSE(order.is_null()) << "order.log has no line of the trace";
  ASSERT_FALSE(user.is_null()) << "user.log has no line of the trace";
  // The tree: caller → gateway → order-service → user-service.
  EXPECT_EQ(gateway["parent_id"], caller_span);
  EXPECT_EQ(order["parent_id"], gateway["span_id"]);
  EXPECT_EQ(user["parent_id"], order["span_id"]);
  EXPECT_NE(gateway["span_id"], order["span_id"]);
  // The request id travels too, and each line names its process.
  for (const auto& [line, service, instance] :
       {std::tuple{gateway, "gateway", "gateway-1"}, std::tuple{order, "order-service", "order-1"},
        std::tuple{user, "user-service", "user-1"}}) {
    EXPECT_EQ(line["request_id"], "trace-test-1") << line.dump();
    EXPECT_EQ(line["service"], service) << line.dump();
    EXPECT_EQ(line["instance"], instance) << line.dump();
    EXPECT_EQ(line["level"], "info") << line.dump();
  }
}

TEST_F(TraceLogsTest, TheGatewayStartsATraceWhenTheCallerSendsNone) {
  std::string token = Login();
  ASSERT_FALSE(token.empty());
  // No traceparent, and an invalid one: both start a trace at the gateway.
  for (std::string traceparent : {"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}) {
    Headers headers = {{"Authorization", "Bearer " + token}};
    if (!traceparent.empty()) headers.emplace_back("traceparent", traceparent);
    auto created = JsonRequest(gateway_->port(), "POST", "/api/orders",
                               {{"product", "Gadget"}, {"quantity", 2}, {"price", "1.00"}}, headers);
    ASSERT_EQ(created.status, 201) << created.raw;
    const std::string request_id = created.Header("x-request-id");
    ASSERT_FALSE(request_id.empty());
    json gateway;
    WaitFor(
        [&] {
          for (auto& line : Lines("gateway.log"))
            if (line.value("type", "") == "access" && line.value("request_id", "") == request_id)
              gateway = line;
          return !gateway.is_null();
        },
        5s, 100ms);
    ASSERT_FALSE(gateway.is_null()) << request_id;
    EXPECT_TRUE(gateway["parent_id"].is_null()) << gateway.dump();
    const std::string trace_id = gateway["trace_id"];
    EXPECT_EQ(trace_id.size(), 32u);
    EXPECT_NE(trace_id, "00000000000000000000000000000000");
    json user = AccessLine("user.log", trace_id, "GET", "/api/users/me");
    ASSERT_FALSE(user.is_null()) << "user.log has no line of trace " << trace_id;
    EXPECT_EQ(user["request_id"], request_id);
  }
}

TEST_F(TraceLogsTest, EveryLineCarriesTheFieldsALogPipelineKeysOn) {
  Login();
  // An application line about a request: a failed confirmation of the
  // user (user-service stopped), logged by order-service with the request's ids.
  std::string token = JsonRequest(gateway_->port(), "POST", "/api/users/login",
                                  {{"username", "tracer"}, {"password", "password123"}})
                          .Json()
                          .value("token", "");
  user_->Stop();
  auto refused = JsonRequest(order_->port(), "POST", "/api/orders",
                             {{"product", "Widget"}, {"quantity", 1}, {"price", "1.00"}},
                             {{"Authorization", "Bearer " + token},
                              {"X-Request-Id", "trace-test-app-line"}});
  EXPECT_EQ(refused.status, 503) << refused.raw;
  order_->Stop();
  gateway_->Stop();
  bool app_line_found = false;
  for (const char* log : {"user.log", "order.log", "gateway.log"}) {
    auto lines = Lines(log);
    EXPECT_GT(lines.size(), 3u) << log;
    for (const auto& line : lines) {
      for (const char* key : {"ts", "level", "service", "instance", "request_id"})
        EXPECT_TRUE(line.contains(key)) << log << ": no " << key << ": " << line.dump();
      EXPECT_TRUE(line["service"].is_string()) << log << ": " << line.dump();
      if (line.value("logger", "") == "disco" && line["request_id"] == "trace-test-app-line") {
        app_line_found = true;
        EXPECT_EQ(line["service"], "order-service");
        EXPECT_EQ(line["level"], "warning");
        EXPECT_EQ(line["trace_id"].get<std::string>().size(), 32u) << line.dump();
      }
    }
  }
  EXPECT_TRUE(app_line_found) << "order-service logged no line with the request's id";
}

}  // namespace
}  // namespace disco::testing

#endif  // __has_include("fixture/etcd_server.h")
