// The URL param auto_sync of etcd:// (member discovery, see
// etcd_connection.h) and the member client URLs it dials. Free of gRPC
// headers, so unit tests can include it.
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "disco/error.h"
#include "disco/registry_url.h"

namespace disco::etcd {

// The value of the URL param `auto_sync`: whole seconds, absent or 0: off.
// Errors: kInvalidArgument naming the parameter.
Result<std::chrono::seconds> ParseAutoSync(const RegistryUrl& url);

// The "host:port" of a member's client URL that a connection can dial:
// "http://h:p" (plaintext) or "https://h:p" (with `tls`); none otherwise.
std::optional<HostPort> DialableClientUrl(std::string_view url, bool tls);

}  // namespace disco::etcd
