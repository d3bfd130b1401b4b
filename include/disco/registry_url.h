// Parsing of registry URLs ("etcd://h:p,h:p?prefix=x", "consul://h:p?token=t").
//
// Thread safety: plain values and a pure function.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"

namespace disco {

struct HostPort {
  std::string host{};
  std::uint16_t port = 0;
  std::string ToString() const;  // IPv6 hosts in brackets
  bool operator==(const HostPort&) const = default;
};

struct RegistryUrl {
  std::string scheme{};                         // "etcd", "consul", "memory"
  std::vector<HostPort> endpoints{};            // empty for memory://
  std::string name{};                           // memory://<name>
  std::map<std::string, std::string> params{};  // query parameters, decoded

  // The URL with secret parameters (token, password) replaced by "***", for logs.
  std::string Redacted() const;
};

// Errors: kInvalidArgument with a message that names the offending part.
// A missing port takes the scheme's default (etcd 2379, consul 8500).
Result<RegistryUrl> ParseRegistryUrl(std::string_view url);

// "host:port" or "[v6]:port"; `default_port` used when absent (0 = required).
Result<HostPort> ParseHostPort(std::string_view text, std::uint16_t default_port = 0);

}  // namespace disco
