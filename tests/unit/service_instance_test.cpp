#include "disco/service_instance.h"

#include <gtest/gtest.h>

namespace disco {
namespace {

ServiceInstance Valid() {
  ServiceInstance i;
  i.service = "user-service";
  i.id = "user-1";
  i.host = "127.0.0.1";
  i.port = 5001;
  return i;
}

TEST(ServiceInstanceTest, AddressBracketsIpv6) {
  auto i = Valid();
  EXPECT_EQ(i.Address(), "127.0.0.1:5001");
  i.host = "::1";
  EXPECT_EQ(i.Address(), "[::1]:5001");
}

TEST(ServiceInstanceTest, ValidInstancePasses) { EXPECT_TRUE(Validate(Valid())); }

TEST(ServiceInstanceTest, RejectsWhatSomeBackendCannotStore) {
  auto check = [](auto mutate, std::string_view fragment) {
    auto i = Valid();
    mutate(i);
    auto r = Validate(i);
    ASSERT_FALSE(r) << fragment;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find(fragment), std::string::npos) << r.error().message;
  };
  check([](auto& i) { i.service = ""; }, "service name is empty");
  check([](auto& i) { i.service = "a/b"; }, "service name");
  check([](auto& i) { i.id = "x y"; }, "instance id");
  check([](auto& i) { i.id = std::string(129, 'a'); }, "longer than 128");
  check([](auto& i) { i.id = ".."; }, "'.' or '..'");
  check([](auto& i) { i.host = ""; }, "host is empty");
  check([](auto& i) { i.host = "0.0.0.0"; }, "wildcard");
  check([](auto& i) { i.port = 0; }, "port");
  check([](auto& i) { i.weight = 0; }, "weight");
  check([](auto& i) { i.metadata["bad key"] = "v"; }, "metadata key");
  check([](auto& i) { i.metadata["consul-x"] = "v"; }, "reserved");
  check([](auto& i) { i.metadata["k"] = std::string(513, 'v'); }, "over 512");
  check([](auto& i) { i.tags.push_back(""); }, "tags");
  // Registries store JSON: no text that is not UTF-8 (a tag or value from
  // a flag could otherwise make the Consul codec's dump() throw).
  check([](auto& i) { i.tags.push_back("a\xff"); }, "not UTF-8");
  check([](auto& i) { i.metadata["k"] = "\xc0\xaf"; }, "not UTF-8");
  check([](auto& i) { i.host = "h\xed\xa0\x80"; }, "not UTF-8");
  auto utf8 = Valid();
  utf8.tags.push_back("caf\xc3\xa9");
  EXPECT_TRUE(Validate(utf8)) << "UTF-8 is fine";
}

}  // namespace
}  // namespace disco
