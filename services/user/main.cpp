// user-service: accounts for the disco demo — register, login (JWT), profile.
#include <CLI/CLI.hpp>
#include <thread>

#include "common/config.h"
#include "common/jwt.h"
#include "common/logging.h"
#include "common/password.h"
#include "common/runtime.h"
#include "disco/http/blocking_pool.h"
#include "disco/registry.h"
#include "user_handlers.h"
#include "user_repository.h"

int main(int argc, char** argv) {
  using namespace disco;
  service::BlockStopSignals();

  service::ServiceConfig config;
  config.service = "user-service";
  config.port = 5001;
  config.db = "user-service.db";
  if (const char* env = std::getenv("DISCO_REGISTRY"); env && *env) config.registry = env;
  int bcrypt_cost = 12;
  std::size_t cache_entries = 10000;

  CLI::App app{"user-service: accounts for the disco demo (register, login with JWT, profile)",
               "user-service"};
  service::AddCommonFlags(app, config);
  app.add_option("--bcrypt-cost", bcrypt_cost, "bcrypt cost factor for new password hashes")
      ->envname("DISCO_BCRYPT_COST")
      ->check(CLI::Range(service::kMinBcryptCost, service::kMaxBcryptCost))
      ->capture_default_str();
  app.add_option("--user-cache", cache_entries,
                 "Users kept in memory by id (accounts never change once created); 0: none")
      ->envname("DISCO_USER_CACHE")
      ->capture_default_str();
  app.footer(
      "Environment: every flag has a DISCO_* twin (DISCO_PORT, DISCO_REGISTRY, ...);\n"
      "DISCO_JWT_SECRET holds the JWT secret (or use --jwt-secret-file).\n"
      "Example: DISCO_JWT_SECRET=... user-service --registry etcd://127.0.0.1:2379 --db users.db");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  service::SetupLogging(config.log_level);
  auto& log = service::Log();
  try {
    bool generated = false;
    auto secret = service::LoadJwtSecret(config, &generated);
    if (!secret) {
      log.error("user-service: {}", secret.error().message);
      return 2;
    }
    if (generated) {
      log.warn(
          "--dev: using a random JWT secret; tokens are valid only for this instance until it "
          "stops");
    }
    service::JwtCodec jwt(std::move(*secret), std::chrono::seconds(config.jwt_ttl_seconds));

    auto db_url = service::ParseDatabaseUrl(config.db);
    if (!db_url) {
      log.error("user-service: {}", db_url.error().message);
      return 2;
    }
    service::StorageOptions storage;
    storage.connections = static_cast<std::size_t>(config.db_connections);
    storage.sqlite_sync =
        config.sqlite_sync == "normal" ? service::SqliteSync::kNormal : service::SqliteSync::kFull;
    auto repository = user::OpenUserRepository(*db_url, storage);
    if (!repository) {
      log.error("user-service: storage {}: {}", db_url->Redacted(), repository.error().message);
      return 1;
    }
    log.info("user-service storage: {}", db_url->Redacted());

    auto registry = MakeRegistry(config.registry);
    if (!registry) {
      log.error("user-service: --registry: {}", registry.error().message);
      return 2;
    }

    http::BlockingPool db_pool(
        {.name = "db", .threads = static_cast<std::size_t>(config.db_connections), .nice = 0});
    // bcrypt is CPU-bound and slow on purpose: niced, so request handling
    // (the I/O threads) always wins the CPU while logins run flat out.
    http::BlockingPool cpu_pool({.name = "bcrypt",
                                 .threads = std::max(1u, std::thread::hardware_concurrency()),
                                 .nice = 10});

    user::UserServiceDeps deps{repository->get(), &jwt,        &db_pool,
                               &cpu_pool,         bcrypt_cost, cache_entries};
    service::ServiceRuntime runtime(config, **registry);
    return runtime.Serve(user::MakeUserRouter(deps));
  } catch (const std::exception& e) {
    log.error("user-service: {}", e.what());
    return 1;
  }
}
