// Process-wide test hooks of the etcd backend's watch loop and connection. Not part of the
// library API; free of gRPC headers so tests can include it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace disco::etcd {

struct WatchCounters {
  std::uint64_t resyncs = 0;             // Ranges after the first one of a watch
  std::uint64_t compaction_cancels = 0;  // streams canceled with a compact_revision
  std::uint64_t silent_streams = 0;      // streams given up: etcd stopped answering
};
WatchCounters WatchCountersForTesting();
// Called on the watch thread after each Range and before the watch stream is
// created from `start_revision`: a test can change and compact the store in
// between to force a compaction cancel. Pass nullptr to remove.
void SetBeforeWatchCreateHookForTesting(
    std::function<void(std::string_view service, std::int64_t start_revision)> hook);

// Called (on the discovery thread) each time member discovery (URL param
// auto_sync) changes a connection's endpoint set: the registry's redacted
// URL and the new "host:port" endpoints. Pass nullptr to remove.
void SetEndpointsDiscoveredHookForTesting(
    std::function<void(std::string_view url, const std::vector<std::string>& endpoints)> hook);

// The largest answer channels opened from now on read from etcd (default
// 64 MiB); 0 restores the default.
void SetMaxResponseBytesForTesting(int bytes);

}  // namespace disco::etcd
