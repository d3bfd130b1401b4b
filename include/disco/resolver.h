// Resolver: one live, watched view of one service, and the pick path.
//
// A Resolver watches its service in a Registry and publishes immutable
// snapshots (with a picker built by its Balancer) through an atomic pointer
// swap. While the registry is unreachable it keeps serving the last known
// snapshot and reports how stale it is; when the registry returns, the
// backend resyncs fully and the resolver publishes the fresh state, except
// that endpoints the registry does not list again yet are kept for a short
// recovery grace (see ResolverOptions::recovery_grace).
//
// Thread safety: all methods may be called from any thread. Pick() never
// locks or allocates on its fast path (a per-thread cached pointer, refreshed
// only when a new snapshot was published). Subscribers are called one at a
// time, in publication order, on the thread that delivers the registry's
// watch updates, except for the snapshot published when a recovery grace
// ends without a further update (ResolverOptions::recovery_grace): that one
// comes from a thread of the resolver's own. See Subscribe() for what a
// callback must not do.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "disco/balancer.h"
#include "disco/endpoint_ptr.h"
#include "disco/error.h"
#include "disco/outlier.h"
#include "disco/registry.h"
#include "disco/snapshot.h"

namespace disco {

class MetricsRegistry;

struct ResolverOptions {
  std::string policy = "round_robin";
  // When set, the balancer is wrapped in outlier detection fed by Report().
  std::optional<OutlierOptions> outlier_detection = std::nullopt;
  // Where the resolver's metrics go (picks, calls, in-flight and ejection
  // per endpoint; ejections, endpoints and staleness per service), computed
  // at scrape time from its counters. nullptr: MetricsRegistry::Default().
  // Must outlive the resolver.
  MetricsRegistry* metrics = nullptr;
  // After an outage the registry's first lists may lack instances that are
  // alive but have not registered again yet: a Consul agent that restarted
  // without state knows no service until each registrant re-registers (its
  // next heartbeat, within TTL/3 plus backoff). For this long after the watch
  // reconnects, endpoints of the last snapshot before the outage that the
  // registry does not list (again) stay in the picks; instances it lists are
  // taken at once, and an endpoint it lists once is no longer held. Then the
  // registry's list is taken as it is. An endpoint that died meanwhile is
  // covered by outlier detection and retries (a refused connection ejects at
  // once). Zero: take the first list after an outage as it is.
  std::chrono::milliseconds recovery_grace{10'000};
};

class Resolver {
 public:
  // Starts watching `service` in `registry`, which must outlive the resolver.
  // Errors: kInvalidArgument (bad service name or policy).
  static Result<std::unique_ptr<Resolver>> Make(Registry& registry, std::string service,
                                                ResolverOptions options = {});
  virtual ~Resolver() = default;

  virtual const std::string& service() const = 0;

  // The current snapshot (empty before the first update arrives).
  virtual SnapshotConstPtr snapshot() const = 0;

  // Picks an endpoint; nullptr when none is known. The EndpointPtr keeps the
  // endpoint's snapshot alive (disco/endpoint_ptr.h).
  virtual EndpointPtr Pick(const PickContext& context = {}) = 0;

  // Records the outcome of a call to an endpoint that Pick() returned:
  // updates its counters and feeds outlier detection (when enabled).
  virtual void Report(const Endpoint& endpoint, CallOutcome outcome) = 0;

  // The outlier detector, or nullptr when outlier detection is off.
  virtual OutlierDetector* outlier_detector() = 0;

  // Blocks until the first update (ok or error) arrived or `timeout` passed.
  // Returns true if a snapshot from the registry is available.
  virtual bool WaitReady(std::chrono::milliseconds timeout) = 0;

  // How long since the registry last confirmed this view; 0 while the watch
  // is connected and healthy. Counted from the watch's error, which a backend
  // may hold back for a moment (etcd with several members waits out an
  // election: up to 5 s). A snapshot published on the registry's return is
  // never seen with the outage's staleness or error: both are cleared before
  // it is published (so also before subscribers hear of it).
  virtual std::chrono::milliseconds Staleness() const = 0;

  // The last watch error, empty while connected.
  virtual std::string LastError() const = 0;

  // Calls `callback` with each newly published snapshot (not the current one)
  // until the returned handle is destroyed; destroying it waits for a call in
  // progress. Callbacks run under the resolver's locks: a callback must not
  // call Subscribe() or destroy a Subscription of this resolver (deadlock),
  // and should return quickly (the next update waits for it).
  // REQUIRES: the handle is destroyed before the resolver.
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  [[nodiscard]] virtual std::unique_ptr<Subscription> Subscribe(
      std::function<void(const SnapshotConstPtr&)> callback) = 0;
};

}  // namespace disco
