// The DNS answer reader (src/registry/dns/dns_message.cpp) on any bytes a
// name server (or anything answering on its port) may send: it must never
// crash, loop or throw. What it keeps must be usable: names canonical (lower
// case, no trailing dot, no escapes), addresses that parse as IPv4 or IPv6,
// and no more records than the message could hold.
#include <arpa/inet.h>

#include <cctype>

#include "fuzz_check.h"
#include "registry/dns/dns_message.h"

namespace disco::fuzz {
namespace {

void CheckName(const std::string& name) {
  Check(name.empty() || name.back() != '.', "a name kept its trailing dot");
  Check(name.find('\\') == std::string::npos, "a name kept an escape");
  for (unsigned char c : name) Check(!std::isupper(c), "a name is not lower case");
}

void CheckAddress(const std::string& text) {
  unsigned char buffer[16];
  Check(inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
            inet_pton(AF_INET6, text.c_str(), buffer) == 1,
        "an address record's text is no address");
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  auto message = dns::ParseDnsMessage(std::span<const unsigned char>(data, size));
  if (!message) return 0;
  // Each record takes at least 11 bytes on the wire (a 1-byte name, type,
  // class, TTL, length).
  fuzz::Check((message->srv.size() + message->addresses.size()) * 11 <= size,
              "more records than the message could hold");
  for (const auto& srv : message->srv) {
    fuzz::CheckName(srv.owner);
    fuzz::CheckName(srv.target);
  }
  for (const auto& record : message->addresses) {
    fuzz::CheckName(record.owner);
    fuzz::CheckAddress(record.address);
  }
  return 0;
}
