// Watching through DNS, which cannot push: re-resolve when the answer's TTL
// runs out (kept within [min_refresh, max_refresh], up to `jitter` early so
// that many clients do not ask in step), report a change only when the set
// of instances changes, and report every failure (NXDOMAIN, SERVFAIL,
// timeout, unreachable server) so that the resolver keeps its last snapshot
// and shows it as stale. Failures are retried with doubling backoff from
// min_refresh up to max_refresh.
//
// Thread safety: lookups run on the AresLoop's thread, callbacks on the
// registry's DeliveryThread (dns_delivery.h), so a callback may call the
// registry's blocking methods. The handle may be destroyed from any thread,
// its own callback included; no callback starts after that.
#pragma once

#include <memory>
#include <string>

#include "disco/registry.h"
#include "registry/dns/ares_loop.h"
#include "registry/dns/dns_config.h"
#include "registry/dns/dns_delivery.h"

namespace disco::dns {

// The threads of one DNS registry, shared by it and its watches (a watch may
// outlive its registry). Members in this order so that the c-ares thread is
// joined before the delivery thread goes: lookups on the c-ares thread send
// to the delivery thread through a plain pointer.
struct Threads {
  DeliveryThread delivery;
  std::shared_ptr<AresLoop> loop;
};

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<Threads> threads,
                                        std::shared_ptr<const DnsConfig> config, std::string service,
                                        WatchCallback callback);

}  // namespace disco::dns
