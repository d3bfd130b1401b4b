#include "config.h"

#include <fstream>
#include <sstream>

#include "jwt.h"

namespace disco::service {

void AddCommonFlags(CLI::App& app, ServiceConfig& c) {
  app.add_option("--host", c.host, "Address to listen on")
      ->envname("DISCO_HOST")
      ->capture_default_str();
  app.add_option("--port", c.port, "Port to listen on (0: any free port)")
      ->envname("DISCO_PORT")
      ->capture_default_str();
  app.add_option(
         "--advertise-address", c.advertise_address,
         "Address registered for callers (default: --host, or 127.0.0.1 for a wildcard host)")
      ->envname("DISCO_ADVERTISE_ADDRESS");
  app.add_option("--db", c.db,
                 "Database: a SQLite file path, postgresql://user@host:port/db, or "
                 "mysql://user:password@host:port/db[?connect_timeout=S&read_timeout=S&"
                 "write_timeout=S&socket=PATH&password_file=PATH] (MariaDB/MySQL; prefer "
                 "DISCO_DB or password_file: a command line is visible to other users)")
      ->envname("DISCO_DB")
      ->capture_default_str();
  app.add_option(
         "--registry", c.registry,
         "Registry URL: etcd://host:port[,host:port...] (the members of a cluster), "
         "consul://host:port[,host:port...] (agents, the local one first), or memory:// (in this "
         "process only: for trying one service alone); options: README 'Registry URLs'")
      ->envname("DISCO_REGISTRY")
      ->capture_default_str();
  // No captured default, ever: --help must not echo a secret.
  app.add_option("--jwt-secret", c.jwt_secret,
                 "The JWT signing secret itself (at least 32 bytes; wins over --jwt-secret-file); "
                 "prefer the environment variable: a command line is visible to other users")
      ->envname("DISCO_JWT_SECRET");
  app.add_option("--jwt-secret-file", c.jwt_secret_file,
                 "File holding the JWT signing secret (or set DISCO_JWT_SECRET; at least 32 bytes)")
      ->envname("DISCO_JWT_SECRET_FILE");
  app.add_flag("--dev", c.dev, "Development mode: a random JWT secret when none is given")
      ->envname("DISCO_DEV");
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error, critical, off")
      ->envname("DISCO_LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_option("--id", c.id, "Instance id in the registry (default: <service>-<address>-<port>)")
      ->envname("DISCO_ID");
  app.add_option("--threads", c.threads,
                 "I/O threads (0: one per core, or per core of the CPU limit when a cgroup sets "
                 "one)")
      ->envname("DISCO_THREADS")
      ->check(CLI::Range(0, 256))
      ->capture_default_str();
  app.add_option("--db-connections", c.db_connections,
                 "Database connections (and database worker threads)")
      ->envname("DISCO_DB_CONNECTIONS")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--jwt-ttl", c.jwt_ttl_seconds, "Lifetime of issued tokens in seconds")
      ->envname("DISCO_JWT_TTL")
      ->check(CLI::Range(60, 30 * 24 * 3600))
      ->capture_default_str();
  app.add_option("--registry-ttl", c.registry_ttl_seconds,
                 "Registration TTL in seconds (failure-detection bound)")
      ->envname("DISCO_REGISTRY_TTL")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_option("--grace-ms", c.grace_ms,
                 "At shutdown, how long in-flight requests may take to finish")
      ->envname("DISCO_GRACE_MS")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  app.add_option(
         "--drain-delay-ms", c.drain_delay_ms,
         "At shutdown, keep serving this long after deregistering (callers see the change first)")
      ->envname("DISCO_DRAIN_DELAY_MS")
      ->check(CLI::Range(0, 600'000))
      ->capture_default_str();
  app.add_option("--sqlite-sync", c.sqlite_sync,
                 "SQLite synchronous mode: full (commits fsynced: survive power loss) or normal "
                 "(survive kill -9 only)")
      ->envname("DISCO_SQLITE_SYNC")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--access-log", c.access_log, "Write a JSON access-log line per request to stdout")
      ->envname("DISCO_ACCESS_LOG")
      ->capture_default_str();
  app.add_option("--send-batching", c.send_batching,
                 "Hand the answers of one turn of the event loop to the kernel together "
                 "(io_uring; off, or where the kernel refuses io_uring: one send each)")
      ->envname("DISCO_SEND_BATCHING")
      ->capture_default_str();
  app.add_option("--body-limit", c.body_limit,
                 "Largest request body accepted, in bytes (larger: 413)")
      ->envname("DISCO_BODY_LIMIT")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{64} << 20))
      ->capture_default_str();
  app.add_option("--body-memory", c.body_memory,
                 "Request bodies held at once over all connections, in bytes; a request whose "
                 "body does not fit gets 503 (at least --body-limit)")
      ->envname("DISCO_BODY_MEMORY")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 40))
      ->capture_default_str();
  app.add_option("--max-connections", c.max_connections,
                 "Open client connections at most; more are refused with 503 (0: half the "
                 "process's descriptor limit)")
      ->envname("DISCO_MAX_CONNECTIONS")
      ->check(CLI::Range(std::size_t{0}, std::size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--max-connections-per-address", c.max_connections_per_address,
                 "Client connections from one address at most; more are refused with 429 (0: a "
                 "quarter of --max-connections)")
      ->envname("DISCO_MAX_CONNECTIONS_PER_ADDRESS")
      ->check(CLI::Range(std::size_t{0}, std::size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--tls-cert", c.tls_cert,
                 "Serve HTTPS with this PEM certificate (chain); registered as scheme=https and "
                 "presented to the services this one calls (needs --tls-key)")
      ->envname("DISCO_TLS_CERT");
  app.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert")
      ->envname("DISCO_TLS_KEY");
  app.add_option("--tls-client-ca", c.tls_client_ca,
                 "Require client certificates signed by this PEM CA (mutual TLS; needs --tls-cert)")
      ->envname("DISCO_TLS_CLIENT_CA");
  app.add_option("--tls-ca", c.tls_ca,
                 "Call other services over TLS, trusting this PEM CA; their certificates must name "
                 "the service (DNS or spiffe:// URI SAN)")
      ->envname("DISCO_TLS_CA");
  app.add_option("--tls-reload-check-ms", c.tls_reload_check_ms,
                 "How often the TLS files are checked for change (they are re-read then, and on "
                 "SIGHUP; open connections keep their certificate)")
      ->envname("DISCO_TLS_RELOAD_CHECK_MS")
      ->check(CLI::Range(100, 3'600'000))
      ->capture_default_str();
  // No captured default: the URL may hold a password.
  app.add_option("--redis", c.redis,
                 "Redis shared by the replicas, redis://[[user]:password@]host[:port][/db]: "
                 "the gateway's rate limits and token revocations (logout); none: each "
                 "replica limits alone and logout is refused")
      ->envname("DISCO_REDIS");
  app.add_option("--redis-timeout-ms", c.redis_timeout_ms,
                 "Longest wait for one Redis answer; a later one counts as Redis unavailable")
      ->envname("DISCO_REDIS_TIMEOUT_MS")
      ->check(CLI::Range(1, 10'000))
      ->capture_default_str();
}

void FinishConfig(ServiceConfig& c, std::uint16_t bound_port) {
  if (c.advertise_address.empty()) {
    bool wildcard = c.host == "0.0.0.0" || c.host == "::" || c.host.empty();
    c.advertise_address = wildcard ? "127.0.0.1" : c.host;
  }
  if (c.id.empty()) {
    std::string host;
    for (char ch : c.advertise_address) {
      bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
      host += ok ? ch : '-';
    }
    c.id = c.service + "-" + host + "-" + std::to_string(bound_port);
  }
}

Result<std::string> LoadJwtSecret(const ServiceConfig& c, bool* generated) {
  *generated = false;
  std::string secret;
  if (!c.jwt_secret.empty()) {
    secret = c.jwt_secret;
  } else if (!c.jwt_secret_file.empty()) {
    std::ifstream in(c.jwt_secret_file, std::ios::binary);
    if (!in)
      return Fail(ErrorCode::kInvalidArgument,
                  "cannot read --jwt-secret-file " + c.jwt_secret_file);
    std::stringstream ss;
    ss << in.rdbuf();
    secret = ss.str();
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  } else if (c.dev) {
    *generated = true;
    return RandomSecret();
  } else {
    return Fail(
        ErrorCode::kInvalidArgument,
        "no JWT secret: set DISCO_JWT_SECRET or --jwt-secret-file (or --dev for a random one)");
  }
  if (secret.size() < JwtCodec::kMinSecretBytes) {
    return Fail(ErrorCode::kInvalidArgument,
                "the JWT secret is too short (" + std::to_string(secret.size()) +
                    " bytes, need at least " + std::to_string(JwtCodec::kMinSecretBytes) + ")");
  }
  return secret;
}

}  // namespace disco::service
