// The start-up steps every demo service's main() shares. Each step either
// gives its value or logs one line saying what is wrong and gives the exit
// code (2: a flag or the configuration is wrong; 1: a resource could not be
// opened), so that main() reads as the list of what the service needs:
//
//   if (auto exit = service::ParseFlags(app, argc, argv, config)) return *exit;
//   return service::GuardMain(config, [&] {
//     auto jwt = service::LoadJwt(config, "tokens are valid only here");
//     if (!jwt) return jwt.error();
//     ...
//   });
//
// Thread safety: main thread only, before the service starts.
#pragma once

#include <CLI/CLI.hpp>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "config.h"
#include "database.h"
#include "disco/registry.h"
#include "disco/stop_signals.h"
#include "jwt.h"
#include "logging.h"
#include "redis_client.h"
#include "tls_settings.h"

namespace disco::service {

// A step's value, or the process exit code (the reason is already logged).
template <class T>
using Startup = std::expected<T, int>;

// Parses the flags, then sets up logging at --log-level. Returns the exit
// code when the process should end here (--help printed, or a bad flag,
// whose error CLI11 printed); nullopt to go on.
std::optional<int> ParseFlags(CLI::App& app, int argc, char** argv, const ServiceConfig& config);

// Runs the rest of main(); an exception escaping it is logged (exit code 1).
int GuardMain(const ServiceConfig& config, const std::function<int()>& body);

// A JWT codec holding the configured secret (see LoadJwtSecret), tokens
// valid for --jwt-ttl. `dev_note` says what a random --dev secret means for
// this service; it is logged as a warning when one was generated. `needed_for`
// prefixes the error where the reason for a secret is not obvious.
Startup<std::unique_ptr<JwtCodec>> LoadJwt(const ServiceConfig& config, std::string_view dev_note,
                                           std::string_view needed_for = {});

// --db parsed, with the storage flags.
struct StorageConfig {
  DatabaseUrl url;
  StorageOptions options;
};
Startup<StorageConfig> ConfigureStorage(const ServiceConfig& config);

// Opens the service's repository with `open(url, options)` (a
// Result<std::unique_ptr<Repository>>) and logs where it lives.
template <class Open>
auto OpenStorage(const ServiceConfig& config, Open open) -> Startup<
    typename std::invoke_result_t<Open, const DatabaseUrl&, const StorageOptions&>::value_type> {
  auto storage = ConfigureStorage(config);
  if (!storage) return std::unexpected(storage.error());
  auto repository = open(storage->url, storage->options);
  if (!repository) {
    Log().error("{}: storage {}: {}", config.service, storage->url.Redacted(),
                repository.error().message);
    return std::unexpected(1);
  }
  Log().info("{} storage: {}", config.service, storage->url.Redacted());
  return std::move(*repository);
}

// The --tls-* flags loaded (LoadTlsSettings).
Startup<TlsSettings> LoadTls(const ServiceConfig& config);

// The registry named by --registry.
Startup<std::unique_ptr<Registry>> ConnectRegistry(const ServiceConfig& config);

// The Redis client for --redis, or null when none is given. A malformed URL
// is a flag error (exit 2). An unreachable server is not: Redis is waited for
// up to a second, then the client keeps trying in the background while the
// service runs (what each feature does meanwhile is its own choice).
// `purpose` names what it is for in the log.
Startup<std::unique_ptr<redis::Client>> ConnectRedis(const ServiceConfig& config,
                                                     std::string_view purpose);

}  // namespace disco::service
