// ChaosStack: the demo system under a steady load, for the chaos tests.
//
// A real registry (etcd or Consul, by name), two user-service and two
// order-service processes (the real binaries; the instances of a service
// share one SQLite file, or one MariaDB database), users with tokens, and a
// LoadGenerator calling order-service through discovery with the library's
// client. order-service confirms every order with user-service through
// discovery, so the load goes client → order-service → user-service. With
// ChaosOptions::tls every one of those hops, and the registry, is mutual TLS.
//
// It can tell whether an instance is in every resolver that watches its
// service: the test's own resolvers, the load generator's (order-service),
// and each order-service's (user-service, read from its /metrics). And it
// reads the services' counters (retries, ejections, timeouts, registration
// state) from their /metrics.
//
// Thread safety: one test thread drives it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "disco/http/client.h"
#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/http_client.h"
#include "fixture/load_generator.h"
#include "fixture/mariadb_server.h"
#include "fixture/registry_backend.h"
#include "fixture/service_process.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"

namespace disco::testing {

// Under the sanitizers (a Debug build, every memory access checked) the
// services run several times slower: the load is lighter and the timeouts
// longer, so that those runs look for memory and UB errors in the failure
// paths instead of measuring a machine that is out of CPU.
#ifdef DISCO_CHAOS_SLOW_BUILD
inline constexpr int kChaosSlowdown = 3;
#else
inline constexpr int kChaosSlowdown = 1;
#endif

struct ChaosOptions {
  std::string backend;  // "etcd" or "consul"
  // order-service's per-try timeout of its calls to user-service.
  std::chrono::milliseconds call_timeout{300 * kChaosSlowdown};
  // The load generator's per-try timeout of its calls to order-service:
  // above order-service's own worst case (a timed-out try and a retry).
  std::chrono::milliseconds load_per_try_timeout{800 * kChaosSlowdown};
  // Requests per second; 4 in 5 are creates (→ user-service).
  double rate = 300.0 / kChaosSlowdown;
  int users = 8;
  // The services' storage: "sqlite" (a file per service) or "mysql" (a
  // MariaDB server of the stack's own, a database per service).
  std::string db = "sqlite";
  // Mutual TLS on every hop: the registry (backend "<backend>-tls"), the
  // services (HTTPS requiring client certificates, calling each other over
  // TLS), the load generator and the stack's own calls (a client certificate).
  bool tls = false;
};

// Counters summed over the order-service processes (every incarnation).
struct DownstreamCounters {
  double retries = 0;    // order-service → user-service retries
  double ejections = 0;  // user-service endpoints ejected by order-services
  double timeouts = 0;   // attempts to user-service that timed out
  double exhausted = 0;  // retries refused by the budget
};

class ChaosStack {
 public:
  using Clock = std::chrono::steady_clock;

  // Starts the registry, the four services, makes users, and the resolvers;
  // throws std::runtime_error if something does not come up.
  explicit ChaosStack(ChaosOptions options);
  ~ChaosStack();

  RegistryBackend& backend() { return *backend_; }
  const ChaosOptions& options() const { return options_; }
  std::vector<std::unique_ptr<ServiceProcess>>& users() { return users_; }
  std::vector<std::unique_ptr<ServiceProcess>>& orders() { return orders_; }
  LoadGenerator& load() { return *load_; }
  const std::string& key_prefix() const { return key_prefix_; }

  void StartLoad();
  void StopLoad();

  // Whether instance `id` of `service` is in every resolver watching that
  // service (present = true) or in none (present = false). Processes in
  // `skip` (stopped with SIGSTOP) are not asked. With `usable`, an instance
  // counts as present only where it is not ejected.
  bool Everywhere(const std::string& service, const std::string& id, bool present,
                  bool usable = false, const std::set<pid_t>& skip = {});
  // Polls Everywhere() every 20 ms; returns the time it took, or nullopt
  // after `timeout`.
  std::optional<std::chrono::milliseconds> WaitEverywhere(const std::string& service,
                                                          const std::string& id, bool present,
                                                          std::chrono::milliseconds timeout,
                                                          bool usable = false,
                                                          const std::set<pid_t>& skip = {});

  // Whether every order-service's and the load generator's view of its
  // upstream is fresh (staleness 0: connected to the registry), or every one
  // stale (> 0).
  bool ResolversFresh(bool fresh);
  // The smallest staleness (s) the order-services report for user-service.
  double MinStaleness();

  // Whether the process behind `process` reports its registration active
  // and the registry lists it.
  bool RegisteredAndActive(ServiceProcess& process, const std::string& service);

  // order-service counters; remembers each process's last reading. Before
  // order-service i is restarted: Downstream() while it runs, then Fold(i)
  // once it has exited, so its counts are kept.
  DownstreamCounters Downstream();
  void Fold(std::size_t order_index);

  // The Idempotency-Keys of the rows in the orders table made by this run's
  // load (by key prefix): one per row, sorted. SQLite or MariaDB.
  std::vector<std::string> OrderKeysInDatabase();

  // SIGSTOPs `process`, an instance of `service` ("user" or "order"), at a
  // moment it holds no write lock on the SQLite file its service's instances
  // share: takes that lock first (BEGIN IMMEDIATE waits out a writer), stops
  // the process, lets the lock go. Stopped inside a write transaction, it
  // would lock the other instances out of the database for the whole stop:
  // a stalled database, not the hung instance the scenario is about. (On
  // MariaDB, row locks: it is only stopped.)
  bool StopOutsideWrites(ServiceProcess& process, const std::string& service);

  // One line a person can quote, on stdout and appended to
  // <build>/test-artifacts/chaos.txt:
  //   CHAOS scenario=... backend=... requests=... failed=... ...
  using Fields = std::vector<std::pair<std::string, std::string>>;
  void Report(const std::string& scenario, const Fields& fields);

  std::string Logs();  // the services' logs, for a failure message

 private:
  // Instance i of a service ("user", "order") with `args` added.
  ServiceOptions Options(std::string binary, const std::string& name, int i,
                         std::vector<std::string> args);
  ServiceOptions UserOptions(int i);
  ServiceOptions OrderOptions(int i);
  // One request to a service instance: plain HTTP, or HTTPS with the stack's
  // client certificate. Status 0 when there is no answer.
  HttpResponse Call(std::uint16_t port, const std::string& method, const std::string& target,
                    const nlohmann::json& body = {});
  std::string Metrics(std::uint16_t port);

  ChaosOptions options_;
  TempDir dir_{"disco-chaos"};
  std::unique_ptr<MariadbServer> mariadb_;        // db == "mysql"
  std::map<std::string, std::string> databases_;  // "user"/"order" → --db
  std::unique_ptr<TestCa> ca_;                    // tls: the services' CA
  std::shared_ptr<tls::Config> client_tls_;       // tls: the load's and the stack's
  std::unique_ptr<RegistryBackend> backend_;
  std::unique_ptr<Registry> registry_;  // the test's own registry client
  std::unique_ptr<http::Client> caller_;  // tls: the stack's own calls (after registry_)
  std::unique_ptr<Resolver> user_watch_;
  std::unique_ptr<Resolver> order_watch_;
  std::vector<std::unique_ptr<ServiceProcess>> users_;
  std::vector<std::unique_ptr<ServiceProcess>> orders_;
  std::vector<std::string> tokens_;
  std::string key_prefix_;
  std::unique_ptr<LoadGenerator> load_;
  std::vector<DownstreamCounters> last_;  // per order-service, current incarnation
  DownstreamCounters folded_;             // earlier incarnations
};

// Milliseconds as a string for Report(); "-" when not measured.
std::string Ms(std::optional<std::chrono::milliseconds> value);
std::string Ms(double value);

}  // namespace disco::testing
