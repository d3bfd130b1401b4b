#include "registry/backends.h"

#include "disco/metrics.h"

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
  Result<std::unique_ptr<Registry>> made = parsed->scheme == "memory" ? MakeMemoryRegistry(*parsed, options)
                                           : parsed->scheme == "etcd"   ? MakeEtcdRegistry(*parsed, options)
                                                                        : MakeConsulRegistry(*parsed, options);
  if (!made) return made;
  return InstrumentRegistry(std::move(*made), parsed->scheme,
                            options.metrics ? *options.metrics : MetricsRegistry::Default());
}

}  // namespace disco
