// registry_compare: the same three measurements against each registry
// backend named on the command line, in one run, so the figures compare.
//
//   registry_compare [--registrations N] [--gap-ms G] [--ttl S] [--kills K]
//                    [--instances I] [--window-s W] BACKEND...
//   BACKEND: consul, etcd (when its test fixture is built in), memory
//
// 1. register → seen-by-watcher latency: N registrations, G ms apart (so the
//    watcher is parked in its blocking query / watch stream, as in steady
//    state), each timed from just before Register() to the watch callback
//    that first contains it. p50 / p99 / max.
// 2. kill -9 → removed from a resolver: K `disco register --ttl S` processes,
//    each killed at a random phase of its heartbeat, timed until a Resolver's
//    snapshot no longer has it.
// 3. registry requests per registered instance per minute: I instances with
//    the default TTL (10 s) and one watcher, counted over W seconds: Consul
//    by the backend's own counters of HTTP requests sent, etcd by the
//    server's gRPC counters of messages received (stream messages count).
//
// Every server is started by the test fixtures on free loopback ports and
// stopped at the end. Results go to stdout as Markdown.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/cli.h"
#include "fixture/http_client.h"
#include "fixture/registry_backend.h"
#include "fixture/util.h"
#include "registry_bench_util.h"

namespace {

using namespace std::chrono_literals;
using disco::bench::Clock;
using disco::bench::Instance;
using disco::bench::Ms;
using disco::bench::Percentile;
using disco::bench::RequestsSoFar;
using disco::testing::RegistryBackend;

struct Options {
  int registrations = 200;
  int gap_ms = 150;
  int ttl_s = 2;
  int kills = 5;
  int instances = 10;
  int window_s = 60;
  std::vector<std::string> backends;
};

struct Figures {
  std::vector<double> latency_ms;
  int latency_misses = 0;
  std::vector<double> detection_ms;
  double heartbeat_per_instance_min = -1;
  double watch_per_watcher_min = -1;
};

void MeasureLatency(RegistryBackend& backend, const Options& options, Figures& out) {
  auto registry = disco::bench::OpenOrExit(backend, "registry_compare");
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Clock::time_point> seen;
  auto watch = registry->Watch("bench-latency", [&](const disco::WatchUpdate& update) {
    auto now = Clock::now();
    std::lock_guard lock(mu);
    for (const auto& instance : update.instances) seen.emplace(instance.id, now);
    cv.notify_all();
  });
  std::vector<std::unique_ptr<disco::Registration>> registrations;
  disco::RegisterOptions register_options;
  register_options.ttl = std::chrono::seconds(10);
  std::this_thread::sleep_for(500ms);
  for (int i = 0; i < options.registrations; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options.gap_ms));
    std::string id = "l-" + std::to_string(i);
    auto started = Clock::now();
    auto registration =
        registry->Register(Instance("bench-latency", id, 10000 + i), register_options);
    if (!registration) {
      std::cerr << "register " << id << ": " << registration.error().ToString() << std::endl;
      ++out.latency_misses;
      continue;
    }
    registrations.push_back(std::move(*registration));
    std::unique_lock lock(mu);
    if (cv.wait_for(lock, 5s, [&] { return seen.contains(id); })) {
      out.latency_ms.push_back(Ms(seen[id] - started));
    } else {
      ++out.latency_misses;
    }
  }
}

void MeasureDetection(RegistryBackend& backend, const Options& options, Figures& out) {
  auto registry = disco::bench::OpenOrExit(backend, "registry_compare");
  auto resolver = disco::Resolver::Make(*registry, "bench-crash");
  if (!resolver) return;
  disco::testing::TempDir dir("disco-bench");
  std::mt19937 rng(42);
  const auto ttl =
      std::max<std::chrono::seconds>(std::chrono::seconds(options.ttl_s), backend.MinTtl());
  for (int k = 0; k < options.kills; ++k) {
    std::string id = "victim-" + std::to_string(k);
    auto has = [&] {
      for (const auto& endpoint : (*resolver)->snapshot()->endpoints) {
        if (endpoint.instance.id == id) return true;
      }
      return false;
    };
    auto process = disco::testing::StartCli(
        {"--registry", backend.url(), "register", "bench-crash", "--id", id, "--address",
         "127.0.0.1", "--port", std::to_string(11000 + k), "--ttl", std::to_string(ttl.count())},
        dir.Sub(id + ".log"));
    if (!disco::testing::WaitFor(has, 10s, 2ms)) {
      std::cerr << "registrant " << id << " never appeared: " << process.ReadLog() << std::endl;
      continue;
    }
    // Kill at a random phase of the heartbeat cycle, after a few cycles.
    std::uniform_int_distribution<long> phase(0, std::chrono::milliseconds(ttl).count());
    std::this_thread::sleep_for(ttl + std::chrono::milliseconds(phase(rng)));
    process.Signal(SIGKILL);
    auto killed = Clock::now();
    if (disco::testing::WaitFor([&] { return !has(); }, ttl * 10, 2ms)) {
      out.detection_ms.push_back(Ms(Clock::now() - killed));
    }
  }
}

void MeasureRequests(RegistryBackend& backend, const Options& options, Figures& out) {
  auto registry = disco::bench::OpenOrExit(backend, "registry_compare");
  std::vector<std::unique_ptr<disco::Registration>> registrations;
  for (int i = 0; i < options.instances; ++i) {
    auto registration =
        registry->Register(Instance("bench-load", "r-" + std::to_string(i), 12000 + i));
    if (registration) registrations.push_back(std::move(*registration));
  }
  auto watch = registry->Watch("bench-load", [](const disco::WatchUpdate&) {});
  std::this_thread::sleep_for(1s);
  auto heartbeat_before = RequestsSoFar(backend, true);
  auto watch_before = RequestsSoFar(backend, false);
  std::this_thread::sleep_for(std::chrono::seconds(options.window_s));
  auto heartbeat_after = RequestsSoFar(backend, true);
  auto watch_after = RequestsSoFar(backend, false);
  double minutes = options.window_s / 60.0;
  if (heartbeat_before >= 0 && !registrations.empty()) {
    out.heartbeat_per_instance_min = static_cast<double>(heartbeat_after - heartbeat_before) /
                                     static_cast<double>(registrations.size()) / minutes;
    out.watch_per_watcher_min = static_cast<double>(watch_after - watch_before) / minutes;
  }
}

void Usage() {
  std::cerr << "usage: registry_compare [--registrations N] [--gap-ms G] [--ttl S] [--kills K]\n"
               "                        [--instances I] [--window-s W] BACKEND...  (consul, etcd, "
               "memory)\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> int {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return std::atoi(argv[++i]);
    };
    if (arg == "--registrations") {
      options.registrations = value();
    } else if (arg == "--gap-ms") {
      options.gap_ms = value();
    } else if (arg == "--ttl") {
      options.ttl_s = value();
    } else if (arg == "--kills") {
      options.kills = value();
    } else if (arg == "--instances") {
      options.instances = value();
    } else if (arg == "--window-s") {
      options.window_s = value();
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    } else {
      options.backends.push_back(arg);
    }
  }
  if (options.backends.empty()) {
    Usage();
    return 2;
  }
  auto known = disco::testing::RegistryBackendNames();
  std::map<std::string, Figures> results;
  for (const auto& name : options.backends) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::cerr << "registry_compare: backend '" << name << "' is not built into this program"
                << std::endl;
      return 2;
    }
  }
  for (const auto& name : options.backends) {
    auto backend = disco::testing::MakeRegistryBackend(name);
    backend->Start();
    std::cerr << "== " << name << ": register -> seen latency (" << options.registrations
              << " registrations)" << std::endl;
    Figures& figures = results[name];
    MeasureLatency(*backend, options, figures);
    if (backend->shared_across_processes()) {
      std::cerr << "== " << name << ": kill -9 -> removed (" << options.kills << " kills, ttl "
                << options.ttl_s << " s)" << std::endl;
      MeasureDetection(*backend, options, figures);
    }
    std::cerr << "== " << name << ": requests over " << options.window_s << " s" << std::endl;
    MeasureRequests(*backend, options, figures);
  }

  const auto fmt = disco::bench::Fixed2;
  disco::bench::Table<Figures> table("measurement", options.backends, results);
  auto row = [&](const std::string& label, const std::function<std::string(const Figures&)>& cell) {
    table.Row(label, cell);
  };
  row("register → seen p50 (ms)",
      [&](const Figures& f) { return fmt(Percentile(f.latency_ms, 50)); });
  row("register → seen p99 (ms)",
      [&](const Figures& f) { return fmt(Percentile(f.latency_ms, 99)); });
  row("register → seen max (ms)",
      [&](const Figures& f) { return fmt(Percentile(f.latency_ms, 100)); });
  row("registrations timed (missed)", [&](const Figures& f) {
    return std::to_string(f.latency_ms.size()) + " (" + std::to_string(f.latency_misses) + ")";
  });
  row("kill -9 → removed, TTL " + std::to_string(options.ttl_s) + " s: median (ms)",
      [&](const Figures& f) {
        return f.detection_ms.empty() ? std::string("n/a") : fmt(Percentile(f.detection_ms, 50));
      });
  row("kill -9 → removed: min / max (ms)", [&](const Figures& f) {
    if (f.detection_ms.empty()) return std::string("n/a");
    return fmt(Percentile(f.detection_ms, 0)) + " / " + fmt(Percentile(f.detection_ms, 100));
  });
  row("kills timed", [&](const Figures& f) { return std::to_string(f.detection_ms.size()); });
  row("keep-alive requests / instance / min (TTL 10 s)", [&](const Figures& f) {
    return f.heartbeat_per_instance_min < 0 ? std::string("n/a")
                                            : fmt(f.heartbeat_per_instance_min);
  });
  row("watch requests / watcher / min (idle service)", [&](const Figures& f) {
    return f.watch_per_watcher_min < 0 ? std::string("n/a") : fmt(f.watch_per_watcher_min);
  });
  return 0;
}
