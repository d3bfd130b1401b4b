// What the registry benchmarks (registry_compare, registry_scale) share:
// percentiles, test instances, and the requests a backend's clients sent,
// read from the backend's own counters (Consul) or the servers' (etcd).
#pragma once

#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "disco/registry.h"
#include "disco/service_instance.h"
#include "fixture/registry_backend.h"

namespace disco::bench {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The p-th percentile (0..100) by nearest rank; 0 for no values.
double Percentile(std::vector<double> values, double p);

ServiceInstance Instance(const std::string& service, const std::string& id, int port);

// The backend's registry; on failure says so (as `tool`) and exits 1.
std::unique_ptr<Registry> OpenOrExit(const testing::RegistryBackend& backend, const char* tool);

// "12.34"
std::string Fixed2(double value);

// A Markdown table: a header row (`title`, then one column per backend),
// then Row()s, each cell computed from that backend's figures.
template <class Figures>
class Table {
 public:
  Table(std::string title, const std::vector<std::string>& backends,
        const std::map<std::string, Figures>& results)
      : backends_(backends), results_(results) {
    std::cout << "| " << title << " |";
    for (const auto& name : backends_) std::cout << " " << name << " |";
    std::cout << "\n|---|";
    for (std::size_t i = 0; i < backends_.size(); ++i) std::cout << "---|";
    std::cout << "\n";
  }
  void Row(const std::string& label, const std::function<std::string(const Figures&)>& cell) {
    std::cout << "| " << label << " |";
    for (const auto& name : backends_) std::cout << " " << cell(results_.at(name)) << " |";
    std::cout << "\n";
  }

 private:
  const std::vector<std::string>& backends_;
  const std::map<std::string, Figures>& results_;
};

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
