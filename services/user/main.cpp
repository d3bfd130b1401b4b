// user-service: accounts for the disco demo — register, login (JWT), profile.
#include <CLI/CLI.hpp>
#include <chrono>
#include <thread>

#include "common/password.h"
#include "common/runtime.h"
#include "common/startup.h"
#include "disco/http/admission_queue.h"
#include "disco/http/blocking_pool.h"
#include "disco/http/server.h"
#include "user_handlers.h"
#include "user_repository.h"

int main(int argc, char** argv) {
  using namespace disco;
  BlockStopSignals();

  service::ServiceConfig config;
  config.service = "user-service";
  config.port = 5001;
  config.db = "user-service.db";
  int bcrypt_cost = 12;
  std::size_t cache_entries = 10000;
  std::size_t bcrypt_queue = 0;  // 0: derived from the threads, the wait and one timed bcrypt
  int bcrypt_wait_ms = 2000;
  bool trust_client_address = true;

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
  app.add_option("--bcrypt-queue", bcrypt_queue,
                 "Logins and registrations waiting for bcrypt at most; more are refused with 503 "
                 "and Retry-After (0: as many as the bcrypt threads can start within "
                 "--bcrypt-wait-ms at the measured hash time, which it follows)")
      ->envname("DISCO_BCRYPT_QUEUE")
      ->check(CLI::Range(std::size_t{0}, std::size_t{100'000}))
      ->capture_default_str();
  app.add_option("--bcrypt-wait-ms", bcrypt_wait_ms,
                 "Longest a login or registration waits for bcrypt; one not started by then (or "
                 "by the gateway's X-Request-Timeout-Ms) is dropped unrun with 503")
      ->envname("DISCO_BCRYPT_WAIT_MS")
      ->check(CLI::Range(10, 600'000))
      ->capture_default_str();
  app.add_option("--trust-client-address", trust_client_address,
                 "Share bcrypt fairly among clients named by the gateway's X-Client-Address "
                 "header (false: by peer address; true only where clients come through the "
                 "gateway)")
      ->envname("DISCO_TRUST_CLIENT_ADDRESS")
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
    auto tls = service::LoadTls(config);
    if (!tls) return tls.error();
    auto registry = service::ConnectRegistry(config);
    if (!registry) return registry.error();
    auto redis = service::ConnectRedis(config, "token revocations");
    if (!redis) return redis.error();
    service::TokenRevocations revocations(redis->get());

    http::BlockingPool db_pool(
        {.name = "db", .threads = static_cast<std::size_t>(config.db_connections), .nice = 0});
    // bcrypt is CPU-bound and slow on purpose: niced, so request handling
    // (the I/O threads) always wins the CPU while logins run flat out.
    http::BlockingPool cpu_pool({.name = "bcrypt",
                                 .threads = http::UsableCores(),
                                 .nice = 10});
    // One bcrypt, timed: the hash logins of unknown users are checked
    // against, and what the admission queue's defaults are derived from.
    auto started = std::chrono::steady_clock::now();
    auto dummy_hash = service::HashPassword(service::RandomSecret(), bcrypt_cost);
    if (!dummy_hash) {
      service::Log().error("user-service: bcrypt failed: {}", dummy_hash.error().message);
      return 1;
    }
    auto bcrypt_time = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    const auto wait = std::chrono::milliseconds(bcrypt_wait_ms);
    // bcrypt_queue 0: the queue derives its bound from the run times it
    // measures (more waiting than the threads can start within the wait
    // would only expire: refused at once instead), starting from this one.
    http::AdmissionQueue bcrypt(cpu_pool, {.name = "bcrypt",
                                           .concurrency = cpu_pool.threads(),
                                           .max_queued = bcrypt_queue,
                                           .max_wait = wait,
                                           .expected_run = bcrypt_time});
    service::Log().info(
        "bcrypt: cost {}, {} ms a hash, {} threads, at most {} waiting{} for up to {} ms, fair "
        "shares by {}",
        bcrypt_cost, bcrypt_time.count() / 1000, cpu_pool.threads(), bcrypt.stats().max_queued,
        bcrypt_queue == 0 ? " (for now: follows the measured hash time)" : "", bcrypt_wait_ms,
        trust_client_address ? "X-Client-Address" : "peer address");

    user::UserServiceDeps deps{repository->get(),
                               jwt->get(),
                               &db_pool,
                               &bcrypt,
                               bcrypt_cost,
                               cache_entries,
                               trust_client_address,
                               std::move(*dummy_hash),
                               &revocations};
    service::ServiceRuntime runtime(config, **registry, *tls);
    return runtime.Serve(user::MakeUserRouter(deps));
  });
}
