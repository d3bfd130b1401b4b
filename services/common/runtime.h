// ServiceRuntime: the life cycle every demo service shares.
//
//   main: disco::BlockStopSignals(); parse flags; SetupLogging; open storage;
//         ServiceRuntime runtime(config, registry); build the router;
//         return runtime.Serve(std::move(router));
//
// Serve(): starts the HTTP server, registers the instance once the listener
// is up (retrying in the background while the registry is unreachable),
// waits for SIGTERM or SIGINT, then shuts down in this order: deregister
// (callers stop picking us), optionally keep serving for --drain-delay-ms,
// stop accepting and finish in-flight requests within --grace-ms, exit 0.
//
// Thread safety: one runtime per process, driven by the main thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "config.h"
#include "tls_settings.h"
#include "disco/http/server.h"
#include "disco/registry.h"

namespace disco::service {

class ServiceRuntime {
 public:
  // `registry` must outlive the runtime. `tls`: the service's (LoadTls):
  // HTTPS when it has a server config, registered with scheme=https; both
  // configs are kept current while serving (TlsReloader).
  ServiceRuntime(ServiceConfig& config, Registry& registry, TlsSettings tls = {});
  ~ServiceRuntime();

  // Returns the process exit code: 0 after a clean shutdown, 1 if the
  // server could not start.
  int Serve(http::Router router);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace disco::service
