#include "registry/backends.h"

namespace disco {

std::string_view RegistrationStateName(RegistrationState state) {
  switch (state) {
    case RegistrationState::kActive: return "active";
    case RegistrationState::kRestoring: return "restoring";
    case RegistrationState::kDeregistered: return "deregistered";
  }
  return "unknown";
}

Result<std::unique_ptr<Registry>> MakeRegistry(std::string_view url, const RegistryOptions& options) {
  auto parsed = ParseRegistryUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  if (parsed->scheme == "memory") return MakeMemoryRegistry(*parsed, options);
  if (parsed->scheme == "etcd") return MakeEtcdRegistry(*parsed, options);
  return MakeConsulRegistry(*parsed, options);
}

}  // namespace disco
