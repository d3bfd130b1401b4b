// The etcd URL param auto_sync (member discovery): parsing, validation, and
// which client URLs of a MemberList answer a connection can dial.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

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
  // A hostile or broken member list: nothing but a plain host:port is dialled.
  EXPECT_FALSE(DialableClientUrl("http://unix:2379", false)) << "gRPC would read a socket path";
  EXPECT_FALSE(DialableClientUrl("http://UNIX-abstract:2379", false));
  EXPECT_FALSE(DialableClientUrl("http://user:secret@10.0.0.1:2379", false)) << "user info";
  EXPECT_EQ(DialableClientUrl("http://10.0.0.1:2379#x", false)->ToString(), "10.0.0.1:2379");
  EXPECT_EQ(DialableClientUrl("http://10.0.0.1:2379?a=b", false)->ToString(), "10.0.0.1:2379");
  EXPECT_FALSE(DialableClientUrl("http://10.0.0.1:2379", true));
  EXPECT_FALSE(DialableClientUrl("unix://localhost:2379", false));
  EXPECT_FALSE(DialableClientUrl("", false));
  EXPECT_FALSE(DialableClientUrl("http://", false));
}

ListedMember Member(std::uint64_t id, std::string name, std::vector<std::string> urls,
                    bool learner = false) {
  return {id, std::move(name), learner, std::move(urls)};
}

TEST(EtcdAutoSyncOptionTest, MemberEndpointsSkipLearnersUnstartedAndRepeats) {
  const std::vector<ListedMember> members = {
      Member(1, "a", {"http://10.0.0.1:2379", "unix://a:1", "http://10.0.0.1:2379/"}),
      Member(2, "", {"http://10.0.0.2:2379"}),                // not started yet
      Member(3, "c", {"http://10.0.0.3:2379"}, /*learner=*/true),
      Member(4, "d", {"https://10.0.0.4:2379", "http://10.0.0.4:2379"}),
  };
  auto picked = SelectMemberEndpoints(members, 4, /*tls=*/false);
  EXPECT_EQ(picked.targets, (std::vector<std::string>{"10.0.0.1:2379", "10.0.0.4:2379"}));
  EXPECT_EQ(picked.answered, 1u);
  EXPECT_FALSE(picked.truncated);
  EXPECT_EQ(SelectMemberEndpoints(members, 99, false).answered, 0u);
  EXPECT_EQ(SelectMemberEndpoints(members, 4, true).targets,
            (std::vector<std::string>{"10.0.0.4:2379"}));
  EXPECT_TRUE(SelectMemberEndpoints({}, 1, false).targets.empty());
}

// A member list of thousands (broken or hostile) gives at most
// kMaxDiscoveredEndpoints channels, the first ones listed.
TEST(EtcdAutoSyncOptionTest, MemberEndpointsAreCapped) {
  std::vector<ListedMember> members;
  for (int i = 0; i < 5000; ++i) {
    members.push_back(Member(static_cast<std::uint64_t>(i + 1), "m" + std::to_string(i),
                             {"http://10.1." + std::to_string(i / 250) + "." +
                              std::to_string(i % 250) + ":2379"}));
  }
  auto picked = SelectMemberEndpoints(members, 5000, false);
  ASSERT_EQ(picked.targets.size(), kMaxDiscoveredEndpoints);
  EXPECT_EQ(picked.targets.front(), "10.1.0.0:2379");
  EXPECT_TRUE(picked.truncated);
  EXPECT_EQ(picked.answered, 0u);  // the answering member was beyond the cap
  // One member listing many URLs is capped the same way.
  std::vector<std::string> urls;
  for (int port = 1; port <= 100; ++port) urls.push_back("http://h:" + std::to_string(port));
  EXPECT_EQ(SelectMemberEndpoints({Member(1, "a", urls)}, 1, false, 8).targets.size(), 8u);
  // Exactly the cap is not truncated.
  members.resize(kMaxDiscoveredEndpoints);
  EXPECT_FALSE(SelectMemberEndpoints(members, 1, false).truncated);
}

}  // namespace
}  // namespace disco::etcd
