// consul:// against a real datacenter (3 servers, 2 client agents:
// consul_datacenter.h): several agent addresses, failover of registrations
// and discovery, the cleanup of a registration left on a failed agent, and
// the dc / tag filters.
//
// One datacenter for the whole suite (starting five agents costs seconds);
// each test leaves every member running again.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "disco/registry.h"
#include "fixture/consul_datacenter.h"
#include "fixture/update_recorder.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Ids = std::set<std::string>;

constexpr auto kTtl = 3s;
constexpr int kClient0 = ConsulDatacenter::kServers;  // member index of client 0

class ConsulClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dc_ = new ConsulDatacenter();
    dc_->Start();
  }
  static void TearDownTestSuite() {
    delete dc_;
    dc_ = nullptr;
  }
  void TearDown() override {
    for (int i = 0; i < ConsulDatacenter::kMembers; ++i) {
      if (!dc_->running(i)) dc_->Restart(i);
    }
  }

  static std::unique_ptr<Registry> Open(const std::string& url) {
    auto registry = MakeRegistry(url);
    EXPECT_TRUE(registry) << url << ": " << registry.error().ToString();
    return registry ? std::move(*registry) : nullptr;
  }

  // The service ids agent `member` holds locally (/v1/agent/services).
  static Ids AgentServices(int member) {
    auto answer = dc_->member(member).Http("GET", "/v1/agent/services");
    Ids ids;
    if (answer.status != 200) return ids;
    // Named: items() refers to the object, which a temporary would not outlive.
    const auto services = json::parse(answer.body, nullptr, false);
    for (const auto& [id, _] : services.items()) ids.insert(id);
    return ids;
  }

  // "<node>/<id>" of every catalog entry of `service`, asked of client 1.
  static Ids Catalog(const std::string& service) {
    auto answer = dc_->client(1).Http("GET", "/v1/catalog/service/" + service + "?stale");
    Ids out;
    for (const auto& entry : json::parse(answer.body, nullptr, false)) {
      out.insert(entry.value("Node", "") + "/" + entry.value("ServiceID", ""));
    }
    return out;
  }

  static std::string Node(int client) {
    return dc_->datacenter() + "-client-" + std::to_string(client);
  }

  static ConsulDatacenter* dc_;
};

ConsulDatacenter* ConsulClusterTest::dc_ = nullptr;

// Keeps, from the first full list on, every list a watch delivered that is
// not `want`: a lapse (an instance missing) or a ghost.
class LapseRecorder {
 public:
  explicit LapseRecorder(Ids want) : want_(std::move(want)) {}
  WatchCallback Callback() {
    return [this](const WatchUpdate& update) {
      recorder_.OnUpdate(update);
      if (!update.ok) return;
      std::lock_guard lock(mu_);
      Ids ids = UpdateRecorder::Ids(update);
      if (ids == want_) {
        full_ = true;
      } else if (full_) {
        wrong_.push_back(ids.size());
      }
    };
  }
  std::vector<std::size_t> wrong() {
    std::lock_guard lock(mu_);
    return wrong_;
  }
  UpdateRecorder& recorder() { return recorder_; }

 private:
  UpdateRecorder recorder_;
  std::mutex mu_;
  const Ids want_;
  bool full_ = false;
  std::vector<std::size_t> wrong_;  // sizes of the wrong lists
};

TEST_F(ConsulClusterTest, ClientAgentKillMovesRegistrationsAndCleansTheOldCopy) {
  const std::string service = "cluster-web";
  auto registrant = Open(dc_->Url());  // client 0 first, then client 1
  ASSERT_TRUE(registrant);
  RegisterOptions options;
  options.ttl = kTtl;
  auto a = registrant->Register(Instance(service, "web-a", 9101), options);
  auto b = registrant->Register(Instance(service, "web-b", 9102), options);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(AgentServices(kClient0), (Ids{"web-a", "web-b"})) << "registered through client 0";

  // One watcher through the agent that dies (it must move), one through the
  // other agent only.
  auto both = Open(dc_->Url());
  auto other = Open(dc_->ClientUrl(1));
  LapseRecorder moving({"web-a", "web-b"}), staying({"web-a", "web-b"});
  auto w1 = both->Watch(service, moving.Callback());
  auto w2 = other->Watch(service, staying.Callback());
  ASSERT_TRUE(moving.recorder().WaitIds({"web-a", "web-b"}, 10s));
  ASSERT_TRUE(staying.recorder().WaitIds({"web-a", "web-b"}, 10s));

  dc_->Kill9(kClient0);
  const auto killed = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor([] { return AgentServices(kClient0 + 1) == Ids{"web-a", "web-b"}; }, 10s))
      << "registrations moved to client 1";
  const auto moved = std::chrono::steady_clock::now() - killed;
  // Long enough for Serf to declare client 0 failed (its node's serfHealth
  // critical) and more than a TTL: the moved registrations must stay passing.
  std::this_thread::sleep_for(kTtl + 3s);
  EXPECT_EQ((*a)->state(), RegistrationState::kActive);
  EXPECT_EQ((*b)->state(), RegistrationState::kActive);
  EXPECT_TRUE(moving.recorder().WaitIds({"web-a", "web-b"}, 5s));
  EXPECT_TRUE(staying.recorder().WaitIds({"web-a", "web-b"}, 5s));

  // Client 0 comes back with its old copies (data dir); they are removed
  // through it, and the catalog holds each instance once, on client 1.
  dc_->Restart(kClient0);
  EXPECT_TRUE(WaitFor([] { return AgentServices(kClient0).empty(); }, 10s))
      << "old registrations still on client 0";
  EXPECT_TRUE(WaitFor(
      [&] {
        return Catalog(service) == Ids{Node(1) + "/web-a", Node(1) + "/web-b"};
      },
      10s));
  EXPECT_TRUE(moving.recorder().WaitIds({"web-a", "web-b"}, 5s));
  EXPECT_TRUE(staying.recorder().WaitIds({"web-a", "web-b"}, 5s));
  EXPECT_EQ(moving.wrong(), std::vector<std::size_t>{}) << "a watcher saw a lapse or a ghost";
  EXPECT_EQ(staying.wrong(), std::vector<std::size_t>{}) << "a watcher saw a lapse or a ghost";
  auto listed = registrant->List(service, /*include_unhealthy=*/true);
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 2u);

  ASSERT_TRUE((*a)->Deregister());
  ASSERT_TRUE((*b)->Deregister());
  EXPECT_TRUE(moving.recorder().WaitIds({}, 10s));
  EXPECT_TRUE(staying.recorder().WaitIds({}, 10s));
  EXPECT_TRUE(WaitFor([&] { return Catalog(service).empty(); }, 10s));
  std::printf("CONSUL_CLUSTER client_kill moved_ms=%lld\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(moved).count()));
}

TEST_F(ConsulClusterTest, ServerLeaderKillKeepsDiscoveryServing) {
  const std::string service = "cluster-api";
  auto registry = Open(dc_->Url());
  ASSERT_TRUE(registry);
  RegisterOptions options;
  options.ttl = kTtl;
  auto x = registry->Register(Instance(service, "api-x", 9201), options);
  ASSERT_TRUE(x);
  auto watcher = Open(dc_->Url());
  LapseRecorder seen({"api-x"});
  auto watch = watcher->Watch(service, seen.Callback());
  ASSERT_TRUE(seen.recorder().WaitIds({"api-x"}, 10s));

  const int leader = dc_->LeaderIndex();
  ASSERT_GE(leader, 0);
  dc_->Kill9(leader);
  const auto killed = std::chrono::steady_clock::now();
  // Agent-local: accepted during the election, synced once there is a leader.
  auto y = registry->Register(Instance(service, "api-y", 9202), options);
  ASSERT_TRUE(y) << y.error().ToString();
  const int next = dc_->WaitForLeader(20s);
  ASSERT_GE(next, 0);
  EXPECT_NE(next, leader);
  const auto elected = std::chrono::steady_clock::now() - killed;
  EXPECT_TRUE(seen.recorder().WaitIds({"api-x", "api-y"}, 20s)) << "discovery converges";
  const auto converged = std::chrono::steady_clock::now() - killed;
  auto listed = registry->List(service, false);
  ASSERT_TRUE(listed) << listed.error().ToString();
  EXPECT_EQ(listed->size(), 2u);
  EXPECT_EQ((*x)->state(), RegistrationState::kActive);
  // The watcher never lost api-x: a failed query keeps the last list.
  for (const auto& update : seen.recorder().all()) {
    if (update.ok) {
      EXPECT_TRUE(UpdateRecorder::Ids(update).contains("api-x"));
    }
  }
  std::printf("CONSUL_CLUSTER leader_kill elected_ms=%lld converged_ms=%lld\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(elected).count()),
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(converged).count()));
}

TEST_F(ConsulClusterTest, DatacenterAndTagFilters) {
  const std::string service = "cluster-tagged";
  auto registry = Open(dc_->Url());
  ASSERT_TRUE(registry);
  auto blue_v1 = Instance(service, "t-1", 9301);
  blue_v1.tags = {"blue", "v1"};
  auto blue = Instance(service, "t-2", 9302);
  blue.tags = {"blue"};
  auto green = Instance(service, "t-3", 9303);
  green.tags = {"green"};
  std::vector<std::unique_ptr<Registration>> held;
  for (const auto& instance : {blue_v1, blue, green}) {
    auto registration = registry->Register(instance, RegisterOptions{});
    ASSERT_TRUE(registration) << registration.error().ToString();
    held.push_back(std::move(*registration));
  }
  auto ids = [&](const std::string& query) {
    auto filtered = Open(dc_->Url() + query);
    Ids out;
    if (!filtered) return out;
    auto listed = filtered->List(service, false);
    EXPECT_TRUE(listed) << query << ": " << listed.error().ToString();
    if (!listed) return out;
    for (const auto& status : *listed) out.insert(status.instance.id);
    return out;
  };
  EXPECT_TRUE(WaitFor([&] { return ids("").size() == 3; }, 10s));
  EXPECT_EQ(ids("?tag=blue"), (Ids{"t-1", "t-2"}));
  EXPECT_EQ(ids("?tag=blue&tag=v1"), (Ids{"t-1"}));
  EXPECT_EQ(ids("?tag=blue,v1"), (Ids{"t-1"}));
  EXPECT_EQ(ids("?tag=red"), (Ids{}));
  EXPECT_EQ(ids("?dc=" + dc_->datacenter()), (Ids{"t-1", "t-2", "t-3"}));

  auto green_only = Open(dc_->Url() + "?tag=green&dc=" + dc_->datacenter());
  UpdateRecorder green_watch;
  auto watch = green_only->Watch(service, green_watch.Callback());
  EXPECT_TRUE(green_watch.WaitIds({"t-3"}, 10s));

  // A datacenter nobody knows: a clear error, on List and on a watch.
  auto nowhere = Open(dc_->Url() + "?dc=nowhere");
  auto listed = nowhere->List(service, false);
  ASSERT_FALSE(listed);
  EXPECT_EQ(listed.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(listed.error().message.find("unknown datacenter"), std::string::npos)
      << listed.error().message;
  UpdateRecorder nowhere_watch;
  auto failing = nowhere->Watch(service, nowhere_watch.Callback());
  ASSERT_TRUE(nowhere_watch.WaitError(10s));
  EXPECT_NE(nowhere_watch.latest().error.message.find("unknown datacenter"), std::string::npos);

  for (const char* bad : {"?dc=", "?dc=a%20b", "?tag=", "?tag=a,,b", "?tag=x%26y"}) {
    auto made = MakeRegistry(dc_->Url() + bad);
    ASSERT_FALSE(made) << bad;
    EXPECT_EQ(made.error().code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(made.error().message.find("consul:// parameter"), std::string::npos)
        << made.error().message;
  }
}

}  // namespace
}  // namespace disco::testing
