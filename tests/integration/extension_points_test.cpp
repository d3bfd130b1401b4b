// The two extension points a user plugs into (issue 13): a balancer policy
// of their own (RegisterBalancer) and a registry backend for a URL scheme of
// their own (RegisterRegistryScheme), used through MakeRegistry, Resolver
// and http::Client against a real http::Server on loopback.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <thread>

#include "disco/balancer.h"
#include "disco/http/channel.h"
#include "disco/http/client.h"
#include "disco/http/server.h"
#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/run_awaitable.h"

namespace disco {
namespace {

using namespace std::chrono_literals;

// "last": always the last endpoint of the snapshot that is not ejected.
class LastPicker final : public Picker {
 public:
  explicit LastPicker(SnapshotConstPtr snapshot) : snapshot_(std::move(snapshot)) {}
  const Endpoint* Pick(const PickContext&) override {
    const auto& endpoints = snapshot_->endpoints;
    if (endpoints.empty()) return nullptr;
    for (auto it = endpoints.rbegin(); it != endpoints.rend(); ++it)
      if (!it->ejected()) return &*it;
    return &endpoints.back();
  }

 private:
  SnapshotConstPtr snapshot_;
};

class LastBalancer final : public Balancer {
 public:
  std::string_view name() const override { return "last"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<LastPicker>(std::move(snapshot));
  }
};

// "static://host:port,host:port": a read-only registry in which every
// service has one instance per address of the URL (static-1, static-2...).
class StaticRegistry final : public Registry {
 public:
  explicit StaticRegistry(const RegistryUrl& url) : url_(url.Redacted()), endpoints_(url.endpoints) {}
  const std::string& url() const override { return url_; }
  Result<std::unique_ptr<Registration>> Register(const ServiceInstance&,
                                                 const RegisterOptions&) override {
    return Fail(ErrorCode::kInvalidArgument, "static:// is read-only");
  }
  Result<void> Deregister(std::string_view, std::string_view) override {
    return Fail(ErrorCode::kInvalidArgument, "static:// is read-only");
  }
  Result<std::vector<InstanceStatus>> List(std::string_view service, bool) override {
    std::vector<InstanceStatus> out;
    for (const auto& instance : Instances(service)) out.push_back({instance});
    return out;
  }
  Result<std::vector<std::string>> Services() override { return std::vector<std::string>{}; }

  // The one update, from a thread of the watch's own (callbacks never run
  // on the caller's thread), joined when the handle goes.
  class Handle final : public WatchHandle {
   public:
    explicit Handle(std::thread thread) : thread_(std::move(thread)) {}
    ~Handle() override { thread_.join(); }

   private:
    std::thread thread_;
  };
  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    WatchUpdate update{.ok = true, .instances = Instances(service)};
    return std::make_unique<Handle>(
        std::thread([update = std::move(update), callback = std::move(callback)] { callback(update); }));
  }

 private:
  std::vector<ServiceInstance> Instances(std::string_view service) const {
    std::vector<ServiceInstance> out;
    for (std::size_t i = 0; i < endpoints_.size(); ++i) {
      out.push_back({.service = std::string(service),
                     .id = "static-" + std::to_string(i + 1),
                     .host = endpoints_[i].host,
                     .port = endpoints_[i].port});
    }
    return out;
  }

  std::string url_;
  std::vector<HostPort> endpoints_;
};

// Registered once for the whole test binary (registrations are process-wide
// and permanent, as at a program's start-up).
void RegisterExtensions() {
  static const bool done = [] {
    EXPECT_TRUE(RegisterBalancer("last", [] { return std::make_unique<LastBalancer>(); }));
    EXPECT_TRUE(RegisterRegistryScheme(
        {.name = "static",
         .make = [](const RegistryUrl& url, const RegistryOptions&)
             -> Result<std::unique_ptr<Registry>> { return std::make_unique<StaticRegistry>(url); },
         .default_port = 7000}));
    return true;
  }();
  (void)done;
}

using disco::testing::RunAwaitable;

std::unique_ptr<http::Server> StartServer(const std::string& name) {
  http::Router router;
  router.Add("GET", "/who", [name](http::Request&) -> http::Awaitable<http::Response> {
    co_return http::Response::Json(200, "{\"name\":\"" + name + "\"}");
  });
  http::ServerOptions options;
  options.threads = 1;
  options.service = name;
  options.access_log = false;
  auto server = std::make_unique<http::Server>(std::move(router), options);
  EXPECT_TRUE(server->Start());
  return server;
}

TEST(ExtensionPointsTest, ACustomSchemeParsesLikeTheBuiltIns) {
  RegisterExtensions();
  auto url = ParseRegistryUrl("static://127.0.0.1:7001,localhost?zone=a");
  ASSERT_TRUE(url) << url.error().message;
  ASSERT_EQ(url->endpoints.size(), 2u);
  EXPECT_EQ(url->endpoints[1].port, 7000) << "the scheme's default port";
  EXPECT_EQ(url->params["zone"], "a");
  auto names = RegistrySchemeNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "static"), names.end());
  // Unknown schemes name every known one, the registered ones included.
  auto unknown = ParseRegistryUrl("zookeeper://h:1");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("static"), std::string::npos) << unknown.error().message;
  EXPECT_NE(unknown.error().message.find("etcd"), std::string::npos) << unknown.error().message;
}

TEST(ExtensionPointsTest, BadOrTakenNamesAreRefused) {
  RegisterExtensions();
  auto factory = [] { return std::make_unique<LastBalancer>(); };
  EXPECT_FALSE(RegisterBalancer("last", factory)) << "taken";
  EXPECT_FALSE(RegisterBalancer("round_robin", factory)) << "built in";
  EXPECT_FALSE(RegisterBalancer("", factory));
  EXPECT_FALSE(RegisterBalancer("Has Space", factory));
  EXPECT_FALSE(RegisterBalancer("none", nullptr));
  auto make = [](const RegistryUrl& url, const RegistryOptions&) -> Result<std::unique_ptr<Registry>> {
    return std::make_unique<StaticRegistry>(url);
  };
  EXPECT_FALSE(RegisterRegistryScheme({.name = "static", .make = make})) << "taken";
  EXPECT_FALSE(RegisterRegistryScheme({.name = "etcd", .make = make})) << "built in";
  EXPECT_FALSE(RegisterRegistryScheme({.name = "9p", .make = make}));
  EXPECT_FALSE(RegisterRegistryScheme({.name = "Static", .make = make}));
  EXPECT_FALSE(RegisterRegistryScheme({.name = "nofactory"}));
  auto names = AllBalancerNames();
  EXPECT_EQ(std::count(names.begin(), names.end(), "last"), 1);
  auto unknown = MakeBalancer("nope");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("last"), std::string::npos) << unknown.error().message;
}

TEST(ExtensionPointsTest, ResolverAndClientUseTheCustomSchemeAndPolicy) {
  RegisterExtensions();
  auto first = StartServer("first");
  auto second = StartServer("second");
  const std::string url = "static://127.0.0.1:" + std::to_string(first->port()) +
                          ",127.0.0.1:" + std::to_string(second->port());
  auto registry = MakeRegistry(url);
  ASSERT_TRUE(registry) << registry.error().message;
  EXPECT_FALSE((*registry)->Register({.service = "s", .id = "x", .host = "h", .port = 1}));

  ResolverOptions resolver_options;
  resolver_options.policy = "last";
  auto resolver = Resolver::Make(**registry, "any-service", resolver_options);
  ASSERT_TRUE(resolver) << resolver.error().message;
  ASSERT_TRUE((*resolver)->WaitReady(5s));
  for (int i = 0; i < 5; ++i) {
    auto picked = (*resolver)->Pick();
    ASSERT_TRUE(picked);
    EXPECT_EQ(picked->instance.id, "static-2");
  }

  // The HTTP client, with the custom policy, through the custom registry:
  // every call lands on the last instance.
  http::ClientOptions client_options;
  client_options.policy = "last";
  http::Client client(**registry, client_options);
  for (int i = 0; i < 3; ++i) {
    http::ClientRequest request;
    request.url = "http://any-service/who";
    auto answer = RunAwaitable(client.Send(std::move(request)));
    ASSERT_TRUE(answer) << answer.error().message;
    EXPECT_EQ(answer->status, 200);
    EXPECT_EQ(answer->body, R"({"name":"second"})");
    EXPECT_EQ(answer->instance_id, "static-2");
  }
  // A Channel of the same set-up, called with a target, lands there too.
  http::ChannelSet channels(**registry, client_options);
  auto channel = channels.Get("any-service");
  ASSERT_TRUE(channel) << channel.error().message;
  auto through_channel = RunAwaitable((*channel)->Send({.target = "/who"}));
  ASSERT_TRUE(through_channel) << through_channel.error().message;
  EXPECT_EQ(through_channel->instance_id, "static-2");
  // And when the last instance is gone, its ejection sends the policy to
  // the other one (the policy honours outlier detection).
  second->Drain(0ms);
  second.reset();
  int landed_on_first = 0;
  for (int i = 0; i < 5; ++i) {
    http::ClientRequest request;
    request.url = "http://any-service/who";
    auto answer = RunAwaitable(client.Send(std::move(request)));
    if (answer && answer->body == R"({"name":"first"})") ++landed_on_first;
  }
  EXPECT_EQ(landed_on_first, 5) << "retries and ejection move the calls to static-1";
}

}  // namespace
}  // namespace disco
