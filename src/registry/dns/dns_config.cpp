#include "registry/dns/dns_config.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace disco::dns {
namespace {

constexpr std::string_view kPlaceholder = "{service}";

Result<std::chrono::milliseconds> ParseDuration(std::string_view key, std::string_view text) {
  // Go-style like Consul's ("500ms", "2s", "1m"); a bare number is seconds.
  long long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  std::string_view unit(ptr, text.data() + text.size() - ptr);
  long long scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m")
    scale = 60'000;
  // At most a day whatever the unit: the loop hands timeouts to poll(2) and
  // c-ares as int milliseconds (a month of them would overflow).
  if (ec != std::errc() || ptr == text.data() || scale == 0 || value < 0 ||
      value > 86'400'000 / scale) {
    return Fail(ErrorCode::kInvalidArgument,
                "dns:// parameter " + std::string(key) + "='" + std::string(text) +
                    "' is not a duration of at most a day (500ms, 2s, 1m)");
  }
  return std::chrono::milliseconds(value * scale);
}

Result<long long> ParseInt(std::string_view key, std::string_view text, long long lo,
                           long long hi) {
  long long value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value < lo || value > hi) {
    return Fail(ErrorCode::kInvalidArgument, "dns:// parameter " + std::string(key) + "='" +
                                                 std::string(text) + "' must be an integer in " +
                                                 std::to_string(lo) + ".." + std::to_string(hi));
  }
  return value;
}

std::vector<std::string> SplitComma(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

bool LabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

Result<void> ApplyParam(DnsConfig& config, const std::string& key, const std::string& value) {
  auto bad = [&](std::string why) {
    return Fail(ErrorCode::kInvalidArgument,
                "dns:// parameter " + key + "='" + value + "': " + why);
  };
  if (key == "record") {
    if (value == "srv")
      config.mode = RecordMode::kSrv;
    else if (value == "a")
      config.mode = RecordMode::kAddress;
    else
      return bad("want srv or a (A/AAAA)");
  } else if (key == "name") {
    auto at = value.find(kPlaceholder);
    if (at == std::string::npos || value.find(kPlaceholder, at + 1) != std::string::npos)
      return bad("must hold {service} exactly once");
    config.name_template = value;
  } else if (key == "port") {
    auto port = ParseInt(key, value, 1, 65535);
    if (!port) return std::unexpected(port.error());
    config.port = static_cast<std::uint16_t>(*port);
  } else if (key == "family") {
    if (value == "4")
      config.ipv6 = false, config.ipv4 = true;
    else if (value == "6")
      config.ipv4 = false, config.ipv6 = true;
    else if (value == "any")
      config.ipv4 = config.ipv6 = true;
    else
      return bad("want 4, 6 or any");
  } else if (key == "resolv_conf") {
    if (value.empty()) return bad("empty path");
    config.resolv_conf = value;
  } else if (key == "search") {
    config.search_set = true;
    config.search = SplitComma(value);
    for (const auto& domain : config.search)
      if (auto ok = ValidateDnsName(domain); !ok) return bad(ok.error().message);
  } else if (key == "ndots") {
    auto ndots = ParseInt(key, value, 0, 15);
    if (!ndots) return std::unexpected(ndots.error());
    config.ndots = static_cast<int>(*ndots);
  } else if (key == "min_refresh" || key == "max_refresh" || key == "timeout") {
    auto duration = ParseDuration(key, value);
    if (!duration) return std::unexpected(duration.error());
    if (duration->count() < 10) return bad("at least 10ms");
    (key == "min_refresh"   ? config.min_refresh
     : key == "max_refresh" ? config.max_refresh
                            : config.timeout) = *duration;
  } else if (key == "jitter") {
    auto percent = ParseInt(key, value, 0, 50);
    if (!percent) return bad("a percentage 0..50 (of the refresh interval, taken off it)");
    config.jitter = static_cast<double>(*percent) / 100.0;
  } else if (key == "tries") {
    auto tries = ParseInt(key, value, 1, 10);
    if (!tries) return std::unexpected(tries.error());
    config.tries = static_cast<int>(*tries);
  } else if (key == "max_records") {
    auto max = ParseInt(key, value, 1, 65535);
    if (!max) return std::unexpected(max.error());
    config.max_records = static_cast<std::size_t>(*max);
  } else if (key == "nxdomain") {
    if (value == "error")
      config.nxdomain_is_empty = false;
    else if (value == "empty")
      config.nxdomain_is_empty = true;
    else
      return bad("want error or empty");
  } else if (key == "services") {
    config.services = SplitComma(value);
    for (const auto& name : config.services)
      if (auto ok = ValidateName("service name", name); !ok) return bad(ok.error().message);
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "unknown dns:// parameter '" + key +
                    "' (record, name, port, family, resolv_conf, search, ndots, min_refresh, "
                    "max_refresh, jitter, timeout, tries, max_records, nxdomain, services)");
  }
  return {};
}

}  // namespace

Result<void> ValidateDnsName(std::string_view name) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "bad DNS name '" + std::string(name) + "': " + why);
  };
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return bad("empty");
  if (name.size() > 253) return bad("longer than 253 characters");
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return bad("empty label");
      label = 0;
      continue;
    }
    if (!LabelChar(c)) return bad(std::string("character '") + c + "' not allowed");
    if (++label > 63) return bad("label longer than 63 characters");
  }
  if (label == 0) return bad("empty label");
  return {};
}

Result<DnsConfig> ParseDnsConfig(const RegistryUrl& url) {
  DnsConfig config;
  // Registered as a named scheme so that "dns://" alone (resolv.conf) parses;
  // the name is then the server list.
  for (const auto& item : SplitComma(url.name)) {
    auto server = ParseHostPort(item, 53);
    if (!server) {
      return Fail(ErrorCode::kInvalidArgument, "dns:// server list: " + server.error().message);
    }
    config.servers.push_back(*server);
  }
  for (const auto& [key, value] : url.params)
    if (auto ok = ApplyParam(config, key, value); !ok) return std::unexpected(ok.error());
  if (config.mode == RecordMode::kAddress && config.port == 0)
    return Fail(ErrorCode::kInvalidArgument,
                "dns:// with record=a needs port=N (A records carry no port)");
  if (config.mode == RecordMode::kSrv && config.port != 0)
    return Fail(ErrorCode::kInvalidArgument,
                "dns:// port= is for record=a; SRV records carry their ports");
  if (config.min_refresh > config.max_refresh)
    return Fail(ErrorCode::kInvalidArgument, "dns:// min_refresh is above max_refresh");
  if (auto ok = DnsName(config, "x"); !ok) return std::unexpected(ok.error());
  return config;
}

std::string ResolvConfPath(const DnsConfig& config) {
  return config.resolv_conf.empty() ? "/etc/resolv.conf" : config.resolv_conf;
}

Result<void> CheckResolvConf(const DnsConfig& config) {
  const std::string path = ResolvConfPath(config);
  const bool need_server = config.servers.empty();
  if (!need_server && config.resolv_conf.empty()) return {};  // servers given; search domains optional
  const std::string fix = need_server ? "; name a server in the URL (dns://10.96.0.10:53?...)" : "";
  std::ifstream in(path);
  if (!in) {
    return Fail(ErrorCode::kInvalidArgument,
                "dns://: cannot read " + path + " (" + std::strerror(errno) + ")" + fix);
  }
  if (!need_server) return {};
  // The resolver's grammar: "nameserver <address>", '#' or ';' comments.
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string keyword, address;
    if (words >> keyword >> address && keyword == "nameserver") return {};
  }
  return Fail(ErrorCode::kInvalidArgument,
              "dns://: " + path + " has no nameserver line" + fix);
}

Result<std::string> DnsName(const DnsConfig& config, std::string_view service) {
  std::string name = config.name_template;
  name.replace(name.find(kPlaceholder), kPlaceholder.size(), service);
  if (auto ok = ValidateDnsName(name); !ok) return std::unexpected(ok.error());
  return name;
}

}  // namespace disco::dns
