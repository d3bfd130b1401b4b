// How disco instances are laid out in etcd: keys, prefix ranges and values.
//
// The layout is etcd's naming/endpoints convention, so gRPC-Go clients using
// etcd's resolver find disco services and disco finds theirs:
//   key   <prefix>/<service>/<instance-id>          (no leading slash)
//   value {"Op":0,"Addr":"host:port","Metadata":{...}}
// Metadata carries disco's extras: {"id","tags","weight","zone","meta"}.
// Readers need only Addr; Metadata may be null or any JSON (Go's endpoints
// manager writes null), and the instance id always comes from the key.
//
// Thread safety: pure functions, plus MalformedLog which is thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "disco/error.h"
#include "disco/service_instance.h"

namespace disco::etcd {

// "<prefix>/" or "" for an empty prefix: the range Services() reads.
std::string RootPrefix(std::string_view prefix);

// "<prefix>/<service>/", with the trailing slash so that "svc" never
// matches "svc-canary/...".
std::string ServicePrefix(std::string_view prefix, std::string_view service);

std::string InstanceKey(std::string_view prefix, std::string_view service, std::string_view id);

// The range_end that makes [key, range_end) cover every key starting with
// `key_prefix` (clientv3's GetPrefixRangeEnd): the last byte below 0xff
// incremented, or "\0" (= to the end of the keyspace) when there is none.
std::string PrefixRangeEnd(std::string_view key_prefix);

std::string EncodeValue(const ServiceInstance& instance);

// Decodes the value stored at `key`, which must start with `service_prefix`
// (ServicePrefix()). The id is the rest of the key. Errors: kMalformed naming
// what is wrong (not JSON, no Addr, bad port ...).
Result<ServiceInstance> DecodeValue(std::string_view service, std::string_view service_prefix,
                                    std::string_view key, std::string_view value);

// Logs each malformed value once per (key, mod_revision), so a watcher that
// resyncs or a CLI that polls does not repeat the same warning forever.
class MalformedLog {
 public:
  void Warn(std::string_view url, std::string_view key, std::int64_t mod_revision,
            const Error& error);

 private:
  static constexpr std::size_t kMaxRemembered = 4096;
  std::mutex mu_;
  std::set<std::pair<std::string, std::int64_t>> seen_;  // guarded by mu_
};

}  // namespace disco::etcd
