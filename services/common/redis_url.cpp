#include "redis_url.h"

#include <charconv>

namespace disco::service::redis {
namespace {

Result<std::string> PercentDecode(std::string_view in, std::string_view what) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    int value = 0;
    if (i + 2 >= in.size()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--redis: bad percent escape in the " + std::string(what));
    }
    auto [end, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
    if (ec != std::errc() || end != in.data() + i + 3) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--redis: bad percent escape in the " + std::string(what));
    }
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

}  // namespace

std::string RedisUrl::Redacted() const {
  std::string out = "redis://";
  if (!password.empty()) out += (user.empty() ? std::string() : user + ":") + "***@";
  bool v6 = host.find(':') != std::string::npos;
  out += v6 ? "[" + host + "]" : host;
  out += ":" + std::to_string(port) + "/" + std::to_string(db);
  return out;
}

Result<RedisUrl> ParseRedisUrl(std::string_view text) {
  auto bad = [](std::string why) {
    return Fail(ErrorCode::kInvalidArgument,
                "--redis: " + why + " (expected redis://[[user]:password@]host[:port][/db])");
  };
  constexpr std::string_view kScheme = "redis://";
  if (text.substr(0, kScheme.size()) != kScheme) {
    if (text.starts_with("rediss://")) return bad("TLS (rediss://) is not supported");
    return bad("the URL must start with redis://");
  }
  std::string_view rest = text.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos)
    return bad("no query or fragment allowed");
  RedisUrl url;
  // The userinfo ends at the last '@' (a password may contain '@' only
  // percent-encoded, but be lenient about where the host starts).
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) return bad("userinfo needs ':' before the password");
    auto user = PercentDecode(userinfo.substr(0, colon), "user");
    if (!user) return std::unexpected(user.error());
    auto password = PercentDecode(userinfo.substr(colon + 1), "password");
    if (!password) return std::unexpected(password.error());
    if (password->empty()) return bad("empty password");
    url.user = std::move(*user);
    url.password = std::move(*password);
  }
  std::string_view authority = rest;
  std::string_view path;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    path = rest.substr(slash + 1);
  }
  std::string_view port_text;
  if (authority.starts_with('[')) {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' in the host");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the IPv6 address");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    auto colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (url.host.empty()) return bad("no host");
  for (char c : url.host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok) return bad("bad character in the host");
  }
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return bad("bad port '" + std::string(port_text) + "'");
    }
    url.port = static_cast<std::uint16_t>(port);
  }
  if (!path.empty()) {
    int db = 0;
    auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), db);
    if (ec != std::errc() || end != path.data() + path.size() || db < 0 || db > 1'000'000) {
      return bad("bad database number '" + std::string(path) + "'");
    }
    url.db = db;
  }
  return url;
}

}  // namespace disco::service::redis
