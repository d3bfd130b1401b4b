// Placeholder until the etcd backend lands.
#include "registry/backends.h"

namespace disco {

Result<std::unique_ptr<Registry>> MakeEtcdRegistry(const RegistryUrl&, const RegistryOptions&) {
  return Fail(ErrorCode::kInternal, "etcd backend not built yet");
}

}  // namespace disco
