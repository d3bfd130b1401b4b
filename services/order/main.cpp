// order-service: orders for the disco demo; confirms users through discovery.
#include <CLI/CLI.hpp>

#include "common/runtime.h"
#include "common/startup.h"
#include "disco/balancer.h"
#include "disco/http/blocking_pool.h"
#include "disco/http/client.h"
#include "order_handlers.h"
#include "order_repository.h"

int main(int argc, char** argv) {
  using namespace disco;
  BlockStopSignals();

  service::ServiceConfig config;
  config.service = "order-service";
  config.port = 5002;
  config.db = "order-service.db";
  std::string user_service = "user-service";
  int call_timeout_ms = 2000;
  std::string policy = "round_robin";

  CLI::App app{"order-service: orders for the disco demo; confirms users through discovery",
               "order-service"};
  service::AddCommonFlags(app, config);
  app.add_option("--user-service", user_service, "Name of user-service in the registry")
      ->envname("DISCO_USER_SERVICE")
      ->capture_default_str();
  app.add_option("--call-timeout-ms", call_timeout_ms, "Per-try timeout of calls to user-service")
      ->envname("DISCO_CALL_TIMEOUT_MS")
      ->check(CLI::Range(50, 60'000))
      ->capture_default_str();
  app.add_option("--policy", policy, "Balancer policy for calls to user-service")
      ->envname("DISCO_POLICY")
      ->capture_default_str();
  app.footer(
      "Environment: every flag has a DISCO_* twin (DISCO_PORT, DISCO_REGISTRY, ...);\n"
      "DISCO_JWT_SECRET holds the JWT secret (the same as user-service's).\n"
      "Example: DISCO_JWT_SECRET=... order-service --registry etcd://127.0.0.1:2379 --db "
      "orders.db");
  if (auto exit = service::ParseFlags(app, argc, argv, config)) return *exit;

  return service::GuardMain(config, [&] {
    auto& log = service::Log();
    auto jwt = service::LoadJwt(config, "tokens from user-service will not verify here");
    if (!jwt) return jwt.error();
    auto repository = service::OpenStorage(config, order::OpenOrderRepository);
    if (!repository) return repository.error();
    auto tls = service::LoadTls(config);
    if (!tls) return tls.error();
    auto registry = service::ConnectRegistry(config);
    if (!registry) return registry.error();
    auto redis = service::ConnectRedis(config, "token revocations");
    if (!redis) return redis.error();
    service::TokenRevocations revocations(redis->get());
    if (!MakeBalancer(policy)) {
      log.error("order-service: --policy: {}", MakeBalancer(policy).error().message);
      return 2;
    }

    http::ClientOptions client_options;
    client_options.policy = policy;
    client_options.per_try_timeout = std::chrono::milliseconds(call_timeout_ms);
    client_options.tls = tls->client;
    http::Client client(**registry, client_options);
    if (auto ok = client.Prepare(user_service, std::chrono::seconds(2)); !ok) {
      log.error("order-service: --user-service: {}", ok.error().message);
      return 2;
    }
    http::BlockingPool db_pool(
        {.name = "db", .threads = static_cast<std::size_t>(config.db_connections), .nice = 0});

    order::OrderServiceDeps deps{repository->get(), jwt->get(),   &db_pool,
                                 &client,           user_service, &revocations};
    service::ServiceRuntime runtime(config, **registry, *tls);
    return runtime.Serve(order::MakeOrderRouter(deps));
  });
}
