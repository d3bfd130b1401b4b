// Constructors of the registry backends, called by MakeRegistry (registry_factory.cpp).
#pragma once

#include <memory>
#include <string>

#include "disco/registry.h"
#include "disco/registry_url.h"

namespace disco {

Result<std::unique_ptr<Registry>> MakeMemoryRegistry(const RegistryUrl& url, const RegistryOptions& options);
Result<std::unique_ptr<Registry>> MakeEtcdRegistry(const RegistryUrl& url, const RegistryOptions& options);
Result<std::unique_ptr<Registry>> MakeConsulRegistry(const RegistryUrl& url, const RegistryOptions& options);
Result<std::unique_ptr<Registry>> MakeDnsRegistry(const RegistryUrl& url, const RegistryOptions& options);

// Wraps `inner` so that every operation is counted in `metrics` under
// backend = `backend` ("etcd", "consul", "memory"); see instrumented_registry.cpp.
std::unique_ptr<Registry> InstrumentRegistry(std::unique_ptr<Registry> inner, std::string backend,
                                             MetricsRegistry& metrics);

}  // namespace disco
