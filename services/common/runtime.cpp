#include "runtime.h"

#include <signal.h>
#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "disco/stop_signals.h"
#include "logging.h"

namespace disco::service {

struct ServiceRuntime::Impl {
  Impl(ServiceConfig& c, Registry& r, TlsSettings t) : config(c), registry(r), tls(std::move(t)) {}

  // Registers, retrying with a growing pause while the registry is down.
  void RegisterLoop(ServiceInstance instance) {
    RegisterOptions options;
    options.ttl = std::chrono::seconds(config.registry_ttl_seconds);
    auto pause = std::chrono::milliseconds(250);
    while (true) {
      auto made = registry.Register(instance, options);
      std::unique_lock lock(mu);
      if (made) {
        if (stopping) {
          lock.unlock();
          (void)(*made)->Deregister();
          return;
        }
        registration = std::move(*made);
        Log().info("registered {} as {} at {} in {}", instance.service, instance.id,
                   instance.Address(), registry.url());
        return;
      }
      if (made.error().code == ErrorCode::kInvalidArgument) {
        // Not a passing outage: a read-only registry (dns://) or an instance
        // the registry refuses. Retrying would log the same line forever;
        // the service still serves, reachable by whoever publishes it.
        Log().error("{} is not registered in {}: {}", instance.id, registry.url(),
                    made.error().message);
        return;
      }
      Log().warn("registering {} in {} failed, retrying in {} ms: {}", instance.id, registry.url(),
                 pause.count(), made.error().ToString());
      if (cv.wait_for(lock, pause, [&] { return stopping; })) return;
      pause = std::min(pause * 2, std::chrono::milliseconds(5000));
    }
  }

  ServiceConfig& config;
  Registry& registry;
  TlsSettings tls;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::unique_ptr<Registration> registration;
};

ServiceRuntime::ServiceRuntime(ServiceConfig& config, Registry& registry, TlsSettings tls)
    : impl_(std::make_unique<Impl>(config, registry, std::move(tls))) {}

ServiceRuntime::~ServiceRuntime() = default;

namespace {

// The descriptor limit's soft value raised to the hard one, as Go's
// runtime and nginx's worker_rlimit_nofile do: Debian's default soft limit
// (1024) would cap the server at 512 connections (half the limit, see
// --max-connections) while the hard limit allows far more.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) == 0)
    Log().debug("descriptor limit raised from {} to {}", before, limit.rlim_cur);
}

}  // namespace

int ServiceRuntime::Serve(http::Router router) {
  ServiceConfig& config = impl_->config;
  RaiseDescriptorLimit();
  http::ServerOptions options;
  options.host = config.host;
  options.port = config.port;
  options.threads = static_cast<std::size_t>(config.threads);
  options.service = config.service;
  options.access_log = config.access_log;
  const bool batching = http::SetSendBatching(config.send_batching);
  options.body_limit = config.body_limit;
  options.body_memory_limit = config.body_memory;
  options.max_connections = config.max_connections;
  options.max_connections_per_address = config.max_connections_per_address;
  // The default instance id contains the port: with --port 0 it is only known
  // after binding, and /health then shows an empty id (give --id to have one).
  if (config.port != 0) FinishConfig(config, config.port);
  options.instance_id = config.id;
  options.tls = impl_->tls.server;
  http::Server server(std::move(router), options);
  if (auto started = server.Start(); !started) {
    Log().error("{}: {}", config.service, started.error().message);
    return 1;
  }
  config.port = server.port();
  FinishConfig(config, config.port);
  SetLogIdentity(config.service, config.id);
  const std::optional<double> cpu_limit = http::CpuLimitCores();
  Log().info("{} {} listening on {}://{}:{} ({} I/O threads, sends in batches: {}, CPU limit: {})",
             config.service, config.id, options.tls ? "https" : "http", config.host,
             server.port(), server.threads(),
             batching ? "on"
             : config.send_batching ? "off, this kernel refuses io_uring"
                                    : "off",
             cpu_limit ? fmt::format("{:.2f} cores", *cpu_limit) : std::string("none"));

  ServiceInstance instance;
  instance.service = config.service;
  instance.id = config.id;
  instance.host = config.advertise_address;
  instance.port = server.port();
  instance.tags = {"disco"};
  instance.metadata = {{"version", "0.2.0"}};
  if (options.tls) instance.metadata[std::string(kSchemeKey)] = std::string(kSchemeHttps);
  TlsReloader reloader(impl_->tls, std::chrono::milliseconds(config.tls_reload_check_ms));
  std::thread registrar([this, instance] { impl_->RegisterLoop(instance); });

  int signal = WaitForStopSignal();
  Log().info("{}: {} received, shutting down: deregister, then drain", config.id,
             signal == SIGTERM ? "SIGTERM" : "SIGINT");
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  registrar.join();
  if (impl_->registration) {
    if (auto done = impl_->registration->Deregister(); !done) {
      Log().warn("deregistering {} failed (the registry drops it after its TTL): {}", config.id,
                 done.error().ToString());
    } else {
      Log().info("deregistered {}", config.id);
    }
    impl_->registration.reset();
  }
  if (config.drain_delay_ms > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(config.drain_delay_ms));
  bool clean = server.Drain(std::chrono::milliseconds(config.grace_ms));
  Log().info("{} stopped ({})", config.id, clean ? "all requests finished" : "grace period over");
  FlushLogs();
  return 0;
}

}  // namespace disco::service
