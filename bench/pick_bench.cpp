// Pick-path cost of every balancing policy (issue 2), and what a registry
// change costs the policies that precompute (Build).
//
//   BM_Pick/<policy>/<endpoints>/threads:<t>   Picker::Pick alone, equal weights,
//                                              t = 1, 2, 4, 8, 16 (more threads than
//                                              cores: time-sliced, as on a busy host)
//                                              a different hash key per pick
//   BM_ResolverPick/1000/threads:<t>           Resolver::Pick through memory://,
//                                              round_robin: the full path callers pay
//   BM_ResolverPickAcross/<n>/threads:<t>      picks from n resolvers (100 endpoints
//                                              each) in turn: a gateway's many routes
//   BM_Build/<policy>/<weights>/<endpoints>    Balancer::Build on one snapshot
//
// Figures and the command that produced them: docs/benchmarks.md.
//
// Thread safety: pickers are shared by the benchmark threads, as they are by a
// service's request threads; fixtures are built once, under a mutex, outside
// the timed loops.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "disco/balancer.h"
#include "disco/registry.h"
#include "disco/resolver.h"
#include "disco/snapshot.h"

namespace disco {
namespace {

constexpr std::size_t kKeys = 4096;  // a power of two: the index is masked

std::vector<ServiceInstance> MakeInstances(std::size_t n, bool mixed_weights) {
  std::vector<ServiceInstance> instances;
  instances.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "bench-%05zu", i);
    ServiceInstance instance;
    instance.service = "bench";
    instance.id = id;
    instance.host = "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    instance.port = static_cast<std::uint16_t>(8000 + i % 1000);
    // 1..10, scattered so that heavy endpoints are not neighbours.
    instance.weight = mixed_weights ? static_cast<std::uint32_t>(1 + (i * 7919) % 10) : 1;
    instances.push_back(std::move(instance));
  }
  return instances;
}

const std::vector<std::string>& Keys() {
  static const auto keys = [] {
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < kKeys; ++i)
      keys.push_back("user-" + std::to_string(i * 7 + 100000));
    return keys;
  }();
  return keys;
}

struct PickFixture {
  SnapshotConstPtr snapshot;
  std::unique_ptr<Picker> picker;
};

// One picker per (policy, size), shared by every thread of a run.
Picker& PickerFor(const std::string& policy, std::size_t endpoints) {
  static std::mutex mu;
  static std::map<std::pair<std::string, std::size_t>, PickFixture> fixtures;
  std::lock_guard lock(mu);
  auto& fixture = fixtures[{policy, endpoints}];
  if (!fixture.picker) {
    fixture.snapshot = MakeSnapshot("bench", MakeInstances(endpoints, false), nullptr, 1);
    fixture.picker = (*MakeBalancer(policy))->Build(fixture.snapshot);
  }
  return *fixture.picker;
}

void BM_Pick(benchmark::State& state, const std::string& policy) {
  Picker& picker = PickerFor(policy, static_cast<std::size_t>(state.range(0)));
  const auto& keys = Keys();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 997;
  for (auto _ : state) {
    const PickContext context{keys[i++ & (kKeys - 1)]};
    benchmark::DoNotOptimize(picker.Pick(context));
  }
  state.SetItemsProcessed(state.iterations());
}

struct ResolverFixture {
  std::unique_ptr<Registry> registry;
  std::vector<std::unique_ptr<Registration>> registrations;
  std::unique_ptr<Resolver> resolver;
};

// A memory:// registry named `name` with `endpoints` instances of "bench",
// and a ready round_robin resolver over them.
ResolverFixture MakeResolverFixture(const std::string& name, std::size_t endpoints) {
  ResolverFixture fixture;
  fixture.registry = std::move(*MakeRegistry("memory://pick-bench-" + name));
  // Register first, then resolve: one snapshot, not one per registration.
  for (const auto& instance : MakeInstances(endpoints, false)) {
    fixture.registrations.push_back(std::move(*fixture.registry->Register(instance)));
  }
  fixture.resolver = std::move(
      *Resolver::Make(*fixture.registry, "bench", ResolverOptions{.policy = "round_robin"}));
  if (!fixture.resolver->WaitReady(std::chrono::seconds(5)) ||
      fixture.resolver->snapshot()->endpoints.size() != endpoints) {
    std::fprintf(stderr, "resolver not ready\n");
    std::abort();
  }
  return fixture;
}

Resolver& ResolverFor(std::size_t endpoints) {
  static std::mutex mu;
  static std::map<std::size_t, ResolverFixture> fixtures;
  std::lock_guard lock(mu);
  auto& fixture = fixtures[endpoints];
  if (!fixture.resolver) fixture = MakeResolverFixture(std::to_string(endpoints), endpoints);
  return *fixture.resolver;
}

void BM_ResolverPick(benchmark::State& state) {
  Resolver& resolver = ResolverFor(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    EndpointPtr endpoint = resolver.Pick();
    benchmark::DoNotOptimize(endpoint.get());
  }
  state.SetItemsProcessed(state.iterations());
}

// Many services on one thread (a gateway's routes): n resolvers of 100
// endpoints each, picked from in turn. Shows what a thread's per-resolver
// state (its pin of the snapshot and its round-robin position) costs once
// there are more resolvers than the thread keeps slots for.
std::vector<Resolver*>& ResolversFor(std::size_t count) {
  static std::mutex mu;
  static std::map<std::size_t, std::vector<Resolver*>> sets;
  static std::vector<ResolverFixture> fixtures;  // owns them all
  std::lock_guard lock(mu);
  auto& set = sets[count];
  if (set.empty()) {
    for (std::size_t r = 0; r < count; ++r) {
      auto fixture =
          MakeResolverFixture("across-" + std::to_string(count) + "-" + std::to_string(r), 100);
      set.push_back(fixture.resolver.get());
      fixtures.push_back(std::move(fixture));
    }
  }
  return set;
}

void BM_ResolverPickAcross(benchmark::State& state) {
  const auto& resolvers = ResolversFor(static_cast<std::size_t>(state.range(0)));
  std::size_t next = static_cast<std::size_t>(state.thread_index()) % resolvers.size();
  for (auto _ : state) {
    EndpointPtr endpoint = resolvers[next]->Pick();
    benchmark::DoNotOptimize(endpoint.get());
    next = next + 1 == resolvers.size() ? 0 : next + 1;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Build(benchmark::State& state, const std::string& policy, bool mixed_weights) {
  auto snapshot = MakeSnapshot(
      "bench", MakeInstances(static_cast<std::size_t>(state.range(0)), mixed_weights), nullptr, 1);
  auto balancer = std::move(*MakeBalancer(policy));
  for (auto _ : state) {
    auto picker = balancer->Build(snapshot);
    benchmark::DoNotOptimize(picker.get());
    state.PauseTiming();  // freeing the previous picker is not Build's cost
    picker.reset();
    state.ResumeTiming();
  }
}

void RegisterAll() {
  for (auto name : BalancerNames()) {
    const std::string policy(name);
    benchmark::RegisterBenchmark(("BM_Pick/" + policy).c_str(), BM_Pick, policy)
        ->Arg(10)
        ->Arg(100)
        ->Arg(1000)
        ->Arg(10000)
        ->ThreadRange(1, 16);
  }
  benchmark::RegisterBenchmark("BM_ResolverPick", BM_ResolverPick)
      ->Arg(10)
      ->Arg(1000)
      ->ThreadRange(1, 16);
  benchmark::RegisterBenchmark("BM_ResolverPickAcross", BM_ResolverPickAcross)
      ->Arg(1)
      ->Arg(8)
      ->Arg(16)
      ->Arg(64)
      ->ThreadRange(1, 2);
  for (const char* policy : {"weighted_round_robin", "ring_hash"}) {
    for (bool mixed : {false, true}) {
      const std::string name =
          std::string("BM_Build/") + policy + (mixed ? "/weights_1_to_10" : "/equal_weights");
      benchmark::RegisterBenchmark(name.c_str(), BM_Build, std::string(policy), mixed)
          ->Arg(1000)
          ->Arg(10000)
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace
}  // namespace disco

int main(int argc, char** argv) {
  // A service is never single-threaded; this process must not look so
  // either. Until a program starts its first thread, glibc's
  // __libc_single_threaded lets std::shared_ptr count without atomic
  // instructions, which would flatter every 1-thread figure of the path
  // that returns a shared_ptr (BM_ResolverPick) next to the 2-thread ones.
  std::thread([] {}).join();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  disco::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
