#include "disco/registry_url.h"

#include <gtest/gtest.h>

#include "disco/registry.h"

namespace disco {
namespace {

TEST(RegistryUrlTest, ParsesEtcdWithSeveralEndpoints) {
  auto url = ParseRegistryUrl("etcd://127.0.0.1:2379,10.0.0.2:12379,[::1]:2380");
  ASSERT_TRUE(url) << url.error().ToString();
  EXPECT_EQ(url->scheme, "etcd");
  ASSERT_EQ(url->endpoints.size(), 3u);
  EXPECT_EQ(url->endpoints[0], (HostPort{"127.0.0.1", 2379}));
  EXPECT_EQ(url->endpoints[1], (HostPort{"10.0.0.2", 12379}));
  EXPECT_EQ(url->endpoints[2], (HostPort{"::1", 2380}));
  EXPECT_EQ(url->endpoints[2].ToString(), "[::1]:2380");
}

TEST(RegistryUrlTest, DefaultPortsPerScheme) {
  EXPECT_EQ(ParseRegistryUrl("etcd://localhost")->endpoints.at(0).port, 2379);
  EXPECT_EQ(ParseRegistryUrl("consul://localhost")->endpoints.at(0).port, 8500);
}

TEST(RegistryUrlTest, QueryParametersAreDecodedAndTokensRedacted) {
  auto url = ParseRegistryUrl("consul://127.0.0.1:8500?token=s%2Fecret&stale=1");
  ASSERT_TRUE(url) << url.error().ToString();
  EXPECT_EQ(url->params.at("token"), "s/ecret");
  EXPECT_EQ(url->params.at("stale"), "1");
  EXPECT_EQ(url->Redacted(), "consul://127.0.0.1:8500?stale=1&token=***");
  EXPECT_EQ(ParseRegistryUrl("etcd://h:1?user=u&password=p")->Redacted(),
            "etcd://h:1?password=***&user=u");
}

TEST(RegistryUrlTest, MemoryTakesAName) {
  auto url = ParseRegistryUrl("memory://unit");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->name, "unit");
  EXPECT_TRUE(url->endpoints.empty());
  EXPECT_EQ(ParseRegistryUrl("memory://")->name, "");
}

struct BadUrl {
  const char* url;
  const char* expected_fragment;  // the error must name what is wrong
};

void PrintTo(const BadUrl& bad, std::ostream* os) { *os << bad.url; }

class RegistryUrlErrorTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(RegistryUrlErrorTest, RejectsWithAMessageNamingTheProblem) {
  auto url = ParseRegistryUrl(GetParam().url);
  ASSERT_FALSE(url) << GetParam().url;
  EXPECT_EQ(url.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(url.error().message.find(GetParam().expected_fragment), std::string::npos)
      << "message: " << url.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RegistryUrlErrorTest,
    ::testing::Values(
        BadUrl{"127.0.0.1:2379", "no scheme"}, BadUrl{"zookeeper://h:1", "unknown registry scheme"},
        BadUrl{"etcd://", "names no host"}, BadUrl{"etcd://h:0", "bad port"},
        BadUrl{"etcd://h:65536", "bad port"}, BadUrl{"etcd://h:abc", "bad port"},
        BadUrl{"etcd://h:1,", "empty address"}, BadUrl{"etcd://::1:2379", "IPv6"},
        BadUrl{"etcd://[::1:2379", "unclosed"}, BadUrl{"etcd://h:1/path", "host:port"},
        BadUrl{"etcd://user@h:1", "host:port"}, BadUrl{"consul://a:1,", "empty address"},
        BadUrl{"consul://h:1?token=%zz", "percent-escape"}, BadUrl{"etcd://:2379", "missing host"},
        BadUrl{"etcd://h:1?prefix=%-1", "percent-escape"}, BadUrl{"etcd://[[x]:1", "brackets"},
        BadUrl{"etcd://a]b:1", "brackets"}));

TEST(RegistryFactoryTest, BadUrlIsAnErrorNotAThrow) {
  auto registry = MakeRegistry("nope");
  ASSERT_FALSE(registry);
  EXPECT_EQ(registry.error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace disco
