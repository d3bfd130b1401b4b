// The etcd URL param auto_sync (member discovery): parsing, validation, and
// which client URLs of a MemberList answer a connection can dial.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "disco/registry.h"
#include "registry/etcd/etcd_auto_sync.h"

namespace disco::etcd {
namespace {

using namespace std::chrono_literals;

RegistryUrl Url(const std::string& text) {
  auto url = ParseRegistryUrl(text);
  EXPECT_TRUE(url) << url.error().ToString();
  return *url;
}

TEST(EtcdAutoSyncOptionTest, ParsesWholeSecondsOffByDefault) {
  EXPECT_EQ(*ParseAutoSync(Url("etcd://127.0.0.1:2379")), 0s);
  EXPECT_EQ(*ParseAutoSync(Url("etcd://127.0.0.1:2379?auto_sync=0")), 0s);
  EXPECT_EQ(*ParseAutoSync(Url("etcd://127.0.0.1:2379?auto_sync=30")), 30s);
  EXPECT_EQ(*ParseAutoSync(Url("etcd://127.0.0.1:2379?auto_sync=999999")), 999999s);
}

TEST(EtcdAutoSyncOptionTest, BadValuesAreInvalidArgumentsNamingTheOption) {
  for (const std::string bad : {"", "-1", "1.5", "30s", "abc", "1000000", " 5"}) {
    const std::string url = "etcd://127.0.0.1:2379?auto_sync=" + bad;
    auto parsed = ParseRegistryUrl(url);
    if (!parsed) continue;  // rejected even earlier, which is fine too
    auto value = ParseAutoSync(*parsed);
    ASSERT_FALSE(value) << bad;
    EXPECT_EQ(value.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(value.error().message.find("auto_sync"), std::string::npos) << value.error().message;
    // Opening the registry reports the same error, before any connection.
    auto registry = MakeRegistry(url, RegistryOptions{});
    ASSERT_FALSE(registry) << bad;
    EXPECT_EQ(registry.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(registry.error().message.find("auto_sync"), std::string::npos);
  }
}

// With discovery on and no etcd at all, the registry opens and closes
// promptly: the discovery thread's call is cancelled by the destructor.
TEST(EtcdAutoSyncOptionTest, RegistryWithAutoSyncClosesPromptly) {
  RegistryOptions options;
  options.request_timeout = 5000ms;
  const auto start = std::chrono::steady_clock::now();
  {
    auto registry = MakeRegistry("etcd://127.0.0.1:1?auto_sync=1", options);
    ASSERT_TRUE(registry) << registry.error().ToString();
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(EtcdAutoSyncOptionTest, DialableClientUrlsFollowTheTlsSetting) {
  EXPECT_EQ(DialableClientUrl("http://10.0.0.1:2379", false)->ToString(), "10.0.0.1:2379");
  EXPECT_EQ(DialableClientUrl("http://[::1]:2379/", false)->ToString(), "[::1]:2379");
  EXPECT_FALSE(DialableClientUrl("https://10.0.0.1:2379", false));
  EXPECT_EQ(DialableClientUrl("https://etcd-a:2379", true)->ToString(), "etcd-a:2379");
  EXPECT_FALSE(DialableClientUrl("http://10.0.0.1:2379", true));
  EXPECT_FALSE(DialableClientUrl("unix://localhost:2379", false));
  EXPECT_FALSE(DialableClientUrl("", false));
  EXPECT_FALSE(DialableClientUrl("http://", false));
}

}  // namespace
}  // namespace disco::etcd
