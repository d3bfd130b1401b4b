// Snapshot: an immutable view of one service's healthy endpoints.
//
// A Resolver publishes a new Snapshot whenever the registry reports a change;
// readers hold a std::shared_ptr<const Snapshot> and never see it change.
// EndpointStats is the one mutable part: per-endpoint counters shared by every
// snapshot containing that endpoint (same service and instance id), updated
// with relaxed atomics by callers on any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "disco/service_instance.h"

namespace disco {

// Cache-line aligned so that counters of different endpoints never share a
// line: callers on different threads update them on every request.
struct alignas(64) EndpointStats {
  std::atomic<std::uint32_t> active_requests{0};  // in flight now (least_request reads it)
  std::atomic<bool> ejected{false};               // set by outlier detection; pickers skip it
  std::atomic<std::uint64_t> picks{0};            // times a picker chose this endpoint
  std::atomic<std::uint64_t> successes{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint32_t> consecutive_failures{0};
  // Outlier detection's bookkeeping (see disco/outlier.h).
  std::atomic<std::uint32_t> times_ejected{0};
  std::atomic<std::int64_t> ejected_until_ns{0};  // steady_clock; meaningful while ejected
};

struct Endpoint {
  ServiceInstance instance{};
  std::string address{};  // instance.Address(), kept to avoid rebuilding it per call
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
