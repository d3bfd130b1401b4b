// Chaos on a Consul datacenter (issue 15): the ChaosStack's services, load
// generator and resolvers all use consul://<client 0>,<client 1> of a real
// datacenter of 3 servers and 2 client agents (backend "consul-dc",
// consul_datacenter.h), and a member dies under the load:
//   - the Raft leader (kill -9), restarted after a new one is elected;
//   - client agent 0, through which every service registered (kill -9),
//     restarted later with the old registrations in its data dir.
// The bars: 0 failed calls; no instance ever missing from the registry's
// passing list while a quorum exists (sampled every 100 ms from the leader,
// LapseMonitor says why not ?stale); every watcher ends with the
// registry's state, each instance listed once. Each test prints
//   CHAOS scenario=<name> backend=consul-dc requests=... failed=... ...
// (also in <build>/test-artifacts/chaos.txt), quoted in docs/benchmarks.md.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "chaos/chaos_scenarios.h"
#include "chaos/chaos_stack.h"
#include "fixture/consul_datacenter.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kWarmup = 2s;
constexpr int kClient0 = ConsulDatacenter::kServers;  // member index of client 0

milliseconds Since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

std::string N(std::size_t n) { return std::to_string(n); }

// Lists both services every 100 ms through its own registry client and
// counts answers missing one of the stack's instances (a lapse). Failed
// answers (no leader: during the election) are counted apart: they are not
// lapses.
//
// The reads use Consul's default consistency, as the stack's own clients
// do: the leader answers, from the state every committed write is in. Not
// ?stale: a follower learns that an entry is committed only with the
// leader's next AppendEntries, so its stale answer can be one write behind
// the leader. That is what the 3-in-7 "lapses" were (issue 15): each was
// the monitor's first sample, 8 ms after it started and 2 s before any
// fault, answered by a follower at X-Consul-Index N-1 without the instance
// registered at index N, which the leader and the other members had. The
// registration had not lapsed; the sample predated it. During an election
// a default read fails (list_errors) instead, which loses nothing: without
// a leader no write commits, so the registry's state cannot change.
class LapseMonitor {
 public:
  LapseMonitor(ConsulDatacenter& dc, ChaosStack& stack) : dc_(dc) {
    auto registry = MakeRegistry(dc.Url());
    if (!registry) throw std::runtime_error(registry.error().ToString());
    registry_ = std::move(*registry);
    for (auto& p : stack.users()) want_.push_back({"user-service", p->id()});
    for (auto& p : stack.orders()) want_.push_back({"order-service", p->id()});
    thread_ = std::thread([this] { Run(); });
  }
  ~LapseMonitor() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::size_t lapses() const { return lapses_; }
  std::size_t failed() const { return failed_; }
  std::size_t answered() const { return answered_; }
  // The first lapse, when it was and what each member said right after.
  std::string first_lapse() {
    std::lock_guard lock(mu_);
    return first_lapse_;
  }

 private:
  void Run() {
    while (!stop_) {
      for (const std::string service : {"user-service", "order-service"}) {
        auto listed = registry_->List(service, false);
        if (!listed) {
          ++failed_;
          continue;
        }
        ++answered_;
        for (const auto& [name, id] : want_) {
          if (name != service) continue;
          bool found = false;
          for (const auto& status : *listed) found = found || status.instance.id == id;
          if (!found && lapses_++ == 0) {
            std::string what = Describe(service, id);
            std::lock_guard lock(mu_);
            first_lapse_ = std::move(what);
          }
        }
      }
      std::this_thread::sleep_for(100ms);
    }
  }

  // For the failure message: each member's ?stale answer (its
  // index, its leader contact, whether it lists the instance as passing).
  std::string Describe(const std::string& service, const std::string& id) {
    std::string out = service + "/" + id + " at +" + std::to_string(Since(started_).count()) +
                      " ms (monitor start);";
    for (int i = 0; i < ConsulDatacenter::kMembers; ++i) {  // a dead one: HTTP 0
      auto r = dc_.member(i).Http("GET", "/v1/health/service/" + service + "?passing&stale");
      out += " member " + std::to_string(i) + ": HTTP " + std::to_string(r.status) + " index " +
             r.Header("x-consul-index") + " last contact " + r.Header("x-consul-lastcontact") +
             (r.body.find('"' + id + '"') != std::string::npos ? " listed;" : " NOT listed;");
    }
    return out;
  }

  ConsulDatacenter& dc_;
  const Clock::time_point started_ = Clock::now();
  std::unique_ptr<Registry> registry_;
  std::vector<std::pair<std::string, std::string>> want_;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> lapses_{0};
  std::atomic<std::size_t> failed_{0};
  std::atomic<std::size_t> answered_{0};
  std::mutex mu_;
  std::string first_lapse_;
  std::thread thread_;
};

class ConsulClusterChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ChaosOptions options;
    options.backend = "consul-dc";
    stack_ = std::make_unique<ChaosStack>(options);
    dc_ = &dynamic_cast<ConsulDatacenterBackend&>(stack_->backend()).datacenter();
  }

  // Every instance active, in every resolver, and listed exactly once by the
  // registry (unhealthy entries included: no copy left on another agent).
  void ExpectRegistryStateEverywhere() {
    ChaosStack& s = *stack_;
    auto registry = MakeRegistry(dc_->Url());
    ASSERT_TRUE(registry);
    for (const std::string service : {"user-service", "order-service"}) {
      auto& processes = service == "user-service" ? s.users() : s.orders();
      std::set<std::string> want;
      for (auto& p : processes) {
        want.insert(p->id());
        EXPECT_TRUE(s.RegisteredAndActive(*p, service)) << p->id();
        // Present, not necessarily usable: when the machine stalls a
        // service (seen twice in 60 runs with three builds alongside: an
        // instance timed out 5 times in a row, the calls were retried
        // elsewhere and none failed), the load generator's outlier detection
        // rightly ejects it for 30 s. That is the balancer's decision, not
        // the registry's state, which is what this checks.
        EXPECT_TRUE(s.WaitEverywhere(service, p->id(), true, 10s, false))
            << p->id() << " missing from a resolver";
      }
      auto listed = (*registry)->List(service, /*include_unhealthy=*/true);
      ASSERT_TRUE(listed) << listed.error().ToString();
      std::set<std::string> ids;
      for (const auto& status : *listed) ids.insert(status.instance.id);
      EXPECT_EQ(ids, want) << service;
      // Catalog entries, one per instance: no stale copy on another node.
      auto catalog = dc_->client(1).Http("GET", "/v1/catalog/service/" + service);
      EXPECT_EQ(nlohmann::json::parse(catalog.body, nullptr, false).size(), want.size())
          << catalog.body;
    }
  }

  ChaosStack::Fields Common(const LoadFigures& all, const LoadFigures& fault,
                            const LapseMonitor& monitor) {
    return {{"requests", N(all.requests)},         {"rate", N(static_cast<std::size_t>(all.rate))},
            {"failed", N(all.failed)},             {"client_retries", N(all.retries)},
            {"p50_ms", Ms(all.p50_ms)},            {"p99_ms", Ms(all.p99_ms)},
            {"fault_p99_ms", Ms(fault.p99_ms)},    {"max_ms", Ms(all.max_ms)},
            {"lapses", N(monitor.lapses())},       {"list_errors", N(monitor.failed())}};
  }

  std::unique_ptr<ChaosStack> stack_;
  ConsulDatacenter* dc_ = nullptr;
};

TEST_F(ConsulClusterChaosTest, ServerLeaderKillFailsNoRequest) {
  ChaosStack& s = *stack_;
  LapseMonitor monitor(*dc_, s);
  s.StartLoad();
  std::this_thread::sleep_for(kWarmup);

  const int leader = dc_->LeaderIndex();
  ASSERT_GE(leader, 0);
  const auto killed = Clock::now();
  dc_->Kill9(leader);
  const int next = dc_->WaitForLeader(20s);
  const auto elected = Since(killed);
  std::this_thread::sleep_for(3s);
  dc_->Restart(leader);
  const auto rejoined = Since(killed);
  std::this_thread::sleep_for(2s);
  s.StopLoad();
  monitor.Stop();

  auto all = s.load().Figures();
  auto fault = s.load().Figures(killed, killed + elected + 3s);
  auto fields = Common(all, fault, monitor);
  fields.push_back({"elected_ms", Ms(elected)});
  fields.push_back({"rejoined_ms", Ms(rejoined)});
  s.Report("consul_leader_kill", fields);

  ASSERT_GE(next, 0) << "no new leader\n" << dc_->Logs();
  EXPECT_NE(next, leader);
  ExpectNoFailures(s, all);
  EXPECT_EQ(monitor.lapses(), 0u) << "first: " << monitor.first_lapse();
  // A monitor that could not read proves nothing: it must have read all
  // along but for the election (2 reads per 100 ms sample), after which
  // the new leader answers.
  const auto election_samples = static_cast<std::size_t>(elected.count() / 100 + 10);
  EXPECT_LE(monitor.failed(), 2 * election_samples) << "reads failed outside the election";
  EXPECT_GE(monitor.answered(), 2 * 50u) << "the monitor hardly ever read the registry";
  ExpectRegistryStateEverywhere();
}

// Once (1 run in 79) a POST failed within 21.5 ms without a retry, cause
// unknown; ExpectNoFailures prints each failed request and the logs.
TEST_F(ConsulClusterChaosTest, ClientAgentKillFailsNoRequest) {
  ChaosStack& s = *stack_;
  // Every service registered through client 0, the first agent of the URL.
  const auto held = dc_->client(0).Http("GET", "/v1/agent/services").body;
  for (auto& p : s.users()) ASSERT_NE(held.find(p->id()), std::string::npos) << held;
  LapseMonitor monitor(*dc_, s);
  s.StartLoad();
  std::this_thread::sleep_for(kWarmup);

  const auto killed = Clock::now();
  dc_->Kill9(kClient0);
  std::optional<milliseconds> moved;
  auto on_client1 = [&] {
    auto body = dc_->client(1).Http("GET", "/v1/agent/services").body;
    for (auto& p : s.users())
      if (body.find(p->id()) == std::string::npos) return false;
    for (auto& p : s.orders())
      if (body.find(p->id()) == std::string::npos) return false;
    return true;
  };
  if (WaitFor(on_client1, 15s, 50ms)) moved = Since(killed);
  // Past Serf's failure detection of client 0 and a TTL: the moved
  // registrations keep passing on client 1.
  std::this_thread::sleep_for(6s);
  const auto restarted = Clock::now();
  dc_->Restart(kClient0);
  std::optional<milliseconds> cleaned;
  auto nothing_on_client0 = [&] {
    auto body = dc_->client(0).Http("GET", "/v1/agent/services").body;
    return body == "{}";
  };
  if (WaitFor(nothing_on_client0, 15s, 50ms)) cleaned = Since(restarted);
  std::this_thread::sleep_for(2s);
  s.StopLoad();
  monitor.Stop();

  auto all = s.load().Figures();
  auto fault = s.load().Figures(killed, Clock::now());
  auto fields = Common(all, fault, monitor);
  fields.push_back({"moved_ms", Ms(moved)});
  fields.push_back({"old_copies_removed_ms", Ms(cleaned)});
  s.Report("consul_client_agent_kill", fields);

  EXPECT_TRUE(moved) << "registrations did not move to client 1\n" << s.Logs();
  EXPECT_TRUE(cleaned) << "old registrations left on client 0: "
                       << dc_->client(0).Http("GET", "/v1/agent/services").body;
  ExpectNoFailures(s, all);
  EXPECT_EQ(monitor.lapses(), 0u) << "first: " << monitor.first_lapse();
  EXPECT_GE(monitor.answered(), 2 * 50u) << "the monitor hardly ever read the registry";
  ExpectRegistryStateEverywhere();
}

}  // namespace
}  // namespace disco::testing
