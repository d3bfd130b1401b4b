#include "registry/dns/dns_message.h"

#include <arpa/inet.h>
#include <ares.h>

#include <memory>

namespace disco::dns {
namespace {

constexpr int kTypeA = 1, kTypeAaaa = 28, kTypeSrv = 33, kClassIn = 1;

std::uint16_t Get16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint32_t Get32(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
         static_cast<std::uint32_t>(p[2]) << 8 | p[3];
}

auto Malformed(const std::string& why) { return Fail(ErrorCode::kMalformed, "DNS answer: " + why); }

// Expands the (possibly compressed) name at `at`; `length` is its size on the wire.
// A name with a label no host name can carry (a '.', a '\\' or an unprintable
// byte inside it, which c-ares writes as an escape) reads as "", the root: it
// can name no host we could connect to. Kept as text, "a\." would end in a
// dot that is not the root's, and compare unequal to every name asked for.
Result<std::string> ReadName(std::span<const unsigned char> msg, const unsigned char* at,
                             long* length) {
  char* raw = nullptr;
  if (ares_expand_name(at, msg.data(), static_cast<int>(msg.size()), &raw, length) != ARES_SUCCESS)
    return Malformed("bad name");
  std::unique_ptr<char, void (*)(void*)> owned(raw, ares_free_string);
  if (std::string_view(raw).find('\\') != std::string_view::npos) return std::string();
  return CanonicalName(raw);
}

}  // namespace

std::string CanonicalName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

Result<DnsMessage> ParseDnsMessage(std::span<const unsigned char> msg) {
  if (msg.size() < 12) return Malformed("shorter than a header");
  DnsMessage out;
  out.truncated = (msg[2] & 0x02) != 0;
  out.rcode = msg[3] & 0x0f;
  const unsigned questions = Get16(&msg[4]);
  const unsigned answers = Get16(&msg[6]);
  const unsigned authority = Get16(&msg[8]);
  const unsigned additional = Get16(&msg[10]);
  const unsigned char* p = msg.data() + 12;
  const unsigned char* end = msg.data() + msg.size();
  for (unsigned i = 0; i < questions; ++i) {
    long length = 0;
    auto name = ReadName(msg, p, &length);
    if (!name) return std::unexpected(name.error());
    p += length;
    if (end - p < 4) return Malformed("question cut short");
    p += 4;
  }
  const unsigned total = answers + authority + additional;
  for (unsigned i = 0; i < total; ++i) {
    // The additional section is a hint: a bad record there ends the reading
    // and the targets it would have covered are asked for. (dnsmasq 2.90
    // writes compression pointers past 16 KiB, where the 14-bit offsets
    // cannot reach, in answers of hundreds of SRV records.)
    const bool hint = i >= answers + authority;
    long length = 0;
    auto owner = ReadName(msg, p, &length);
    if (!owner) {
      if (hint) break;
      return std::unexpected(owner.error());
    }
    p += length;
    if (end - p < 10) {
      if (hint) break;
      return Malformed("record header cut short");
    }
    const int type = Get16(p), klass = Get16(p + 2);
    const std::uint32_t ttl = Get32(p + 4);
    const std::uint16_t rdlength = Get16(p + 8);
    p += 10;
    if (end - p < rdlength) {
      if (hint) break;
      return Malformed("record data cut short");
    }
    const unsigned char* rdata = p;
    p += rdlength;
    const bool in_answer = i < answers, in_authority = !in_answer && i < answers + authority;
    if (klass != kClassIn || in_authority) continue;
    if (type == kTypeSrv && in_answer) {
      if (rdlength < 7) return Malformed("SRV record too short");
      SrvRecord srv{*owner, ttl, Get16(rdata), Get16(rdata + 2), Get16(rdata + 4), {}};
      auto target = ReadName(msg, rdata + 6, &length);
      if (!target) return std::unexpected(target.error());
      srv.target = std::move(*target);
      out.srv.push_back(std::move(srv));
    } else if ((type == kTypeA && rdlength == 4) || (type == kTypeAaaa && rdlength == 16)) {
      char text[INET6_ADDRSTRLEN] = {};
      inet_ntop(type == kTypeA ? AF_INET : AF_INET6, rdata, text, sizeof text);
      out.addresses.push_back({*owner, ttl, text});
    }
  }
  return out;
}

}  // namespace disco::dns
