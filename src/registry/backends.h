// Constructors of the registry backends, called by MakeRegistry (registry_factory.cpp).
#pragma once

#include <memory>

#include "disco/registry.h"
#include "disco/registry_url.h"

namespace disco {

Result<std::unique_ptr<Registry>> MakeMemoryRegistry(const RegistryUrl& url, const RegistryOptions& options);
Result<std::unique_ptr<Registry>> MakeEtcdRegistry(const RegistryUrl& url, const RegistryOptions& options);
Result<std::unique_ptr<Registry>> MakeConsulRegistry(const RegistryUrl& url, const RegistryOptions& options);

}  // namespace disco
