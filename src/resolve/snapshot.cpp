#include "disco/snapshot.h"

#include <algorithm>
#include <unordered_map>

namespace disco {

SnapshotConstPtr MakeSnapshot(std::string service, std::vector<ServiceInstance> instances,
                              const Snapshot* previous, std::uint64_t version) {
  // Endpoints are sorted by id. The resolver sorts its list already (to
  // compare it with the previous snapshot): one linear check, not a second sort.
  auto by_id = [](const ServiceInstance& a, const ServiceInstance& b) { return a.id < b.id; };
  if (!std::is_sorted(instances.begin(), instances.end(), by_id))
    std::sort(instances.begin(), instances.end(), by_id);
  std::unordered_map<std::string_view, const std::shared_ptr<EndpointStats>*> old_stats;
  if (previous) {
    old_stats.reserve(previous->endpoints.size());
    for (const auto& endpoint : previous->endpoints)
      old_stats.emplace(endpoint.instance.id, &endpoint.stats);
  }
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->service = std::move(service);
  snapshot->version = version;
  snapshot->updated_at = std::chrono::system_clock::now();
  snapshot->endpoints.reserve(instances.size());
  for (auto& instance : instances) {
    Endpoint endpoint;
    endpoint.address = instance.Address();
    endpoint.tls = instance.SpeaksTls();
    auto it = old_stats.find(instance.id);
    endpoint.stats = it != old_stats.end() ? *it->second : std::make_shared<EndpointStats>();
    endpoint.instance = std::move(instance);
    snapshot->endpoints.push_back(std::move(endpoint));
  }
  return snapshot;
}

}  // namespace disco
