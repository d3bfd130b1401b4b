// Interop with Consul's own tools: what disco registers is what Consul's CLI
// and HTTP API show, and what others register with plain JSON is what disco
// discovers. Each test runs its own dev agent on free loopback ports.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/consul_agent.h"
#include "fixture/registry_backend.h"
#include "fixture/update_recorder.h"
#include "fixture/util.h"
#include "registry/consul/consul_stats.h"
#include "util/log.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class ConsulInteropTest : public ::testing::Test {
 protected:
  void SetUp() override { agent_.Start(); }

  std::unique_ptr<Registry> Open(const std::string& url) {
    auto registry = MakeRegistry(url);
    EXPECT_TRUE(registry) << registry.error().ToString();
    return registry ? std::move(*registry) : nullptr;
  }

  json Health(const std::string& service, const std::string& token = {}) {
    auto result = agent_.Http("GET", "/v1/health/service/" + service, {}, token);
    EXPECT_EQ(result.status, 200) << result.body;
    return json::parse(result.body, nullptr, false);
  }

  // Runs the real consul CLI against the agent and returns its stdout+stderr.
  std::string ConsulCli(std::vector<std::string> args) {
    TempDir dir("disco-consul-cli");
    std::vector<std::string> argv = {ConsulAgent::BinaryPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("-http-addr=" + agent_.http_addr());
    Process process(argv, dir.Sub("out.log"));
    EXPECT_NE(process.Wait(15s), -1) << "consul " << args.front() << " did not finish";
    return process.ReadLog();
  }

  ConsulAgent agent_;
};

TEST_F(ConsulInteropTest, DiscoRegistrationIsWhatConsulShows) {
  auto registry = Open(agent_.url());
  ServiceInstance instance = Instance("interop-web", "web-1", 8081);
  instance.tags = {"v1", "primary"};
  instance.metadata = {{"proto", "http"}};
  instance.weight = 10;
  instance.zone = "z1";
  RegisterOptions options;
  options.ttl = 2s;
  auto registration = registry->Register(instance, options);
  ASSERT_TRUE(registration) << registration.error().ToString();

  auto catalog = ConsulCli({"catalog", "services", "-tags"});
  EXPECT_NE(catalog.find("interop-web"), std::string::npos) << catalog;
  EXPECT_NE(catalog.find("primary,v1"), std::string::npos) << catalog;

  // Past the TTL: the heartbeats, not the initial status, keep it passing.
  std::this_thread::sleep_for(3s);
  auto health = Health("interop-web");
  ASSERT_TRUE(health.is_array() && health.size() == 1) << health.dump();
  const auto& service = health[0]["Service"];
  EXPECT_EQ(service["ID"], "web-1");
  EXPECT_EQ(service["Address"], "127.0.0.1");
  EXPECT_EQ(service["Port"], 8081);
  EXPECT_EQ(service["Tags"], json::array({"v1", "primary"}));
  EXPECT_EQ(service["Meta"]["proto"], "http");
  EXPECT_EQ(service["Meta"]["disco-zone"], "z1");
  EXPECT_EQ(service["Weights"]["Passing"], 10);
  bool found_check = false;
  for (const auto& check : health[0]["Checks"]) {
    if (check["CheckID"] == "service:web-1") {
      found_check = true;
      EXPECT_EQ(check["Status"], "passing") << check.dump();
      EXPECT_EQ(check["Type"], "ttl");
    }
  }
  EXPECT_TRUE(found_check) << health.dump();
  auto passing = agent_.Http("GET", "/v1/health/service/interop-web?passing");
  EXPECT_NE(passing.body.find("web-1"), std::string::npos);

  ASSERT_TRUE((*registration)->Deregister());
  EXPECT_TRUE(Health("interop-web").empty());
  EXPECT_EQ(ConsulCli({"catalog", "services"}).find("interop-web"), std::string::npos);
}

TEST_F(ConsulInteropTest, PlainJsonRegistrationIsDiscovered) {
  auto put = agent_.Http(
      "PUT", "/v1/agent/service/register",
      R"({"ID":"plain-1","Name":"plain","Address":"127.0.0.1","Port":9001,"Tags":["curl"],
                             "Meta":{"owner":"ops"}})");
  ASSERT_EQ(put.status, 200) << put.body;
  auto registry = Open(agent_.url());

  auto list = registry->List("plain");
  ASSERT_TRUE(list) << list.error().ToString();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().instance.Address(), "127.0.0.1:9001");
  EXPECT_EQ(list->front().instance.tags, std::vector<std::string>{"curl"});
  EXPECT_EQ(list->front().instance.metadata.at("owner"), "ops");

  UpdateRecorder recorder;
  auto watch = registry->Watch("plain", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"plain-1"}, 5s));

  auto resolver = Resolver::Make(*registry, "plain");
  ASSERT_TRUE(resolver);
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  ASSERT_TRUE(WaitFor([&] { return (*resolver)->Pick() != nullptr; }, 5s));
  EXPECT_EQ((*resolver)->Pick()->address, "127.0.0.1:9001");

  // A TTL check registered without Status starts critical: not discovered,
  // but listed with its health when unhealthy ones are asked for.
  put = agent_.Http("PUT", "/v1/agent/service/register",
                    R"({"ID":"plain-2","Name":"plain","Address":"127.0.0.1","Port":9002,
                        "Check":{"CheckID":"plain-2-ttl","TTL":"30s"}})");
  ASSERT_EQ(put.status, 200) << put.body;
  auto all = registry->List("plain", /*include_unhealthy=*/true);
  ASSERT_TRUE(all) << all.error().ToString();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at(1).instance.id, "plain-2");
  EXPECT_EQ(all->at(1).health, HealthState::kCritical);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(UpdateRecorder::Ids(recorder.latest()), std::set<std::string>{"plain-1"});

  // warning: still not "passing", so not handed out; then passing: it is.
  ASSERT_EQ(agent_.Http("PUT", "/v1/agent/check/warn/plain-2-ttl").status, 200);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto again = registry->List("plain", true);
        return again && again->size() == 2 && again->at(1).health == HealthState::kWarning;
      },
      5s));
  ASSERT_EQ(agent_.Http("PUT", "/v1/agent/check/pass/plain-2-ttl").status, 200);
  EXPECT_TRUE(recorder.WaitIds({"plain-1", "plain-2"}, 5s));
  EXPECT_TRUE(WaitFor([&] { return (*resolver)->snapshot()->endpoints.size() == 2; }, 5s));
}

TEST_F(ConsulInteropTest, EmptyServiceAddressFallsBackToTheNodeAddress) {
  ASSERT_EQ(
      agent_
          .Http("PUT", "/v1/agent/service/register", R"({"ID":"na-1","Name":"noaddr","Port":9100})")
          .status,
      200);
  // An external node with its own address, as a catalog registration makes.
  auto put = agent_.Http("PUT", "/v1/catalog/register",
                         R"({"Node":"ext-node","Address":"127.0.0.2",
                             "Service":{"ID":"na-2","Service":"noaddr","Port":9101}})");
  ASSERT_EQ(put.status, 200) << put.body;
  auto registry = Open(agent_.url());
  UpdateRecorder recorder;
  auto watch = registry->Watch("noaddr", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({"na-1", "na-2"}, 5s));
  auto update = recorder.latest();
  EXPECT_EQ(update.instances[0].host, "127.0.0.1") << "the agent's node address";
  EXPECT_EQ(update.instances[1].host, "127.0.0.2") << "the external node's address";
}

TEST_F(ConsulInteropTest, HttpCheckModeLetsConsulPollAndSurvivesAnAgentRestart) {
  auto registry = Open(agent_.url());
  RegisterOptions options;
  options.ttl = 3s;  // Consul polls every max(1 s, ttl/3)
  // Something that answers 200 on this machine: the agent itself.
  options.http_check_url = "http://" + agent_.http_addr() + "/v1/status/leader";
  auto registration = registry->Register(Instance("interop-http", "h-1", 9200), options);
  ASSERT_TRUE(registration) << registration.error().ToString();
  RegisterOptions failing = options;
  failing.http_check_url = "http://127.0.0.1:" + std::to_string(FreePort()) + "/health";
  auto broken = registry->Register(Instance("interop-http", "h-2", 9201), failing);
  ASSERT_TRUE(broken) << broken.error().ToString();

  auto checks = json::parse(agent_.Http("GET", "/v1/agent/checks").body, nullptr, false);
  ASSERT_TRUE(checks.contains("service:h-1")) << checks.dump();
  EXPECT_EQ(checks["service:h-1"]["Type"], "http");

  // Consul's poll finds h-2 dead and h-1 alive.
  UpdateRecorder recorder;
  auto watch = registry->Watch("interop-http", recorder.Callback());
  EXPECT_TRUE(recorder.WaitIds({"h-1"}, 10s));
  auto all = registry->List("interop-http", true);
  ASSERT_TRUE(all && all->size() == 2);
  EXPECT_EQ(all->at(1).health, HealthState::kCritical);
  EXPECT_FALSE(all->at(1).detail.empty()) << "Consul's check output explains why";

  // No heartbeats in this mode, but an agent that forgot the service still
  // gets it back.
  agent_.Kill();
  agent_.Start();
  EXPECT_TRUE(recorder.WaitIds({"h-1"}, 20s));
  EXPECT_TRUE(WaitFor([&] { return (*registration)->state() == RegistrationState::kActive; }, 10s));
}

TEST_F(ConsulInteropTest, IdleWatchDoesNotSpin) {
  auto registry = Open(agent_.url() + "?wait=1s");
  UpdateRecorder recorder;
  auto before = consul::RequestsSent(consul::RequestKind::kWatch);
  auto watch = registry->Watch("interop-idle", recorder.Callback());
  ASSERT_TRUE(recorder.WaitIds({}, 5s));
  // Unrelated churn must not wake this watch into a loop either.
  auto noisy = registry->Register(Instance("interop-noise", "n", 9300));
  ASSERT_TRUE(noisy);
  std::this_thread::sleep_for(3500ms);
  auto sent = consul::RequestsSent(consul::RequestKind::kWatch) - before;
  // One initial query, then one blocking query per wait=1s (+1/16 jitter).
  EXPECT_GE(sent, 3u);
  EXPECT_LE(sent, 6u);
  EXPECT_EQ(recorder.count(), 1u) << "wakeups that change nothing are not delivered";
}

TEST_F(ConsulInteropTest, StaleReadsWork) {
  auto registry = Open(agent_.url() + "?stale=1");
  auto registration = registry->Register(Instance("interop-stale", "s-1", 9400));
  ASSERT_TRUE(registration);
  UpdateRecorder recorder;
  auto watch = registry->Watch("interop-stale", recorder.Callback());
  EXPECT_TRUE(recorder.WaitIds({"s-1"}, 5s));
  auto services = registry->Services();
  ASSERT_TRUE(services);
  EXPECT_NE(std::find(services->begin(), services->end(), "interop-stale"), services->end());
}

class ConsulAclTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "disco-root-token-0xC0FFEE";
  void SetUp() override { agent_.Start(); }
  ConsulAgent agent_{ConsulAgentOptions{.acl_master_token = kToken}};
};

TEST_F(ConsulAclTest, TokenGoesOutAsAHeaderAndNeverIntoLogs) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto& logger = log::Get();
  auto old_level = logger.level();
  logger.sinks().push_back(sink);
  logger.set_level(spdlog::level::trace);

  {
    auto anonymous = MakeRegistry(agent_.url());
    ASSERT_TRUE(anonymous);
    auto denied = (*anonymous)->Register(Instance("acl-svc", "a-1", 9500));
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error().code, ErrorCode::kPermissionDenied) << denied.error().ToString();

    auto url = agent_.url() + "?token=" + kToken;
    auto authorized = MakeRegistry(url);
    ASSERT_TRUE(authorized);
    EXPECT_EQ((*authorized)->url().find(kToken), std::string::npos) << (*authorized)->url();
    auto registration = (*authorized)->Register(Instance("acl-svc", "a-1", 9500));
    ASSERT_TRUE(registration) << registration.error().ToString();
    auto list = (*authorized)->List("acl-svc");
    ASSERT_TRUE(list);
    EXPECT_EQ(list->size(), 1u);
    UpdateRecorder recorder;
    auto watch = (*authorized)->Watch("acl-svc", recorder.Callback());
    EXPECT_TRUE(recorder.WaitIds({"a-1"}, 5s));

    // ACLs filter reads rather than refuse them: without a token it is empty.
    auto filtered = (*anonymous)->List("acl-svc");
    ASSERT_TRUE(filtered);
    EXPECT_TRUE(filtered->empty());

    // From the environment, when the URL has none.
    setenv("DISCO_CONSUL_TOKEN", kToken, 1);
    auto from_env = MakeRegistry(agent_.url());
    unsetenv("DISCO_CONSUL_TOKEN");
    ASSERT_TRUE(from_env);
    auto env_list = (*from_env)->List("acl-svc");
    ASSERT_TRUE(env_list);
    EXPECT_EQ(env_list->size(), 1u);

    // A wrong token: refused, and the failure is logged without any token.
    auto wrong = MakeRegistry(agent_.url() + "?token=wrong-" + std::string(kToken));
    ASSERT_TRUE(wrong);
    auto refused = (*wrong)->Register(Instance("acl-svc", "a-2", 9501));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, ErrorCode::kPermissionDenied);
    EXPECT_EQ(refused.error().message.find(kToken), std::string::npos);
    agent_.Kill();  // errors and restoring registrations log their messages
    std::this_thread::sleep_for(1500ms);
  }
  logger.sinks().pop_back();
  logger.set_level(old_level);
  EXPECT_FALSE(captured.str().empty());
  EXPECT_EQ(captured.str().find(kToken), std::string::npos) << captured.str();
}

}  // namespace
}  // namespace disco::testing
