// Catalog: every service the registry knows, each with a live resolver, for
// the Prometheus service-discovery endpoint and the dashboard.
//
// A background thread asks Registry::Services() every `refresh` and adds a
// resolver for each new name; routed services reuse the proxy's resolvers
// (so the dashboard shows the picks, failures and ejections the traffic
// made), the others get their own. Between refreshes, the resolvers' watches
// keep every instance list current, so an instance that dies disappears
// within its registration's TTL.
//
// Thread safety: Entries() may be called from any thread (it copies a small
// list under a mutex); the resolvers it returns live as long as the catalog.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "gateway/proxy.h"

namespace disco::gateway {

class Catalog {
 public:
  struct Entry {
    std::string service;
    Resolver* resolver = nullptr;
    std::string policy;               // the balancer policy the gateway uses for it
    std::vector<std::string> routes;  // prefixes routed to it (empty: not routed)
  };

  // Starts the refresh thread. `registry` and `proxy` must outlive the catalog.
  Catalog(Registry& registry, Proxy& proxy,
          std::chrono::milliseconds refresh = std::chrono::seconds(2));
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // Services sorted by name.
  std::vector<Entry> Entries() const;

  // The last error of Registry::Services(), empty when the last call worked.
  std::string LastError() const;

 private:
  void Run();
  void Refresh();

  Registry& registry_;
  const std::chrono::milliseconds refresh_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, Entry> entries_;        // guarded by mu_
  std::vector<std::unique_ptr<Resolver>> own_;  // resolvers of unrouted services
  std::string last_error_;                      // guarded by mu_
  std::thread thread_;                          // last: started when all else is ready
};

}  // namespace disco::gateway
