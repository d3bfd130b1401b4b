// One resolution of a service through DNS: the SRV records of its name (and
// the A/AAAA records of their targets, from the additional section when the
// server sent them, else queried), or the A/AAAA records of a plain name on
// the URL's port. Turned into instances the way the other backends give
// them: one per address and port, sorted by id.
//
// Thread safety: Lookup runs on the AresLoop's thread and calls `done` there,
// exactly once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "disco/error.h"
#include "disco/service_instance.h"
#include "registry/dns/ares_loop.h"
#include "registry/dns/dns_config.h"

namespace disco::dns {

struct LookupResult {
  // The instances to use: the SRV records of the best (lowest) priority that
  // has at least one address, so a lower priority serves only when nothing
  // of a higher one is left. Sorted by id.
  std::vector<ServiceInstance> active{};
  // Every record: the active ones kPassing, lower priorities kWarning
  // ("standby"), targets without an address kCritical. Sorted by id.
  std::vector<InstanceStatus> all{};
  // The smallest TTL of the records used; 0 when there were none.
  std::chrono::seconds ttl{0};
};

using LookupCallback = std::function<void(Result<LookupResult>)>;

void Lookup(AresLoop& loop, std::shared_ptr<const DnsConfig> config, std::string service,
            LookupCallback done);

}  // namespace disco::dns
