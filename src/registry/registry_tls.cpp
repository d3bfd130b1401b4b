#include "registry/registry_tls.h"

#include <cstdlib>
#include <string>

namespace disco {

namespace {

std::string Param(const RegistryUrl& url, const std::string& key, const char* env) {
  if (auto it = url.params.find(key); it != url.params.end()) return it->second;
  const char* value = std::getenv(env);
  return value ? std::string(value) : std::string();
}

}  // namespace

bool IsRegistryTlsParam(std::string_view key) {
  return key == "tls" || key == "ca" || key == "cert" || key == "key" || key == "tls_reload";
}

Result<RegistryTls> ParseRegistryTls(const RegistryUrl& url) {
  tls::Files files{.cert_file = Param(url, "cert", "DISCO_REGISTRY_CERT"),
                   .key_file = Param(url, "key", "DISCO_REGISTRY_KEY"),
                   .ca_file = Param(url, "ca", "DISCO_REGISTRY_CA")};
  bool on = !files.ca_file.empty() || !files.cert_file.empty() || !files.key_file.empty();
  if (auto it = url.params.find("tls"); it != url.params.end()) {
    if (it->second == "1" || it->second == "true" || it->second.empty()) {
      on = true;
    } else if (it->second == "0" || it->second == "false") {
      if (on)
        return Fail(ErrorCode::kInvalidArgument,
                    url.scheme + "://: tls=" + it->second + " but a CA or certificate is given");
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  url.scheme + ":// parameter tls='" + it->second + "': want 1 or 0");
    }
  }
  std::chrono::seconds reload_check{10};
  if (auto it = url.params.find("tls_reload"); it != url.params.end()) {
    const auto& text = it->second;
    const bool digits = !text.empty() && text.size() <= 6 &&
                        text.find_first_not_of("0123456789") == std::string::npos;
    if (!digits)
      return Fail(ErrorCode::kInvalidArgument, url.scheme + ":// parameter tls_reload='" + text +
                                                   "': want whole seconds (0: never)");
    reload_check = std::chrono::seconds(std::stoi(text));
  }
  if (!on) return RegistryTls{};
  auto config = tls::Config::Load(tls::Role::kClient, std::move(files));
  if (!config)
    return Fail(ErrorCode::kInvalidArgument,
                url.scheme + ":// TLS (ca, cert, key): " + config.error().message);
  (*config)->CheckFilesEvery(reload_check);
  return RegistryTls{std::move(*config)};
}

}  // namespace disco
