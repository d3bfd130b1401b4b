// The Consul JSON codec and URL parameters, without an agent: what the
// backend makes of well-formed, odd and malformed agent answers.
#include "registry/consul/consul_codec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "registry/consul/consul_core.h"
#include "registry/consul/consul_watch.h"

namespace disco::consul {
namespace {

using namespace std::chrono_literals;

TEST(ConsulCodecTest, RegistrationBodyUsesDurationStringsAndAPassingTtlCheck) {
  ServiceInstance instance{"api", "api-1", "10.0.0.5", 8080, {"v2"}, {{"proto", "http"}}, 5, "z1"};
  RegisterOptions options;
  options.ttl = 10s;
  options.deregister_critical_after = 90s;
  auto body = nlohmann::json::parse(EncodeRegistration(instance, options, 1s));
  EXPECT_EQ(body["ID"], "api-1");
  EXPECT_EQ(body["Name"], "api");
  EXPECT_EQ(body["Address"], "10.0.0.5");
  EXPECT_EQ(body["Port"], 8080);
  EXPECT_EQ(body["Tags"], nlohmann::json::array({"v2"}));
  EXPECT_EQ(body["Meta"]["proto"], "http");
  EXPECT_EQ(body["Meta"]["disco-zone"], "z1");
  EXPECT_EQ(body["Weights"]["Passing"], 5);
  EXPECT_EQ(body["Weights"]["Warning"], 1);
  const auto& check = body["Check"];
  EXPECT_EQ(check["CheckID"], "service:api-1");
  EXPECT_EQ(check["TTL"], "10s") << "a bare number would be nanoseconds";
  EXPECT_EQ(check["Status"], "passing")
      << "else the check starts critical and the instance is invisible";
  EXPECT_EQ(check["DeregisterCriticalServiceAfter"], "90s");
  EXPECT_FALSE(check.contains("HTTP"));
}

TEST(ConsulCodecTest, HttpCheckModeHasAnIntervalAndNoTtl) {
  ServiceInstance instance{"api", "api-1", "127.0.0.1", 8080, {}, {}, 1, ""};
  RegisterOptions options;
  options.http_check_url = "http://127.0.0.1:8080/health";
  auto check = nlohmann::json::parse(EncodeRegistration(instance, options, 3500ms))["Check"];
  EXPECT_EQ(check["HTTP"], "http://127.0.0.1:8080/health");
  EXPECT_EQ(check["Interval"], "3500ms");
  EXPECT_FALSE(check.contains("TTL")) << "TTL and Interval together are a 400";
}

constexpr const char* kHealthAnswer = R"([
  {"Node": {"Node": "n1", "Address": "10.1.1.1"},
   "Service": {"ID": "b", "Service": "api", "Tags": ["x"], "Address": "", "Meta": null, "Port": 81,
               "Weights": {"Passing": 3, "Warning": 1}},
   "Checks": [{"CheckID": "serfHealth", "Status": "passing", "ServiceID": ""},
              {"CheckID": "service:b", "Status": "warning", "Output": "slow"}]},
  {"Node": {"Node": "n1", "Address": "10.1.1.1"},
   "Service": {"ID": "a", "Service": "api", "Tags": null, "Address": "10.2.2.2", "Meta": {"k": "v", "disco-zone": "z"},
               "Port": 80, "NewField": {"from": "a future Consul"}},
   "Checks": [{"CheckID": "service:a", "Status": "critical", "Output": "TTL expired"},
              {"CheckID": "other", "Status": "warning", "Output": "meh"}]},
  {"Node": {"Node": "n1", "Address": "10.1.1.1"},
   "Service": {"ID": "c", "Service": "api", "Port": 82}, "Checks": []}
])";

TEST(ConsulCodecTest, DecodesHealthWithNodeAddressFallbackAndWorstCheck) {
  auto decoded = DecodeHealth(kHealthAnswer);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_TRUE(decoded->warnings.empty());
  ASSERT_EQ(decoded->instances.size(), 3u);
  const auto& a = decoded->instances[0];
  EXPECT_EQ(a.instance.id, "a") << "sorted by id";
  EXPECT_EQ(a.instance.host, "10.2.2.2");
  EXPECT_EQ(a.instance.zone, "z");
  EXPECT_EQ(a.instance.metadata, (std::map<std::string, std::string>{{"k", "v"}}));
  EXPECT_EQ(a.instance.weight, 1u);
  EXPECT_EQ(a.health, HealthState::kCritical) << "the worst check wins";
  EXPECT_EQ(a.detail, "TTL expired");
  const auto& b = decoded->instances[1];
  EXPECT_EQ(b.instance.host, "10.1.1.1") << "empty Service.Address means the node's address";
  EXPECT_EQ(b.instance.port, 81);
  EXPECT_EQ(b.instance.weight, 3u);
  EXPECT_EQ(b.instance.tags, std::vector<std::string>{"x"});
  EXPECT_EQ(b.health, HealthState::kWarning);
  EXPECT_EQ(b.detail, "slow");
  EXPECT_EQ(decoded->instances[2].health, HealthState::kPassing)
      << "no checks: passing, as ?passing sees it";
}

TEST(ConsulCodecTest, MalformedEntriesAreSkippedWithAReason) {
  auto decoded = DecodeHealth(R"([
    42, null, {"Service": "nope"}, {"Service": {"Service": "api", "Port": 80}},
    {"Service": {"ID": "p0", "Port": 0}, "Node": {"Address": "h"}},
    {"Service": {"ID": "pbig", "Port": 70000}, "Node": {"Address": "h"}},
    {"Service": {"ID": "pstr", "Port": "80"}, "Node": {"Address": "h"}},
    {"Service": {"ID": "noaddr", "Port": 80}, "Node": {"Address": ""}},
    {"Service": {"ID": "ok", "Port": 80, "Tags": [1, "t"], "Meta": {"n": 1, "s": "x"},
                 "Weights": {"Passing": "heavy"}},
     "Node": {"Address": "h"}, "Checks": [7, {"Status": 3}]},
    {"Service": {"ID": "ok", "Port": 81}, "Node": {"Address": "h2"},
     "Checks": [{"Status": "critical"}]}
  ])");
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  ASSERT_EQ(decoded->instances.size(), 1u);
  const auto& ok = decoded->instances[0];
  EXPECT_EQ(ok.instance.id, "ok");
  EXPECT_EQ(ok.instance.tags, std::vector<std::string>{"t"});
  EXPECT_EQ(ok.instance.metadata.size(), 1u);
  EXPECT_EQ(ok.instance.weight, 1u);
  EXPECT_EQ(ok.health, HealthState::kCritical) << "an unreadable status is not vouched for";
  EXPECT_EQ(decoded->warnings.size(), 9u);
}

TEST(ConsulCodecTest, ADuplicateIdKeepsItsHealthiestEntry) {
  // A registrant that moved to another agent while the old one still holds
  // its copy (critical): the passing copy is the one listed.
  auto decoded = DecodeHealth(R"([
    {"Service": {"ID": "x", "Port": 80}, "Node": {"Address": "old"},
     "Checks": [{"Status": "critical"}]},
    {"Service": {"ID": "x", "Port": 80}, "Node": {"Address": "new"},
     "Checks": [{"Status": "passing"}]}
  ])");
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->instances.size(), 1u);
  EXPECT_EQ(decoded->instances[0].instance.host, "new");
  EXPECT_EQ(decoded->instances[0].health, HealthState::kPassing);
}

TEST(ConsulCodecTest, AnswersThatAreNotArraysAreMalformedNotACrash) {
  for (const char* body : {"", "{", "null", "{}", "\"x\"", "[1,", "<html>502 Bad Gateway</html>"}) {
    auto decoded = DecodeHealth(body);
    ASSERT_FALSE(decoded) << body;
    EXPECT_EQ(decoded.error().code, ErrorCode::kMalformed);
  }
  auto empty = DecodeHealth("[]");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->instances.empty());
}

TEST(ConsulCodecTest, ServicesOmitConsulItself) {
  auto names = DecodeServices(R"({"web":["a"],"consul":[],"api":null})");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"api", "web"}));
  EXPECT_FALSE(DecodeServices("[]"));
  EXPECT_FALSE(DecodeServices("garbage"));
}

TEST(ConsulConfigTest, ReadsTokenStaleAndWait) {
  auto url = ParseRegistryUrl("consul://127.0.0.1:8500?token=s3cret&stale=1&wait=45s");
  ASSERT_TRUE(url);
  auto config = ParseConfig(*url, {});
  ASSERT_TRUE(config) << config.error().ToString();
  EXPECT_EQ(config->token, "s3cret");
  EXPECT_TRUE(config->stale);
  EXPECT_EQ(config->wait, 45s);
  EXPECT_EQ(config->url.find("s3cret"), std::string::npos)
      << "the token never appears in the URL we print";
  EXPECT_EQ(ParseConfig(*ParseRegistryUrl("consul://h?wait=2m"), {})->wait, 120s);
  EXPECT_EQ(ParseConfig(*ParseRegistryUrl("consul://h"), {})->wait, 30s);
}

TEST(ConsulConfigTest, RejectsUnknownParametersAndBadValues) {
  for (const char* text : {"consul://h?wiat=30s", "consul://h?wait=0s", "consul://h?wait=11m",
                           "consul://h?wait=soon", "consul://h?stale=maybe", "consul://h?dc=",
                           "consul://h?dc=a%20b", "consul://h?dc=a/b", "consul://h?tag=",
                           "consul://h?tag=a,,b", "consul://h?tag=a%26b", "consul://h?tag=a b"}) {
    auto url = ParseRegistryUrl(text);
    ASSERT_TRUE(url) << text;
    auto config = ParseConfig(*url, {});
    ASSERT_FALSE(config) << text;
    EXPECT_EQ(config.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(config.error().message.find("consul:// parameter"), std::string::npos)
        << config.error().message;
  }
}

TEST(ConsulConfigTest, SeveralAgentsDatacenterAndTags) {
  auto config = ParseConfig(
      *ParseRegistryUrl("consul://a:1,b:2,c?dc=dc-2&tag=blue&tag=v1,canary"), {});
  ASSERT_TRUE(config) << config.error().ToString();
  ASSERT_EQ(config->agents.size(), 3u);
  EXPECT_EQ(config->agents[1].ToString(), "b:2");
  EXPECT_EQ(config->agents[2].port, 8500);
  EXPECT_EQ(config->dc, "dc-2");
  EXPECT_EQ(config->tags, (std::vector<std::string>{"blue", "v1", "canary"}));
  EXPECT_EQ(HealthTarget(*config, "orders", true),
            "/v1/health/service/orders?passing&dc=dc-2&tag=blue&tag=v1&tag=canary");
}

TEST(ConsulConfigTest, TokenFromTheEnvironmentWhenTheUrlHasNone) {
  setenv("DISCO_CONSUL_TOKEN", "from-env", 1);
  auto from_env = ParseConfig(*ParseRegistryUrl("consul://h"), {});
  auto from_url = ParseConfig(*ParseRegistryUrl("consul://h?token=from-url"), {});
  unsetenv("DISCO_CONSUL_TOKEN");
  ASSERT_TRUE(from_env && from_url);
  EXPECT_EQ(from_env->token, "from-env");
  EXPECT_EQ(from_url->token, "from-url");
}

}  // namespace
}  // namespace disco::consul
