// Placeholder until the Consul backend lands (issue 3).
#include "registry/backends.h"

namespace disco {

Result<std::unique_ptr<Registry>> MakeConsulRegistry(const RegistryUrl& url, const RegistryOptions&) {
  return Fail(ErrorCode::kInvalidArgument,
              "registry " + url.Redacted() + ": the consul backend is not built in this version");
}

}  // namespace disco
