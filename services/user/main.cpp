// user-service: accounts for the disco demo — register, login (JWT), profile.
#include <CLI/CLI.hpp>
#include <thread>

#include "common/password.h"
#include "common/runtime.h"
#include "common/startup.h"
#include "disco/http/blocking_pool.h"
#include "user_handlers.h"
#include "user_repository.h"

int main(int argc, char** argv) {
  using namespace disco;
  BlockStopSignals();

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
  if (auto exit = service::ParseFlags(app, argc, argv, config)) return *exit;

  return service::GuardMain(config, [&] {
    auto jwt = service::LoadJwt(config, "tokens are valid only for this instance until it stops");
    if (!jwt) return jwt.error();
    auto repository = service::OpenStorage(config, user::OpenUserRepository);
    if (!repository) return repository.error();
    auto registry = service::ConnectRegistry(config);
    if (!registry) return registry.error();

    http::BlockingPool db_pool(
        {.name = "db", .threads = static_cast<std::size_t>(config.db_connections), .nice = 0});
    // bcrypt is CPU-bound and slow on purpose: niced, so request handling
    // (the I/O threads) always wins the CPU while logins run flat out.
    http::BlockingPool cpu_pool({.name = "bcrypt",
                                 .threads = std::max(1u, std::thread::hardware_concurrency()),
                                 .nice = 10});

    user::UserServiceDeps deps{repository->get(), jwt->get(), &db_pool,
                               &cpu_pool,         bcrypt_cost, cache_entries};
    service::ServiceRuntime runtime(config, **registry);
    return runtime.Serve(user::MakeUserRouter(deps));
  });
}
