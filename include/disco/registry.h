// Registry: where services announce themselves and callers find them.
//
// Backends are chosen by URL (see MakeRegistry):
//   etcd://host:port[,host:port...][?prefix=services]   etcd v3 (lease + watch)
//   consul://host:port[,host:port...][?token=...&dc=...] Consul agents (TTL check + blocking query)
//   memory://[name]                                     in-process, for unit tests
//   dns://[server:port,...][?name=...&record=srv|a...]  DNS SRV or A/AAAA, read-only
//                                                       (Kubernetes, Consul DNS)
//
// Thread safety: every method of Registry, Registration and WatchHandle may be
// called from any thread. Callbacks run on a thread owned by the backend, one
// at a time per watch; they must not block for long and must not destroy the
// WatchHandle that delivers them.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/registry_url.h"
#include "disco/service_instance.h"

namespace disco {

class MetricsRegistry;

struct RegisterOptions {
  // Failure-detection bound: an instance that stops refreshing disappears
  // after about this long. etcd raises anything below 2 s to 2 s.
  std::chrono::seconds ttl{10};
  // Consul only: when set, Consul polls this URL (e.g. http://h:p/health)
  // instead of expecting TTL heartbeats from us.
  std::string http_check_url{};
  // Consul only: how long a critical instance stays in the catalog before
  // Consul removes it (Consul clamps anything below 1 min up to 1 min).
  std::chrono::seconds deregister_critical_after{60};
};

enum class RegistrationState {
  kActive,        // registered and refreshed
  kRestoring,     // refresh failing; retrying with backoff, will re-register
  kDeregistered,  // Deregister() ran; nothing is refreshed any more
};

std::string_view RegistrationStateName(RegistrationState state);

// Owns one registration: keeps it alive in the background and restores it by
// itself after lease loss, agent restart or a registry outage. Destroying the
// handle deregisters (bounded by the registry's request timeout).
class Registration {
 public:
  virtual ~Registration() = default;

  // Removes the instance from the registry now and stops refreshing it.
  // Idempotent. Bounded by RegistryOptions::request_timeout.
  virtual Result<void> Deregister() = 0;

  virtual const ServiceInstance& instance() const = 0;
  virtual RegistrationState state() const = 0;
};

// What a watch delivers: always the complete current set of healthy
// instances (never a delta), or an error saying the registry cannot be
// reached right now. After an error the next ok update is a full resync.
struct WatchUpdate {
  bool ok = true;
  std::vector<ServiceInstance> instances{};  // valid when ok; sorted by id
  Error error{};                             // valid when !ok
};

using WatchCallback = std::function<void(const WatchUpdate&)>;

// Stops the watch when destroyed; no callback runs after the destructor returns.
class WatchHandle {
 public:
  virtual ~WatchHandle() = default;
};

class Registry {
 public:
  virtual ~Registry() = default;

  // The URL this registry was made from, without secrets (tokens elided).
  virtual const std::string& url() const = 0;

  // Registers `instance` and returns once the registry has acknowledged it.
  // Errors: kInvalidArgument (bad instance), kUnavailable/kTimeout (registry
  // unreachable), kPermissionDenied.
  virtual Result<std::unique_ptr<Registration>> Register(const ServiceInstance& instance,
                                                          const RegisterOptions& options = {}) = 0;

  // Removes an instance registered by anyone. A running registrant restores
  // its own registration within about TTL/3: stop the process to remove it
  // for good. Removing something that is not there succeeds.
  virtual Result<void> Deregister(std::string_view service, std::string_view id) = 0;

  // Instances of `service`: healthy ones, or with include_unhealthy every one
  // with its health. An unknown service is an empty list.
  virtual Result<std::vector<InstanceStatus>> List(std::string_view service,
                                                   bool include_unhealthy = false) = 0;

  // Names of all services that have at least one instance.
  virtual Result<std::vector<std::string>> Services() = 0;

  // Starts watching `service`. The first callback delivers the current set
  // (possibly empty) or an error; later ones each change. While the registry
  // is unreachable the watch retries with backoff and reports errors; on
  // reconnect (and after etcd compaction) it resyncs fully.
  [[nodiscard]] virtual std::unique_ptr<WatchHandle> Watch(std::string_view service,
                                                           WatchCallback callback) = 0;
};

struct RegistryOptions {
  // Bound on each one-shot request (register, list, deregister).
  std::chrono::milliseconds request_timeout{3000};
  // Where operation counts go (disco_registry_operations_total by backend,
  // operation and result; registrations by state). nullptr:
  // MetricsRegistry::Default(). Must outlive the registry.
  MetricsRegistry* metrics = nullptr;
};

// Builds a registry from its URL. Every backend is wrapped so that its
// operations, watch updates and registrations are counted in the metrics.
// Errors: kInvalidArgument naming what is wrong with the URL. Does not
// contact the registry.
Result<std::unique_ptr<Registry>> MakeRegistry(std::string_view url,
                                               const RegistryOptions& options = {});

// A registry backend of your own, for the URLs of one scheme: once
// registered, MakeRegistry — and so every --registry flag and the disco
// tool — accepts "<name>://...", parsed by ParseRegistryUrl's rules (query
// parameters; host:port[,host:port], or a plain name when `named`), and
// counts its operations in the metrics like the built-in backends.
// tests/unit/extension_points_test.cpp registers one.
using RegistryFactory = std::function<Result<std::unique_ptr<Registry>>(
    const RegistryUrl& url, const RegistryOptions& options)>;

struct RegistryScheme {
  std::string name{};               // the URL's scheme: [a-z][a-z0-9+.-]*, at most 32
  RegistryFactory make{};           // must return a registry or an error, never nullptr
  std::uint16_t default_port = 0;   // for an address given without one; 0: required
  bool named = false;               // "<scheme>://<name>" (as memory://), not addresses
};

// Register at start-up, before parsing registry URLs.
// Errors: kInvalidArgument for a bad or taken name (built-ins cannot be
// replaced) or an empty factory.
Result<void> RegisterRegistryScheme(RegistryScheme scheme);

// The schemes MakeRegistry accepts: etcd, consul, memory, dns, then registered ones.
std::vector<std::string> RegistrySchemeNames();

}  // namespace disco
