// Flags every demo service shares, each with a DISCO_* environment twin
// (--port / DISCO_PORT, --registry / DISCO_REGISTRY, ...), and the JWT secret.
//
// Thread safety: filled once in main() before any thread starts; read-only after.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "disco/error.h"

namespace disco::service {

struct ServiceConfig {
  std::string service;  // "user-service"
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string advertise_address;  // default: host (127.0.0.1 when host is a wildcard)
  std::string db;
  std::string registry = "etcd://127.0.0.1:2379";
  std::string jwt_secret;  // never logged
  std::string jwt_secret_file;
  bool dev = false;
  std::string log_level = "info";
  std::string id;   // default: <service>-<advertise address>-<port>
  int threads = 0;  // I/O threads; 0 = one per core
  int db_connections = 2;
  int jwt_ttl_seconds = 3600;
  int registry_ttl_seconds = 10;
  int grace_ms = 10'000;  // bound on finishing in-flight requests at shutdown
  // Keep serving this long after deregistering, so that callers see the
  // deregistration (registry propagation: milliseconds on a LAN) before the
  // listener closes.
  int drain_delay_ms = 1000;
  std::string sqlite_sync = "normal";
  bool access_log = true;
  bool send_batching = true;  // http::SetSendBatching
  std::size_t body_limit = 1024 * 1024;
  std::size_t body_memory = 256 * 1024 * 1024;
  std::size_t max_connections = 0;              // 0: half the descriptor limit
  std::size_t max_connections_per_address = 0;  // 0: a quarter of max_connections
  // TLS (all empty: plain HTTP). cert + key: serve HTTPS and register
  // scheme=https; also presented to the services this one calls.
  // client_ca: require client certificates from this CA (mutual TLS).
  // ca: call other services over TLS, trusting this CA.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  std::string tls_ca;
  int tls_reload_check_ms = 5000;  // how often the TLS files are checked for change
  // Redis for state shared by replicas (rate limits, token revocations);
  // empty: none. May hold a password: never logged (RedisUrl::Redacted).
  std::string redis;
  int redis_timeout_ms = 5;
};

// Adds the shared flags to `app`, with defaults taken from `config`.
void AddCommonFlags(CLI::App& app, ServiceConfig& config);

// Fills derived defaults (advertise address, id) once the port is known.
void FinishConfig(ServiceConfig& config, std::uint16_t bound_port);

// The JWT secret: --jwt-secret / $DISCO_JWT_SECRET, else the file from --jwt-secret-file
// (trailing newline dropped), else with --dev a random one. Errors
// (kInvalidArgument, message fit for the log, never the secret): none given,
// unreadable file, or shorter than 32 bytes. `generated` tells the caller to
// say so in the log.
Result<std::string> LoadJwtSecret(const ServiceConfig& config, bool* generated);

}  // namespace disco::service
