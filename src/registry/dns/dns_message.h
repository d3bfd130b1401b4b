// Reads the records of a DNS response: SRV, A and AAAA with their TTLs, from
// the answer and additional sections (servers such as Consul and dnsmasq put
// the SRV targets' addresses in the additional section, which saves a query
// per target). c-ares's own parsers drop TTLs and the additional section.
//
// Thread safety: a pure function.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "disco/error.h"

namespace disco::dns {

struct SrvRecord {
  std::string owner{};  // lower case, no trailing dot; "" for a name no host can carry
  std::uint32_t ttl = 0;
  std::uint16_t priority = 0, weight = 0, port = 0;
  // Lower case, no trailing dot; "" for "." (no service) and for a name no
  // host can carry (a '.', '\\' or unprintable byte inside a label).
  std::string target{};
};

struct AddressRecord {
  std::string owner{};  // as SrvRecord::owner
  std::uint32_t ttl = 0;
  std::string address{};  // text form ("10.0.0.1", "fd00::1")
};

struct DnsMessage {
  int rcode = 0;
  bool truncated = false;
  std::vector<SrvRecord> srv{};              // answer section only
  std::vector<AddressRecord> addresses{};    // answer and additional sections
};

// Errors: kMalformed when the message is cut short or a name is bad.
Result<DnsMessage> ParseDnsMessage(std::span<const unsigned char> message);

// Lower case without the trailing dot: how names are compared here.
std::string CanonicalName(std::string_view name);

}  // namespace disco::dns
