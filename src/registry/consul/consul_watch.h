// A watch of one service's passing instances: a loop of blocking queries on
// GET /v1/health/service/<name>?passing, on the backend's I/O thread.
//
// Index rules (Consul's documented ones): the first query and the first after
// any failure do not block (index 0 → full resync); an index that goes
// backwards resets to 0; an answer with index 0 blocks on 1 next, never on 0;
// loops are at least 100 ms apart so that wakeups which change nothing
// (timeouts, node checks, other services) cannot make it spin; failures back
// off with jitter. The read timeout is wait + wait/16 + the request timeout.
//
// Delivery: the callback gets the full sorted list, only when it differs from
// the last one delivered (wakeups are compared by content), or after an
// error (a full resync). An answer that cannot be parsed keeps the last good
// list (with a warning in the log); malformed entries are skipped one by
// one. An error update is delivered when the agent cannot answer
// (unreachable, timeout, non-200), once per distinct error.
//
// Thread safety: the handle may be destroyed on any thread, including the
// delivery thread from another watch's callback; the destructor returns
// within the time a running callback takes, and no callback of this watch
// starts after it returned.
#pragma once

#include <memory>
#include <string>

#include "disco/registry.h"
#include "registry/consul/consul_core.h"

namespace disco::consul {

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<Core> core, std::string service,
                                        WatchCallback callback);

// The target of a health query:
// /v1/health/service/<name>?passing&stale&dc=<dc>&tag=<t1>&tag=<t2>...
std::string HealthTarget(const Config& config, const std::string& service, bool passing_only);

}  // namespace disco::consul
