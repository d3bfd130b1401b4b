// What a dns:// registry URL asks for: which name servers, how a service
// name becomes a DNS name, SRV or address records, and how often to
// re-resolve. Parsed once by the factory; plain values afterwards.
//
//   dns://[server[:port][,server[:port]...]][?param=value&...]
//
// No server: the name servers (and search domains, ndots) come from
// /etc/resolv.conf, as in a Kubernetes pod. Parameters: see
// docs/operations.md ("DNS registry URL").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/registry_url.h"
#include "disco/service_instance.h"

namespace disco::dns {

enum class RecordMode {
  kSrv,      // SRV: host, port, weight, priority per record
  kAddress,  // A/AAAA: every address on the URL's port
};

struct DnsConfig {
  std::vector<HostPort> servers{};  // empty: the resolv.conf's
  std::string resolv_conf{};        // empty: /etc/resolv.conf
  bool search_set = false;          // search given in the URL (may be empty: no search)
  std::vector<std::string> search{};
  int ndots = -1;                   // -1: resolv.conf's (c-ares default 1)
  RecordMode mode = RecordMode::kSrv;
  std::string name_template = "{service}";
  std::uint16_t port = 0;           // kAddress only, required there
  bool ipv4 = true, ipv6 = true;    // kAddress: which families to ask for
  std::chrono::milliseconds min_refresh{1000};  // TTL floor
  std::chrono::milliseconds max_refresh{30000};  // TTL ceiling
  double jitter = 0.1;                           // re-resolve up to this share early
  std::chrono::milliseconds timeout{1000};       // first try of a query, per server
  int tries = 2;
  std::size_t max_records = 1024;  // instances kept per answer (the rest dropped)
  bool nxdomain_is_empty = false;  // NXDOMAIN: error (default) or no instances
  std::vector<std::string> services{};  // what Services() answers
};

// Errors: kInvalidArgument naming the parameter.
Result<DnsConfig> ParseDnsConfig(const RegistryUrl& url);

// The resolv.conf `config` reads: its resolv_conf or /etc/resolv.conf.
std::string ResolvConfPath(const DnsConfig& config);

// c-ares quietly falls back to 127.0.0.1 when the resolv.conf is missing or
// names no server, which would make every lookup time out somewhere else.
// Errors: kInvalidArgument naming the file when a resolv_conf= cannot be
// read, or when the URL names no server and the resolv.conf has no
// "nameserver" line (or cannot be read).
Result<void> CheckResolvConf(const DnsConfig& config);

// The DNS name `service` stands for: the template with {service} replaced.
// Errors: kInvalidArgument when the result is not a valid DNS name.
Result<std::string> DnsName(const DnsConfig& config, std::string_view service);

// RFC 1035 shape (labels 1-63 of [A-Za-z0-9_-], at most 253 in all, one
// trailing dot allowed). Underscores: SRV owner names need them.
Result<void> ValidateDnsName(std::string_view name);

}  // namespace disco::dns
