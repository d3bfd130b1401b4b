// registry_scale: a registry at the size of a real deployment (issue 15).
//
//   registry_scale [--services S] [--instances I] [--rate R] [--seconds T]
//                  [--ttl S] [--threads N] BACKEND...
//   BACKEND: any name the test fixtures know (etcd, consul, and the
//   clustered ones when built in); defaults 100 × 100, 500 changes/s, 60 s.
//
// 1. S services × I instances registered (N threads), TTL --ttl.
// 2. One watcher (a second Registry, as a caller process would have) watches
//    all S services; its resident memory grows by "memory per watched
//    instance" × S × I.
// 3. For T seconds, R registration changes per second: an instance is
//    deregistered and a new one registered in its place. Each change is
//    timed from just before Register() to the watch update that first holds
//    the new instance (p50/p99/max); a change never seen within 10 s of the
//    end is lost (one replaced again before it was seen is counted apart: a
//    registry may fold both into one update). Then every service's watched
//    view must equal List()'s passing instances exactly.
// 4. Over the change window: registry requests per instance per minute
//    (keep-alive side) and per watched service (watch side), and the CPU the
//    registry servers (this process's children) used, in cores.
//
// Servers are started by the test fixtures on free loopback ports and
// stopped at the end. Results go to stdout as Markdown.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "fixture/registry_backend.h"
#include "fixture/util.h"
#include "registry_bench_util.h"

namespace {

using namespace std::chrono_literals;
using disco::bench::Clock;
using disco::bench::Ms;
using disco::bench::Percentile;

struct Options {
  int services = 100;
  int instances = 100;
  int rate = 500;
  int seconds = 60;
  int ttl_s = 30;
  int threads = 4;
  std::vector<std::string> backends;
};

struct Figures {
  double register_s = 0;  // time to register S × I
  int registered = 0;
  long long memory_per_instance = -1;
  int changes = 0;
  int change_errors = 0;
  double change_rate = 0;
  std::vector<double> seen_ms;
  int lost = 0;
  int superseded = 0;  // replaced again before the watcher saw it
  int views_differing = -1;
  double heartbeat_per_instance_min = -1;
  double watch_per_service_min = -1;
  double server_cores = 0;
};

std::string ServiceName(int s) { return "scale-" + std::to_string(s); }

// What the watcher saw: each service's instance ids, and when each awaited
// id first appeared.
class Watcher {
 public:
  void Expect(const std::string& id, Clock::time_point started) {
    std::lock_guard lock(mu_);
    pending_.emplace(id, started);
  }

  // The id was replaced before the watcher saw it: true if it was awaited.
  // (A registry may fold a register and the deregister right after it into
  // one update; what must hold is the final state, checked at the end.)
  bool Forget(const std::string& id) {
    std::lock_guard lock(mu_);
    return pending_.erase(id) > 0;
  }

  void Update(const std::string& service, const disco::WatchUpdate& update) {
    if (!update.ok) return;
    const auto now = Clock::now();
    std::lock_guard lock(mu_);
    auto& view = views_[service];
    view.clear();
    for (const auto& instance : update.instances) {
      view.insert(instance.id);
      if (auto it = pending_.find(instance.id); it != pending_.end()) {
        seen_ms_.push_back(Ms(now - it->second));
        pending_.erase(it);
      }
    }
    cv_.notify_all();
  }

  bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, done);
  }

  // Callers of these hold no lock; they are for WaitUntil predicates and the end.
  std::size_t PendingLocked() const { return pending_.size(); }
  std::size_t TotalLocked() const {
    std::size_t total = 0;
    for (const auto& [service, view] : views_) total += view.size();
    return total;
  }
  std::set<std::string> View(const std::string& service) {
    std::lock_guard lock(mu_);
    return views_[service];
  }
  std::vector<double> TakeSeen() {
    std::lock_guard lock(mu_);
    return std::move(seen_ms_);
  }
  std::size_t Pending() {
    std::lock_guard lock(mu_);
    return pending_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Clock::time_point> pending_;
  std::map<std::string, std::set<std::string>> views_;
  std::vector<double> seen_ms_;
};

// Runs `work(thread)` on `threads` threads and waits for them.
void Parallel(int threads, const std::function<void(int)>& work) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& thread : pool) thread.join();
}

Figures Measure(disco::testing::RegistryBackend& backend, const Options& options) {
  Figures out;
  auto registry = disco::bench::OpenOrExit(backend, "registry_scale");
  disco::RegisterOptions register_options;
  register_options.ttl = std::chrono::seconds(options.ttl_s);
  const int total = options.services * options.instances;
  // Slot k = service k / I, instance k % I; thread t owns the slots k % N == t.
  std::vector<std::unique_ptr<disco::Registration>> slots(static_cast<std::size_t>(total));
  std::vector<int> generation(static_cast<std::size_t>(total), 0);
  auto id_of = [&](int k) {
    return "i-" + std::to_string(k) + "-" + std::to_string(generation[static_cast<std::size_t>(k)]);
  };
  auto instance_of = [&](int k) {
    return disco::bench::Instance(ServiceName(k / options.instances), id_of(k),
                                  20000 + k % 40000);
  };

  std::cerr << "== " << backend.name() << ": registering " << total << " instances" << std::endl;
  const auto register_start = Clock::now();
  std::atomic<int> registered{0};
  Parallel(options.threads, [&](int t) {
    for (int k = t; k < total; k += options.threads) {
      auto registration = registry->Register(instance_of(k), register_options);
      if (!registration) {
        std::cerr << "register " << id_of(k) << ": " << registration.error().ToString() << "\n";
        continue;
      }
      slots[static_cast<std::size_t>(k)] = std::move(*registration);
      registered.fetch_add(1);
    }
  });
  out.register_s = Ms(Clock::now() - register_start) / 1000.0;
  out.registered = registered.load();

  std::cerr << "== " << backend.name() << ": watching " << options.services << " services"
            << std::endl;
  auto watch_registry = disco::bench::OpenOrExit(backend, "registry_scale");
  Watcher watcher;
  const auto rss_before = disco::bench::ResidentBytes();
  std::vector<std::unique_ptr<disco::WatchHandle>> watches;
  for (int s = 0; s < options.services; ++s) {
    const auto service = ServiceName(s);
    watches.push_back(watch_registry->Watch(
        service, [&watcher, service](const disco::WatchUpdate& u) { watcher.Update(service, u); }));
  }
  if (!watcher.WaitUntil([&] { return watcher.TotalLocked() >= static_cast<std::size_t>(out.registered); },
                         std::chrono::seconds(180))) {
    std::cerr << "registry_scale: the watcher never saw every instance" << std::endl;
  }
  out.memory_per_instance =
      (disco::bench::ResidentBytes() - rss_before) / std::max(1, out.registered);

  std::cerr << "== " << backend.name() << ": " << options.rate << " changes/s for "
            << options.seconds << " s" << std::endl;
  const auto heartbeat_before = disco::bench::RequestsSoFar(backend, true);
  const auto watch_before = disco::bench::RequestsSoFar(backend, false);
  const double cpu_before = disco::bench::ChildrenCpuSeconds();
  const auto window_start = Clock::now();
  std::atomic<int> changes{0}, errors{0}, superseded{0};
  Parallel(options.threads, [&](int t) {
    std::mt19937 random(static_cast<unsigned>(t + 1));
    const int owned = (total - t + options.threads - 1) / options.threads;
    std::uniform_int_distribution<int> pick(0, owned - 1);
    const auto gap = std::chrono::duration<double>(static_cast<double>(options.threads) /
                                                   static_cast<double>(options.rate));
    auto next = window_start;
    const auto end = window_start + std::chrono::seconds(options.seconds);
    while (Clock::now() < end) {
      next += std::chrono::duration_cast<Clock::duration>(gap);
      std::this_thread::sleep_until(next);
      const int k = t + pick(random) * options.threads;
      auto& slot = slots[static_cast<std::size_t>(k)];
      if (watcher.Forget(id_of(k))) superseded.fetch_add(1);
      if (slot) (void)slot->Deregister();
      slot.reset();
      ++generation[static_cast<std::size_t>(k)];
      const auto instance = instance_of(k);
      const auto started = Clock::now();
      watcher.Expect(instance.id, started);
      auto registration = registry->Register(instance, register_options);
      changes.fetch_add(1);
      if (!registration) {
        errors.fetch_add(1);
        watcher.Forget(instance.id);
        continue;
      }
      slot = std::move(*registration);
    }
  });
  const double window_s = Ms(Clock::now() - window_start) / 1000.0;
  const auto heartbeat_after = disco::bench::RequestsSoFar(backend, true);
  const auto watch_after = disco::bench::RequestsSoFar(backend, false);
  out.server_cores = (disco::bench::ChildrenCpuSeconds() - cpu_before) / window_s;
  out.changes = changes.load();
  out.change_errors = errors.load();
  out.superseded = superseded.load();
  out.change_rate = out.changes / window_s;
  if (heartbeat_before >= 0) {
    out.heartbeat_per_instance_min = static_cast<double>(heartbeat_after - heartbeat_before) /
                                     std::max(1, out.registered) / (window_s / 60.0);
    out.watch_per_service_min = static_cast<double>(watch_after - watch_before) /
                                options.services / (window_s / 60.0);
  }

  watcher.WaitUntil([&] { return watcher.PendingLocked() == 0; }, std::chrono::seconds(10));
  out.lost = static_cast<int>(watcher.Pending());
  out.seen_ms = watcher.TakeSeen();
  // The views settle after the last change: compare each with List().
  out.views_differing = 0;
  for (int s = 0; s < options.services; ++s) {
    const auto service = ServiceName(s);
    bool same = disco::testing::WaitFor(
        [&] {
          auto listed = registry->List(service);
          if (!listed) return false;
          std::set<std::string> ids;
          for (const auto& status : *listed) {
            if (status.health == disco::HealthState::kPassing) ids.insert(status.instance.id);
          }
          return ids == watcher.View(service);
        },
        5s, 50ms);
    if (!same) ++out.views_differing;
  }

  std::cerr << "== " << backend.name() << ": deregistering" << std::endl;
  watches.clear();
  Parallel(options.threads, [&](int t) {
    for (int k = t; k < total; k += options.threads) {
      if (auto& slot = slots[static_cast<std::size_t>(k)]) (void)slot->Deregister();
    }
  });
  return out;
}

void Usage() {
  std::cerr << "usage: registry_scale [--services S] [--instances I] [--rate R] [--seconds T]\n"
               "                      [--ttl S] [--threads N] BACKEND...\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> int {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      const int v = std::atoi(argv[++i]);
      if (v <= 0) {
        std::cerr << "registry_scale: " << arg << " wants a positive number\n";
        std::exit(2);
      }
      return v;
    };
    if (arg == "--services") options.services = value();
    else if (arg == "--instances") options.instances = value();
    else if (arg == "--rate") options.rate = value();
    else if (arg == "--seconds") options.seconds = value();
    else if (arg == "--ttl") options.ttl_s = value();
    else if (arg == "--threads") options.threads = value();
    else if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    } else if (arg.starts_with("-")) {
      std::cerr << "registry_scale: unknown option '" << arg << "'\n";
      Usage();
      return 2;
    } else {
      options.backends.push_back(arg);
    }
  }
  if (options.backends.empty()) {
    Usage();
    return 2;
  }
  // The suites' backends and the clustered ones (issue 15: the scale run is
  // asked for on a 3-member etcd cluster and a Consul datacenter).
  auto known = disco::testing::RegistryBackendNames();
  known.insert(known.end(), {"etcd-cluster", "consul-dc"});
  for (const auto& name : options.backends) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::cerr << "registry_scale: backend '" << name << "' is not built into this program\n";
      return 2;
    }
  }
  std::map<std::string, Figures> results;
  for (const auto& name : options.backends) {
    auto backend = disco::testing::MakeRegistryBackend(name);
    backend->Start();
    results[name] = Measure(*backend, options);
    backend->Stop();
  }

  const auto fmt = disco::bench::Fixed2;
  disco::bench::Table<Figures> table(
      std::to_string(options.services) + " services × " + std::to_string(options.instances) +
          " instances, " + std::to_string(options.rate) + " changes/s for " +
          std::to_string(options.seconds) + " s, TTL " + std::to_string(options.ttl_s) + " s",
      options.backends, results);
  auto row = [&](const std::string& label, const std::function<std::string(const Figures&)>& cell) {
    table.Row(label, cell);
  };
  row("registered (s to register all)", [&](const Figures& f) {
    return std::to_string(f.registered) + " (" + fmt(f.register_s) + ")";
  });
  row("watcher memory per watched instance (bytes)",
      [&](const Figures& f) { return std::to_string(f.memory_per_instance); });
  row("changes made (per s; errors)", [&](const Figures& f) {
    return std::to_string(f.changes) + " (" + fmt(f.change_rate) + "; " +
           std::to_string(f.change_errors) + ")";
  });
  row("register → seen p50 (ms)", [&](const Figures& f) { return fmt(Percentile(f.seen_ms, 50)); });
  row("register → seen p99 (ms)", [&](const Figures& f) { return fmt(Percentile(f.seen_ms, 99)); });
  row("register → seen max (ms)", [&](const Figures& f) { return fmt(Percentile(f.seen_ms, 100)); });
  row("changes never seen (lost)", [&](const Figures& f) { return std::to_string(f.lost); });
  row("changes replaced again before seen (not lost)",
      [&](const Figures& f) { return std::to_string(f.superseded); });
  row("services whose watched view ≠ List() at the end",
      [&](const Figures& f) { return std::to_string(f.views_differing); });
  row("keep-alive side requests / instance / min", [&](const Figures& f) {
    return f.heartbeat_per_instance_min < 0 ? std::string("n/a") : fmt(f.heartbeat_per_instance_min);
  });
  row("watch side requests / watched service / min", [&](const Figures& f) {
    return f.watch_per_service_min < 0 ? std::string("n/a") : fmt(f.watch_per_service_min);
  });
  row("registry servers' CPU during the changes (cores)",
      [&](const Figures& f) { return fmt(f.server_cores); });
  return 0;
}
