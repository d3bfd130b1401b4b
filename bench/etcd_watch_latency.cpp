// Register -> seen-by-watcher latency on a loopback etcd (issue 2).
//
// Starts its own etcd (tests/fixture), watches one service, and for each of N
// rounds registers an instance (lease grant + put), waits until the watch
// callback lists it, then deregisters it (lease revoke) and waits until the
// callback no longer lists it. Times are taken with steady_clock in the
// benchmark thread (start) and inside the watch callback (seen).
//
//   disco_etcd_watch_bench [--rounds N] [--warmup N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "disco/registry.h"
#include "fixture/etcd_server.h"

namespace {

using Clock = std::chrono::steady_clock;

class Seen {
 public:
  void OnUpdate(const disco::WatchUpdate& update) {
    auto now = Clock::now();
    std::lock_guard lock(mu_);
    if (!update.ok) return;
    std::map<std::string, bool> fresh;
    for (const auto& instance : update.instances) fresh[instance.id] = true;
    for (const auto& [id, _] : fresh) {
      if (!present_.contains(id)) added_[id] = now;
    }
    for (const auto& [id, _] : present_) {
      if (!fresh.contains(id)) removed_[id] = now;
    }
    present_ = std::move(fresh);
    cv_.notify_all();
  }

  Clock::time_point WaitAdded(const std::string& id) { return Wait(added_, id); }
  Clock::time_point WaitRemoved(const std::string& id) { return Wait(removed_, id); }

 private:
  Clock::time_point Wait(std::map<std::string, Clock::time_point>& events, const std::string& id) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return events.contains(id); })) {
      std::fprintf(stderr, "timed out waiting for %s\n", id.c_str());
      std::exit(1);
    }
    auto at = events[id];
    events.erase(id);
    return at;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, bool> present_;
  std::map<std::string, Clock::time_point> added_;
  std::map<std::string, Clock::time_point> removed_;
};

double Percentile(std::vector<double> sorted, double q) {
  auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void Report(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  double sum = 0;
  for (double v : ms) sum += v;
  std::printf("| %-40s | %5zu | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f | %6.2f |\n", what, ms.size(),
              ms.front(), Percentile(ms, 0.50), Percentile(ms, 0.90), Percentile(ms, 0.99),
              ms.back(), sum / static_cast<double>(ms.size()));
}

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  int rounds = 300;
  int warmup = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--warmup") == 0) warmup = std::atoi(argv[i + 1]);
  }
  disco::testing::EtcdServer etcd;
  // Registrant and watcher use separate Registry objects, as two processes would.
  auto registrant = disco::MakeRegistry(etcd.url());
  auto observer = disco::MakeRegistry(etcd.url());
  if (!registrant || !observer) return 1;
  Seen seen;
  auto watch =
      (*observer)->Watch("bench", [&seen](const disco::WatchUpdate& u) { seen.OnUpdate(u); });

  std::vector<double> register_to_seen, ack_to_seen, register_call, deregister_to_gone;
  for (int i = 0; i < warmup + rounds; ++i) {
    disco::ServiceInstance instance;
    instance.service = "bench";
    instance.id = "i" + std::to_string(i);
    instance.host = "127.0.0.1";
    instance.port = static_cast<std::uint16_t>(10000 + i % 50000);
    disco::RegisterOptions options;
    options.ttl = std::chrono::seconds(10);

    auto start = Clock::now();
    auto registration = (*registrant)->Register(instance, options);
    auto acked = Clock::now();
    if (!registration) {
      std::fprintf(stderr, "register failed: %s\n", registration.error().ToString().c_str());
      return 1;
    }
    auto added = seen.WaitAdded(instance.id);
    auto leave = Clock::now();
    if (auto ok = (*registration)->Deregister(); !ok) {
      std::fprintf(stderr, "deregister failed: %s\n", ok.error().ToString().c_str());
      return 1;
    }
    auto removed = seen.WaitRemoved(instance.id);
    if (i < warmup) continue;
    register_to_seen.push_back(Millis(added - start));
    ack_to_seen.push_back(Millis(added - acked));
    register_call.push_back(Millis(acked - start));
    deregister_to_gone.push_back(Millis(removed - leave));
  }

  std::printf("etcd 3.4 on loopback, %d rounds after %d warm-up rounds; milliseconds\n\n", rounds,
              warmup);
  std::printf("| %-40s | %5s | %6s | %6s | %6s | %6s | %6s | %6s |\n", "measure", "n", "min", "p50",
              "p90", "p99", "max", "mean");
  std::printf("|%s|------:|-------:|-------:|-------:|-------:|-------:|-------:|\n",
              std::string(42, '-').c_str());
  Report("Register() call -> seen by watcher", register_to_seen);
  Report("  of which Register() call (grant + put)", register_call);
  Report("  of which put acknowledged -> seen", ack_to_seen);
  Report("Deregister() call (revoke) -> seen gone", deregister_to_gone);
  return 0;
}
