// Snapshot: an immutable view of one service's healthy endpoints.
//
// A Resolver publishes a new Snapshot whenever the registry reports a change;
// readers hold a std::shared_ptr<const Snapshot> and never see it change.
// EndpointStats is the one mutable part: per-endpoint counters shared by every
// snapshot containing that endpoint (same service and instance id), updated
// by callers on any thread (per-thread counters and relaxed atomics).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "disco/service_instance.h"
#include "disco/thread_counters.h"

namespace disco {

// Laid out by who writes what, so that no pick writes a line another core
// writes (issue 19): the counters bumped on every pick and call are per
// thread (disco/thread_counters.h, summed when read); the first line holds what every pick
// reads and only outlier detection writes; the per-call state shared on
// purpose has the second line to itself.
struct alignas(64) EndpointStats {
  enum Counter : std::size_t { kPicks, kSuccesses, kFailures };
  ThreadCounters counters;

  std::uint64_t picks() const { return counters.Load(kPicks); }          // times a picker chose it
  std::uint64_t successes() const { return counters.Load(kSuccesses); }  // calls that succeeded
  std::uint64_t failures() const { return counters.Load(kFailures); }    // calls that failed
  void Count(Counter counter) { counters.Add(counter); }

  // Read on every pick, written only when outlier detection ejects or
  // returns the endpoint.
  std::atomic<bool> ejected{false};  // set by outlier detection; pickers skip it
  // Outlier detection's bookkeeping (see disco/outlier.h).
  std::atomic<std::uint32_t> times_ejected{0};
  std::atomic<std::int64_t> ejected_until_ns{0};  // steady_clock; meaningful while ejected

  // Calls in flight now: one count for the whole process, because
  // least_request compares it on every pick (summing per-thread copies there
  // would read every core's line per pick); written per call, not per pick.
  alignas(64) std::atomic<std::uint32_t> active_requests{0};
  // Reset only when non-zero, so a run of successes writes nothing here.
  std::atomic<std::uint32_t> consecutive_failures{0};
};

struct Endpoint {
  ServiceInstance instance{};
  std::string address{};  // instance.Address(), kept to avoid rebuilding it per call
  bool tls = false;       // instance.SpeaksTls(), kept likewise
  std::shared_ptr<EndpointStats> stats{};

  bool ejected() const { return stats->ejected.load(std::memory_order_relaxed); }
};

struct Snapshot {
  std::string service{};
  std::vector<Endpoint> endpoints{};  // sorted by instance id
  std::uint64_t version = 0;          // grows by one per published snapshot of a resolver
  std::chrono::system_clock::time_point updated_at{};

  bool empty() const { return endpoints.empty(); }
};

using SnapshotConstPtr = std::shared_ptr<const Snapshot>;

// Builds a snapshot whose endpoints reuse the stats of `previous` where the
// instance id is the same, so counters and ejections survive a registry update.
// `instances` may come in any order (already sorted by id costs no sort).
SnapshotConstPtr MakeSnapshot(std::string service, std::vector<ServiceInstance> instances,
                              const Snapshot* previous, std::uint64_t version);

}  // namespace disco
