#include "registry/etcd/etcd_auto_sync.h"

#include <string>

namespace disco::etcd {

Result<std::chrono::seconds> ParseAutoSync(const RegistryUrl& url) {
  auto it = url.params.find("auto_sync");
  if (it == url.params.end()) return std::chrono::seconds(0);
  const auto& text = it->second;
  const bool digits = !text.empty() && text.size() <= 6 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) {
    return Fail(ErrorCode::kInvalidArgument,
                url.scheme + ":// parameter auto_sync='" + text + "': want whole seconds (0: off)");
  }
  return std::chrono::seconds(std::stoi(text));
}

std::optional<HostPort> DialableClientUrl(std::string_view url, bool tls) {
  // Only the scheme the connection's credentials speak: a plaintext channel
  // to a TLS port (or the reverse) never works. unix:// is not dialled.
  const std::string_view scheme = tls ? "https://" : "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());
  url = url.substr(0, url.find('/'));
  auto host_port = ParseHostPort(url, tls ? 443 : 80);
  if (!host_port) return std::nullopt;
  return *host_port;
}

}  // namespace disco::etcd
