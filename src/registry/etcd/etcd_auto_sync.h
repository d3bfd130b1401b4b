// The URL param auto_sync of etcd:// (member discovery, see
// etcd_connection.h) and the member client URLs it dials. Free of gRPC
// headers, so unit tests can include it.
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/registry_url.h"

namespace disco::etcd {

// The value of the URL param `auto_sync`: whole seconds, absent or 0: off.
// Errors: kInvalidArgument naming the parameter.
Result<std::chrono::seconds> ParseAutoSync(const RegistryUrl& url);

// The "host:port" of a member's client URL that a connection can dial:
// "http://h:p" (plaintext) or "https://h:p" (with `tls`); none otherwise.
std::optional<HostPort> DialableClientUrl(std::string_view url, bool tls);

// One member of a Cluster.MemberList answer, as far as discovery cares.
struct ListedMember {
  std::uint64_t id = 0;
  std::string name;  // empty: added but not started yet
  bool learner = false;
  std::vector<std::string> client_urls;
};

// The most endpoints discovery makes channels for: a broken or hostile
// member list must not make a client build thousands of gRPC channels (and
// threads' worth of connection attempts). Real clusters have 3 to 7 members.
inline constexpr std::size_t kMaxDiscoveredEndpoints = 64;

struct MemberEndpoints {
  std::vector<std::string> targets;  // "host:port", listed order, no repeats
  std::size_t answered = 0;          // index of the answering member's first target, else 0
  bool truncated = false;            // more than `max` were listed
};

// The endpoints a MemberList answer gives, as clientv3's Sync picks them:
// the dialable client URLs (DialableClientUrl) of started voting members (a
// learner serves no writes, an unstarted member has no client URL yet), at
// most `max`. `answered_id`: the member that answered, which comes first
// next.
MemberEndpoints SelectMemberEndpoints(const std::vector<ListedMember>& members,
                                      std::uint64_t answered_id, bool tls,
                                      std::size_t max = kMaxDiscoveredEndpoints);

}  // namespace disco::etcd
