#include "startup.h"

namespace disco::service {

std::optional<int> ParseFlags(CLI::App& app, int argc, char** argv, const ServiceConfig& config) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  SetupLogging(config.log_level);
  SetLogIdentity(config.service, config.id);
  return std::nullopt;
}

int GuardMain(const ServiceConfig& config, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    Log().error("{}: {}", config.service, e.what());
    return 1;
  }
}

Startup<std::unique_ptr<JwtCodec>> LoadJwt(const ServiceConfig& config, std::string_view dev_note,
                                           std::string_view needed_for) {
  bool generated = false;
  auto secret = LoadJwtSecret(config, &generated);
  if (!secret) {
    Log().error("{}: {}{}", config.service, needed_for, secret.error().message);
    return std::unexpected(2);
  }
  if (generated) Log().warn("--dev: using a random JWT secret; {}", dev_note);
  return std::make_unique<JwtCodec>(std::move(*secret),
                                    std::chrono::seconds(config.jwt_ttl_seconds));
}

Startup<StorageConfig> ConfigureStorage(const ServiceConfig& config) {
  auto url = ParseDatabaseUrl(config.db);
  if (!url) {
    Log().error("{}: {}", config.service, url.error().message);
    return std::unexpected(2);
  }
  StorageOptions options;
  options.connections = static_cast<std::size_t>(config.db_connections);
  options.sqlite_sync = config.sqlite_sync == "normal" ? SqliteSync::kNormal : SqliteSync::kFull;
  return StorageConfig{std::move(*url), options};
}

Startup<TlsSettings> LoadTls(const ServiceConfig& config) {
  auto settings = LoadTlsSettings(config);
  if (!settings) {
    Log().error("{}: {}", config.service, settings.error().message);
    return std::unexpected(2);
  }
  if (settings->server)
    Log().info("{}: serving HTTPS{}", config.service,
               settings->server->mutual() ? ", client certificates required (mutual TLS)" : "");
  if (settings->client)
    Log().info("{}: calling services over TLS{}", config.service,
               settings->client->mutual() ? " with a client certificate" : "");
  return std::move(*settings);
}

Startup<std::unique_ptr<Registry>> ConnectRegistry(const ServiceConfig& config) {
  auto registry = MakeRegistry(config.registry);
  if (!registry) {
    Log().error("{}: --registry: {}", config.service, registry.error().message);
    return std::unexpected(2);
  }
  return std::move(*registry);
}

Startup<std::unique_ptr<redis::Client>> ConnectRedis(const ServiceConfig& config,
                                                     std::string_view purpose) {
  if (config.redis.empty()) return nullptr;
  auto url = redis::ParseRedisUrl(config.redis);
  if (!url) {
    Log().error("{}: {}", config.service, url.error().message);  // never holds the password
    return std::unexpected(2);
  }
  redis::ClientOptions options;
  options.purpose = "redis (" + std::string(purpose) + ")";
  options.url = std::move(*url);
  options.timeout = std::chrono::milliseconds(config.redis_timeout_ms);
  Log().info("{}: {} at {}, {} ms a call", config.service, options.purpose, options.url.Redacted(),
             config.redis_timeout_ms);
  auto client = std::make_unique<redis::Client>(std::move(options));
  client->WaitConnected(std::chrono::seconds(1));
  return client;
}

}  // namespace disco::service
