// What every part of one etcd registry shares: the connection, the key
// layout and the malformed-value log. Registrations and watches hold it by
// shared_ptr, so they stay valid even if they outlive the Registry object.
//
// Thread safety: immutable after construction except for the members that
// are themselves thread-safe (EtcdConnection, MalformedLog, KeepAlivePool).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "registry/etcd/etcd_codec.h"
#include "registry/etcd/etcd_connection.h"
#include "registry/etcd/etcd_keepalive_pool.h"

namespace disco::etcd {

struct Context {
  // `tls`: TLS to the members (registry_tls.h); null: plain. `auto_sync`:
  // member discovery interval (zero: off).
  Context(const RegistryUrl& url, std::string redacted, const RegistryOptions& registry_options,
          std::string key_prefix, std::shared_ptr<tls::Config> tls = nullptr,
          std::chrono::seconds auto_sync = std::chrono::seconds(0))
      : connection(url, redacted, registry_options, std::move(tls), auto_sync),
        url(std::move(redacted)),
        options(registry_options),
        prefix(std::move(key_prefix)) {}

  EtcdConnection connection;
  const std::string url;  // redacted, for messages
  const RegistryOptions options;
  const std::string prefix;  // no trailing slash, e.g. "services"
  MalformedLog malformed;
  // Declared last: destroyed first, once no registration holds the context.
  KeepAlivePool keepalives;
};

// The instances of one service as read by one Range: keyed by instance id
// (so sorted by id), plus the revision the read saw.
struct Listing {
  std::map<std::string, ServiceInstance> instances;
  std::int64_t revision = 0;
};

// Range over the service's prefix; malformed values are skipped and logged.
Result<Listing> ListService(Context& context, std::string_view service, const CallOptions& options);

// The sorted instances of a listing, as a WatchUpdate wants them.
std::vector<ServiceInstance> SortedInstances(
    const std::map<std::string, ServiceInstance>& instances);

}  // namespace disco::etcd
