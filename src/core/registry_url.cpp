#include "disco/registry_url.h"

#include <charconv>
#include <string>

#include "core/registry_schemes.h"

namespace disco {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      if (i + 2 >= in.size()) {
        return Fail(ErrorCode::kInvalidArgument, "bad percent-escape in '" + std::string(in) + "'");
      }
      // Two hex digits exactly: from_chars alone would also take a sign ("%-1").
      const int high = HexDigit(in[i + 1]), low = HexDigit(in[i + 2]);
      if (high < 0 || low < 0) {
        return Fail(ErrorCode::kInvalidArgument, "bad percent-escape in '" + std::string(in) + "'");
      }
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else if (in[i] == '+') {
      out += ' ';
    } else {
      out += in[i];
    }
  }
  return out;
}


}  // namespace

std::string HostPort::ToString() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return out + ":" + std::to_string(port);
}

Result<HostPort> ParseHostPort(std::string_view text, std::uint16_t default_port) {
  HostPort hp;
  std::string_view port_text;
  if (text.empty()) return Fail(ErrorCode::kInvalidArgument, "empty address");
  if (text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument,
                  "unclosed '[' in address '" + std::string(text) + "'");
    }
    hp.host = std::string(text.substr(1, close - 1));
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return Fail(ErrorCode::kInvalidArgument,
                    "expected ':port' after ']' in '" + std::string(text) + "'");
      }
      port_text = rest.substr(1);
    }
  } else {
    auto colon = text.rfind(':');
    if (colon != std::string_view::npos && text.find(':') != colon) {
      return Fail(ErrorCode::kInvalidArgument,
                  "IPv6 address '" + std::string(text) + "' must be written as [addr]:port");
    }
    hp.host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) port_text = text.substr(colon + 1);
  }
  if (hp.host.empty())
    return Fail(ErrorCode::kInvalidArgument, "missing host in '" + std::string(text) + "'");
  // "[[x]:1" would give the host "[x", which ToString() writes as "[x:1",
  // an address this function refuses: no host holds a bracket.
  if (hp.host.find_first_of("[]") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "brackets inside the host in '" + std::string(text) + "'");
  }
  if (port_text.empty()) {
    if (default_port == 0) {
      return Fail(ErrorCode::kInvalidArgument, "missing port in '" + std::string(text) + "'");
    }
    hp.port = default_port;
    return hp;
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (ec != std::errc() || ptr != port_text.data() + port_text.size() || value == 0 ||
      value > 65535) {
    return Fail(ErrorCode::kInvalidArgument, "bad port '" + std::string(port_text) + "' in '" +
                                                 std::string(text) + "' (want 1-65535)");
  }
  hp.port = static_cast<std::uint16_t>(value);
  return hp;
}

Result<RegistryUrl> ParseRegistryUrl(std::string_view url) {
  RegistryUrl out;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "registry URL '" + std::string(url) +
                    "' has no scheme; expected etcd://host:port[,host:port...], consul://host:port[,host:port...] or memory://");
  }
  out.scheme = std::string(url.substr(0, sep));
  const auto syntax = detail::LookupSchemeSyntax(out.scheme);
  if (!syntax) {
    return Fail(ErrorCode::kInvalidArgument, "unknown registry scheme '" + out.scheme +
                                                 "'; expected one of " + detail::KnownSchemes());
  }
  auto rest = url.substr(sep + 3);
  auto query_pos = rest.find('?');
  auto authority = rest.substr(0, query_pos);
  if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
  if (query_pos != std::string_view::npos) {
    auto query = rest.substr(query_pos + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      auto pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      if (pair.empty()) continue;
      auto eq = pair.find('=');
      auto key = PercentDecode(pair.substr(0, eq));
      if (!key) return std::unexpected(key.error());
      auto value =
          PercentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
      if (!value) return std::unexpected(value.error());
      if (key->empty()) {
        return Fail(ErrorCode::kInvalidArgument, "empty parameter name in registry URL");
      }
      // A repeated parameter (consul's tag=a&tag=b) reads as a comma list.
      auto [it, fresh] = out.params.emplace(*key, *value);
      if (!fresh) it->second += "," + *value;
    }
  }
  if (syntax->named) {
    out.name = std::string(authority);
    return out;
  }
  if (authority.find('/') != std::string_view::npos ||
      authority.find('@') != std::string_view::npos) {
    return Fail(
        ErrorCode::kInvalidArgument,
        "registry URL '" + std::string(url) + "' may only hold host:port[,host:port] before '?'");
  }
  if (authority.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "registry URL '" + std::string(url) + "' names no host");
  }
  for (bool more = true; more;) {
    auto comma = authority.find(',');
    auto item = authority.substr(0, comma);
    more = comma != std::string_view::npos;
    if (more) authority = authority.substr(comma + 1);
    auto hp = ParseHostPort(item, syntax->default_port);
    if (!hp) {
      return Fail(ErrorCode::kInvalidArgument,
                  "registry URL '" + std::string(url) + "': " + hp.error().message);
    }
    out.endpoints.push_back(*hp);
  }
  return out;
}

std::string RegistryUrl::Redacted() const {
  std::string out = scheme + "://";
  if (endpoints.empty()) {  // a named scheme (memory://<name>)
    out += name;
  } else {
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      if (i) out += ',';
      out += endpoints[i].ToString();
    }
  }
  char sep = '?';
  for (const auto& [key, value] : params) {
    out += sep;
    out += key;
    out += '=';
    out += (key == "token" || key == "password") ? "***" : value;
    sep = '&';
  }
  return out;
}

}  // namespace disco
