// The --redis URL: redis://[[user]:password@]host[:port][/db].
//
// host is a name, an IPv4 address or a bracketed IPv6 address; port defaults
// to 6379, db (SELECT) to 0. The userinfo may be percent-encoded; a password
// alone (":secret@") authenticates as the default user (AUTH secret), with a
// user it is AUTH user secret (Redis 6 ACLs). Nothing else is accepted
// (no rediss://, no query string): a URL we would half understand is an error.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "disco/error.h"

namespace disco::service::redis {

struct RedisUrl {
  std::string host;
  std::uint16_t port = 6379;
  std::string user;      // empty: the default user
  std::string password;  // never logged; empty: no AUTH
  int db = 0;

  // redis://host:port/db, with "***@" where a password was given: for logs.
  std::string Redacted() const;
};

// Errors: kInvalidArgument, with a message that never contains the password.
Result<RedisUrl> ParseRedisUrl(std::string_view text);

}  // namespace disco::service::redis
