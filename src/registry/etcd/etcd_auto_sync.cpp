#include "registry/etcd/etcd_auto_sync.h"

#include <algorithm>
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
  url = url.substr(0, url.find_first_of("/?#"));
  // The member list is the cluster's word, not ours: user info is not an
  // address (and would be logged), and a host gRPC reads as a target scheme
  // ("unix:2379" is a socket file) would dial something else entirely.
  if (url.find('@') != std::string_view::npos) return std::nullopt;
  auto host_port = ParseHostPort(url, tls ? 443 : 80);
  if (!host_port) return std::nullopt;
  std::string host = host_port->host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (std::string_view scheme_like : {"unix", "unix-abstract", "vsock", "dns", "ipv4", "ipv6"}) {
    if (host == scheme_like) return std::nullopt;
  }
  return *host_port;
}

MemberEndpoints SelectMemberEndpoints(const std::vector<ListedMember>& members,
                                      std::uint64_t answered_id, bool tls, std::size_t max) {
  MemberEndpoints out;
  for (const auto& member : members) {
    if (member.name.empty() || member.learner) continue;
    bool first_of_member = true;
    for (const auto& client_url : member.client_urls) {
      auto host_port = DialableClientUrl(client_url, tls);
      if (!host_port) continue;
      auto target = host_port->ToString();
      if (std::find(out.targets.begin(), out.targets.end(), target) != out.targets.end()) continue;
      if (out.targets.size() == max) {
        out.truncated = true;
        return out;
      }
      if (member.id == answered_id && first_of_member) out.answered = out.targets.size();
      first_of_member = false;
      out.targets.push_back(std::move(target));
    }
  }
  return out;
}

}  // namespace disco::etcd
