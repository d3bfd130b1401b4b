// dns:// pieces that need no server: the URL's parameters and reading DNS
// messages, including every truncation of a real answer (none may crash or
// be read as records that were not there).
#include <gtest/gtest.h>

#include <vector>

#include "registry/dns/dns_config.h"
#include "registry/dns/dns_message.h"

namespace disco::dns {
namespace {

// An SRV answer for _h._tcp.s: priority 1, weight 5, port 80, target a.s,
// with a.s's A record 10.0.0.1 in the additional section.
std::vector<unsigned char> SrvAnswer() {
  return {
      0x12, 0x34, 0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 1,           // header: 1 q, 1 an, 1 ar
      2, '_', 'h', 4, '_', 't', 'c', 'p', 1, 's', 0, 0, 33, 0, 1,  // question (offset 12)
      0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 7, 0, 10,                  // SRV, TTL 7, rdlength 10
      0, 1, 0, 5, 0, 80, 1, 'a', 0xc0, 20,                       // 1 5 80 a.s (s at 20)
      0xc0, 45, 0, 1, 0, 1, 0, 0, 0, 3, 0, 4, 10, 0, 0, 1,       // A a.s TTL 3 (a.s at 45)
  };
}

TEST(DnsMessageTest, ReadsSrvAndAdditionalAddressesWithTtls) {
  auto bytes = SrvAnswer();
  auto message = ParseDnsMessage(bytes);
  ASSERT_TRUE(message) << message.error().ToString();
  ASSERT_EQ(message->srv.size(), 1u);
  EXPECT_EQ(message->srv[0].owner, "_h._tcp.s");
  EXPECT_EQ(message->srv[0].target, "a.s");
  EXPECT_EQ(message->srv[0].priority, 1);
  EXPECT_EQ(message->srv[0].weight, 5);
  EXPECT_EQ(message->srv[0].port, 80);
  EXPECT_EQ(message->srv[0].ttl, 7u);
  ASSERT_EQ(message->addresses.size(), 1u);
  EXPECT_EQ(message->addresses[0].owner, "a.s");
  EXPECT_EQ(message->addresses[0].address, "10.0.0.1");
  EXPECT_EQ(message->addresses[0].ttl, 3u);
}

TEST(DnsMessageTest, EveryTruncationIsAnErrorOrASubset) {
  auto bytes = SrvAnswer();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto message = ParseDnsMessage(std::span(bytes.data(), n));
    if (!message) {
      EXPECT_EQ(message.error().code, ErrorCode::kMalformed);
      continue;
    }
    // Only a cut inside the additional section (a hint) reads at all.
    EXPECT_EQ(message->srv.size(), 1u) << n;
    EXPECT_TRUE(message->addresses.empty()) << n;
  }
  bytes[45] = 0xc0;  // the SRV target's name now points at itself
  bytes[46] = 45;
  EXPECT_FALSE(ParseDnsMessage(bytes));
}

// A label may hold any byte on the wire. c-ares writes a '.' inside one as
// "\.", so a name could end in a dot that is not the root's, and kept it once
// the root's was cut (found by fuzzing in CI). No host is called that: a name
// with an escape reads as "", which names no host.
TEST(DnsMessageTest, ANameNoHostCanCarryReadsAsTheRoot) {
  auto bytes = SrvAnswer();
  bytes[46] = '.';  // the SRV target a.s is now the label "." then s; the A record's owner too
  auto message = ParseDnsMessage(bytes);
  ASSERT_TRUE(message) << message.error().ToString();
  ASSERT_EQ(message->srv.size(), 1u);
  EXPECT_EQ(message->srv[0].owner, "_h._tcp.s");
  EXPECT_EQ(message->srv[0].target, "");
  ASSERT_EQ(message->addresses.size(), 1u);
  EXPECT_EQ(message->addresses[0].owner, "");
  bytes[46] = 0x01;  // an unprintable byte, written "\001"
  message = ParseDnsMessage(bytes);
  ASSERT_TRUE(message) << message.error().ToString();
  EXPECT_EQ(message->srv[0].target, "");
}

TEST(DnsConfigTest, UrlParameters) {
  auto config = ParseDnsConfig({"dns", {}, "10.0.0.2,[fd00::1]:5353",
                                {{"name", "_http._tcp.{service}"}, {"min_refresh", "250ms"},
                                 {"max_refresh", "1m"}, {"search", "a.local,b.local"}, {"ndots", "5"}}});
  ASSERT_TRUE(config) << config.error().ToString();
  ASSERT_EQ(config->servers.size(), 2u);
  EXPECT_EQ(config->servers[0].ToString(), "10.0.0.2:53");
  EXPECT_EQ(config->servers[1].ToString(), "[fd00::1]:5353");
  EXPECT_EQ(config->min_refresh.count(), 250);
  EXPECT_EQ(config->max_refresh.count(), 60'000);
  EXPECT_EQ(config->search, (std::vector<std::string>{"a.local", "b.local"}));
  EXPECT_EQ(DnsName(*config, "web").value(), "_http._tcp.web");
  EXPECT_FALSE(DnsName(*config, std::string(64, 'x')));
  // Durations stop at a day, whatever the unit (poll(2) and c-ares take int
  // milliseconds: a month of them overflowed into a busy loop).
  for (const char* too_long : {"3000000s", "1441m", "86400001ms"}) {
    EXPECT_FALSE(ParseDnsConfig({"dns", {}, "10.0.0.2", {{"timeout", too_long}}})) << too_long;
  }
  EXPECT_TRUE(ParseDnsConfig({"dns", {}, "10.0.0.2", {{"max_refresh", "1440m"}}}));

  for (auto params : std::vector<std::map<std::string, std::string>>{
           {{"record", "a"}},                       // no port
           {{"port", "80"}},                        // port without record=a
           {{"min_refresh", "5s"}, {"max_refresh", "1s"}},
           {{"min_refresh", "fast"}},
           {{"jitter", "90"}},
           {{"name", "{service}.{service}"}},
           {{"search", "bad..domain"}},
           {{"nxdomain", "maybe"}},
       }) {
    EXPECT_FALSE(ParseDnsConfig({"dns", {}, "", params})) << params.begin()->first;
  }
}

}  // namespace
}  // namespace disco::dns
