// What the registry benchmarks (registry_compare, registry_scale) share:
// percentiles, test instances, and the requests a backend's clients sent,
// read from the backend's own counters (Consul) or the servers' (etcd).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "disco/service_instance.h"
#include "fixture/registry_backend.h"

namespace disco::bench {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The p-th percentile (0..100) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double p);

ServiceInstance Instance(const std::string& service, const std::string& id, int port);

// Requests the backend's clients have sent so far, keep-alive side
// (`heartbeat`: registrations and their renewals) or watch side: for
// Consul from this process's own counters (every HTTP request), for etcd
// from the servers' counters summed over every member in the URL (every
// gRPC message, stream messages included). -1 when unknown.
long long RequestsSoFar(const testing::RegistryBackend& backend, bool heartbeat);

// CPU seconds (user + system) used so far by this process's children: the
// registry servers the fixtures started.
double ChildrenCpuSeconds();

// Resident memory of this process, in bytes.
long long ResidentBytes();

}  // namespace disco::bench
