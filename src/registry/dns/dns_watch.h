// Watching through DNS, which cannot push: re-resolve when the answer's TTL
// runs out (kept within [min_refresh, max_refresh], up to `jitter` early so
// that many clients do not ask in step), report a change only when the set
// of instances changes, and report every failure (NXDOMAIN, SERVFAIL,
// timeout, unreachable server) so that the resolver keeps its last snapshot
// and shows it as stale. Failures are retried with doubling backoff from
// min_refresh up to max_refresh.
//
// Thread safety: the callback runs on the AresLoop's thread; the handle may
// be destroyed from any other thread, and no callback runs after that.
#pragma once

#include <memory>
#include <string>

#include "disco/registry.h"
#include "registry/dns/ares_loop.h"
#include "registry/dns/dns_config.h"

namespace disco::dns {

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<AresLoop> loop,
                                        std::shared_ptr<const DnsConfig> config, std::string service,
                                        WatchCallback callback);

}  // namespace disco::dns
