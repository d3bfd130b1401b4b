// The etcd key/value layout (naming/endpoints convention) without a server.
#include "registry/etcd/etcd_codec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace disco::etcd {
namespace {

TEST(EtcdCodecTest, KeysFollowTheNamingConvention) {
  EXPECT_EQ(ServicePrefix("services", "svc"), "services/svc/");
  EXPECT_EQ(InstanceKey("services", "svc", "a"), "services/svc/a");
  EXPECT_EQ(RootPrefix("services"), "services/");
  EXPECT_EQ(ServicePrefix("", "svc"), "svc/");
  EXPECT_EQ(RootPrefix(""), "");
}

TEST(EtcdCodecTest, PrefixRangeEndMatchesClientv3) {
  EXPECT_EQ(PrefixRangeEnd("services/svc/"), "services/svc0");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
  EXPECT_EQ(PrefixRangeEnd("\xff\xff"), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(EtcdCodecTest, EncodeWritesGoFieldOrderAndRoundTrips) {
  ServiceInstance instance;
  instance.service = "svc";
  instance.id = "a";
  instance.host = "10.0.0.5";
  instance.port = 8080;
  instance.tags = {"x", "y"};
  instance.metadata = {{"k", "v"}};
  instance.weight = 3;
  instance.zone = "z1";
  auto value = EncodeValue(instance);
  EXPECT_TRUE(value.starts_with(R"({"Op":0,"Addr":"10.0.0.5:8080","Metadata":{)")) << value;
  auto decoded = DecodeValue("svc", "services/svc/", "services/svc/a", value);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(*decoded, instance);
}

TEST(EtcdCodecTest, MinimalInstanceHasNoEmptyExtras) {
  ServiceInstance instance{"svc", "a", "::1", 9000, {}, {}, 1, {}};
  auto json = nlohmann::json::parse(EncodeValue(instance));
  EXPECT_EQ(json["Addr"], "[::1]:9000");
  EXPECT_EQ(json["Metadata"], (nlohmann::json{{"id", "a"}, {"weight", 1}}));
  auto decoded = DecodeValue("svc", "services/svc/", "services/svc/a", EncodeValue(instance));
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->host, "::1");
}

// An etcd key is any bytes: an id that is not UTF-8 is malformed data
// (skipped), not an instance whose id breaks every JSON writer after it
// (the gateway's /sd/prometheus answered 500, `disco list --json` aborted).
TEST(EtcdCodecTest, AnIdThatIsNotUtf8IsMalformed) {
  auto bad = DecodeValue("svc", "p/svc/", "p/svc/evil\xff\xfe", R"({"Op":0,"Addr":"127.0.0.1:9000"})");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kMalformed);
  EXPECT_TRUE(DecodeValue("svc", "p/svc/", "p/svc/caf\xc3\xa9", R"({"Op":0,"Addr":"127.0.0.1:9000"})"));
}

TEST(EtcdCodecTest, ReadsWhatGoWrites) {
  auto go = DecodeValue("svc", "p/svc/", "p/svc/127.0.0.1:9000",
                        R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  ASSERT_TRUE(go) << go.error().ToString();
  EXPECT_EQ(go->id, "127.0.0.1:9000");
  EXPECT_EQ(go->host, "127.0.0.1");
  EXPECT_EQ(go->port, 9000);
  EXPECT_EQ(go->weight, 1u);

  auto foreign = DecodeValue(
      "svc", "p/svc/", "p/svc/e1",
      R"({"Addr":"h:1","Metadata":{"id":"other","weight":0,"zone":5,"version":"v2","n":1,"tags":"x"}})");
  ASSERT_TRUE(foreign) << foreign.error().ToString();
  EXPECT_EQ(foreign->id, "e1") << "the key decides the id";
  EXPECT_EQ(foreign->weight, 1u) << "an invalid weight is ignored";
  EXPECT_EQ(foreign->zone, "");
  EXPECT_TRUE(foreign->tags.empty());
  EXPECT_EQ(foreign->metadata.at("version"), "v2");
  EXPECT_EQ(foreign->metadata.at("n"), "1");
}

TEST(EtcdCodecTest, MalformedValuesAreErrorsNotExceptions) {
  for (const char* value :
       {"", "not json", "{", "[]", "null", "42", R"({"Addr":1})", R"({"Addr":""})",
        R"({"Metadata":{}})", R"({"Addr":"h"})", R"({"Addr":"h:0"})", R"({"Addr":"h:65536"})",
        R"({"Addr":"h:x"})", R"({"Addr":":80"})", R"({"Addr":"[::1:80"})"}) {
    auto decoded = DecodeValue("svc", "p/svc/", "p/svc/a", value);
    ASSERT_FALSE(decoded) << value;
    EXPECT_EQ(decoded.error().code, ErrorCode::kMalformed) << value;
  }
  EXPECT_FALSE(DecodeValue("svc", "p/svc/", "p/svc/", R"({"Addr":"h:1"})")) << "no id";
}

TEST(EtcdCodecTest, InvalidUtf8InMetadataDoesNotThrow) {
  ServiceInstance instance{"svc", "a", "h", 1, {"\xff\xfe"}, {{"k", "\xc3"}}, 1, "\xff"};
  std::string value;
  ASSERT_NO_THROW(value = EncodeValue(instance));
  EXPECT_TRUE(DecodeValue("svc", "p/svc/", "p/svc/a", value));
}

}  // namespace
}  // namespace disco::etcd
