#include "chaos/chaos_stack.h"

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "common/database.h"
#include "common/mysql.h"
#include "disco/detail/asio.h"
#include "disco/tls.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;

// The sum of the samples of metric `name` whose labels include every one of
// `labels` (each written `key="value"`). `found` tells whether any matched.
double Sample(const std::string& text, std::string_view name,
              const std::vector<std::string>& labels, bool* found = nullptr) {
  double sum = 0;
  bool any = false;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (!line.starts_with(name)) continue;
    if (line.size() <= name.size() || (line[name.size()] != '{' && line[name.size()] != ' '))
      continue;
    auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    std::string_view series(line.data(), space);
    bool match = true;
    for (const auto& label : labels) {
      if (series.find(label) == std::string_view::npos) {
        match = false;
        break;
      }
    }
    if (!match) continue;
    any = true;
    sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  if (found) *found = any;
  return sum;
}

std::string Label(const std::string& key, const std::string& value) {
  return key + "=\"" + value + "\"";
}

bool InSnapshot(const Resolver& resolver, const std::string& id, bool usable) {
  auto snapshot = resolver.snapshot();
  for (const auto& endpoint : snapshot->endpoints) {
    if (endpoint.instance.id == id) return !usable || !endpoint.ejected();
  }
  return false;
}

std::string RandomHex() {
  std::random_device device;
  std::ostringstream out;
  out << std::hex << device() << device();
  return out.str();
}

std::string Tail(const std::string& text, std::size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

}  // namespace

std::string Ms(std::optional<std::chrono::milliseconds> value) {
  return value ? std::to_string(value->count()) : "-";
}

std::string Ms(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", value);
  return buf;
}

ChaosStack::ChaosStack(ChaosOptions options) : options_(std::move(options)) {
  if (options_.db == "mysql") {
    mariadb_ = std::make_unique<MariadbServer>();
    for (const char* name : {"user", "order"})
      databases_[name] = mariadb_->CreateDatabase(std::string("chaos_") + name + "s");
  } else if (options_.db == "sqlite") {
    // One file per service, shared by its instances.
    for (const char* name : {"user", "order"})
      databases_[name] = dir_.Sub(name + std::string("s.db"));
  } else {
    throw std::invalid_argument("ChaosOptions::db: sqlite or mysql, not '" + options_.db + "'");
  }
  backend_ = MakeRegistryBackend(options_.tls ? options_.backend + "-tls" : options_.backend);
  backend_->Start();
  auto registry = MakeRegistry(backend_->url());
  if (!registry) throw std::runtime_error(registry.error().ToString());
  registry_ = std::move(*registry);
  if (options_.tls) {
    ca_ = std::make_unique<TestCa>(dir_.path(), "chaos");
    auto mine = ca_->Issue("chaos-client", {.dns = {"chaos-client"}});
    auto client_tls = tls::Config::Load(
        tls::Role::kClient,
        {.cert_file = mine.cert_file, .key_file = mine.key_file, .ca_file = ca_->ca_file()});
    if (!client_tls) throw std::runtime_error(client_tls.error().ToString());
    client_tls_ = *client_tls;
    http::ClientOptions caller;
    caller.tls = client_tls_;
    caller.max_attempts = 1;
    caller.per_try_timeout = 1s;
    // Each call runs on an io_context of its own (Call()): nothing to pool.
    caller.max_idle_per_endpoint = 0;
    caller_ = std::make_unique<http::Client>(*registry_, caller);
  }
  for (int i = 0; i < 2; ++i) users_.push_back(std::make_unique<ServiceProcess>(UserOptions(i)));
  for (int i = 0; i < 2; ++i) orders_.push_back(std::make_unique<ServiceProcess>(OrderOptions(i)));
  last_.resize(orders_.size());

  auto user_watch = Resolver::Make(*registry_, "user-service");
  auto order_watch = Resolver::Make(*registry_, "order-service");
  if (!user_watch || !order_watch) throw std::runtime_error("cannot make the test's resolvers");
  user_watch_ = std::move(*user_watch);
  order_watch_ = std::move(*order_watch);
  for (auto& user : users_) {
    if (!WaitEverywhere("user-service", user->id(), true, 20s))
      throw std::runtime_error("user-service " + user->id() + " never reached every resolver\n" +
                               Logs());
  }
  for (auto& order : orders_) {
    if (!WaitEverywhere("order-service", order->id(), true, 20s))
      throw std::runtime_error("order-service " + order->id() + " never reached the resolvers\n" +
                               Logs());
  }

  for (int i = 0; i < options_.users; ++i) {
    const std::string name = "chaos" + std::to_string(i);
    const nlohmann::json account = {
        {"username", name}, {"password", "password123"}, {"email", name + "@example.com"}};
    auto registered = Call(users_[0]->port(), "POST", "/api/users/register", account);
    if (registered.status != 201) throw std::runtime_error("register: " + registered.body);
    auto login = Call(users_[0]->port(), "POST", "/api/users/login",
                      {{"username", name}, {"password", "password123"}});
    if (login.status != 200) throw std::runtime_error("login: " + login.body);
    tokens_.push_back(login.Json().value("token", std::string()));
  }

  key_prefix_ = "chaos-" + options_.backend + "-" + RandomHex();
  LoadOptions load;
  load.registry = backend_->url();
  load.rate = options_.rate;
  load.tokens = tokens_;
  load.key_prefix = key_prefix_;
  load.per_try_timeout = options_.load_per_try_timeout;
  load.tls = client_tls_;
  load_ = std::make_unique<LoadGenerator>(load);
  for (auto& order : orders_) {
    if (!WaitEverywhere("order-service", order->id(), true, 20s))
      throw std::runtime_error("the load generator does not see " + order->id());
  }
}

ChaosStack::~ChaosStack() { StopLoad(); }

ServiceOptions ChaosStack::Options(std::string binary, const std::string& name, int i,
                                   std::vector<std::string> args) {
  ServiceOptions o;
  o.binary = std::move(binary);
  o.registry = backend_->url();
  o.db = databases_.at(name);  // one database per service, shared by its instances
  o.log_path = dir_.Sub(name + "-" + std::to_string(i) + ".log");
  o.args = std::move(args);
  o.args.insert(o.args.end(), {"--access-log", "false"});
  if (ca_) {
    // A certificate naming the service (callers check that identity); client
    // certificates required; the CA to call the other services with.
    const std::string service = name + "-service";
    auto issued = ca_->Issue(service + "-" + std::to_string(i), {.dns = {service}});
    o.args.insert(o.args.end(),
                  {"--tls-cert", issued.cert_file, "--tls-key", issued.key_file,
                   "--tls-client-ca", ca_->ca_file(), "--tls-ca", ca_->ca_file()});
    o.tls = true;
  }
  return o;
}

ServiceOptions ChaosStack::UserOptions(int i) {
  return Options(UserServicePath(), "user", i, {"--bcrypt-cost", "4"});
}

ServiceOptions ChaosStack::OrderOptions(int i) {
  return Options(OrderServicePath(), "order", i,
                 {"--call-timeout-ms", std::to_string(options_.call_timeout.count())});
}

void ChaosStack::StartLoad() { load_->Start(); }

void ChaosStack::StopLoad() {
  if (load_) load_->Stop();
}

HttpResponse ChaosStack::Call(std::uint16_t port, const std::string& method,
                              const std::string& target, const nlohmann::json& body) {
  if (!caller_) {
    if (body.is_null()) return HttpRequest(port, method, target, {}, {}, 1s);
    return JsonRequest(port, method, target, body);
  }
  http::ClientRequest request;
  request.method = method;
  request.url = "https://127.0.0.1:" + std::to_string(port) + target;
  if (!body.is_null()) {
    request.body = body.dump();
    request.content_type = "application/json";
  }
  boost::asio::io_context ioc;
  auto future =
      boost::asio::co_spawn(ioc, caller_->Send(std::move(request)), boost::asio::use_future);
  ioc.run();
  auto answer = future.get();
  HttpResponse response;
  if (answer) {
    response.status = answer->status;
    response.body = std::move(answer->body);
  }
  return response;
}

std::string ChaosStack::Metrics(std::uint16_t port) {
  auto response = Call(port, "GET", "/metrics");
  return response.status == 200 ? response.body : std::string();
}

bool ChaosStack::Everywhere(const std::string& service, const std::string& id, bool present,
                            bool usable, const std::set<pid_t>& skip) {
  // The test's own resolvers are the registry's view, not callers: they say
  // nothing about ejections, so "not usable anywhere" does not ask them.
  Resolver& own = service == "user-service" ? *user_watch_ : *order_watch_;
  if ((present || !usable) && InSnapshot(own, id, false) != present) return false;
  if (service == "order-service") {
    return !load_ || InSnapshot(load_->resolver(), id, usable) == present;
  }
  for (auto& order : orders_) {
    if (!order->running() || skip.contains(order->pid())) continue;
    std::string text = Metrics(order->port());
    if (text.empty()) return false;  // cannot tell: not yet
    bool found = false;
    double ejected = Sample(text, "disco_endpoint_ejected",
                            {Label("service", service), Label("instance", id)}, &found);
    bool here = found && (!usable || ejected == 0);
    if (here != present) return false;
  }
  return true;
}

std::optional<std::chrono::milliseconds> ChaosStack::WaitEverywhere(
    const std::string& service, const std::string& id, bool present,
    std::chrono::milliseconds timeout, bool usable, const std::set<pid_t>& skip) {
  const auto start = Clock::now();
  if (WaitFor([&] { return Everywhere(service, id, present, usable, skip); }, timeout, 20ms)) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }
  return std::nullopt;
}

bool ChaosStack::ResolversFresh(bool fresh) {
  auto ok = [fresh](double staleness) { return fresh ? staleness == 0 : staleness > 0; };
  for (auto& order : orders_) {
    if (!order->running()) continue;
    std::string text = Metrics(order->port());
    bool found = false;
    double staleness = Sample(text, "disco_resolver_staleness_seconds",
                              {Label("service", "user-service")}, &found);
    if (!found || !ok(staleness)) return false;
  }
  if (load_ && !ok(static_cast<double>(load_->resolver().Staleness().count()))) return false;
  return ok(static_cast<double>(user_watch_->Staleness().count())) &&
         ok(static_cast<double>(order_watch_->Staleness().count()));
}

double ChaosStack::MinStaleness() {
  double least = -1;
  for (auto& order : orders_) {
    bool found = false;
    double staleness = Sample(Metrics(order->port()), "disco_resolver_staleness_seconds",
                              {Label("service", "user-service")}, &found);
    if (found && (least < 0 || staleness < least)) least = staleness;
  }
  return least;
}

bool ChaosStack::RegisteredAndActive(ServiceProcess& process, const std::string& service) {
  std::string text = Metrics(process.port());
  bool found = false;
  Sample(text, "disco_registrations", {Label("id", process.id()), Label("state", "active")},
         &found);
  if (!found) return false;
  auto listed = registry_->List(service);
  if (!listed) return false;
  for (const auto& status : *listed) {
    if (status.instance.id == process.id()) return true;
  }
  return false;
}

DownstreamCounters ChaosStack::Downstream() {
  const std::vector<std::string> user = {Label("service", "user-service")};
  for (std::size_t i = 0; i < orders_.size(); ++i) {
    if (!orders_[i]->running()) continue;
    std::string text = Metrics(orders_[i]->port());
    if (text.empty()) continue;  // stopped (SIGSTOP) or restarting: keep the last reading
    DownstreamCounters c;
    c.retries = Sample(text, "http_client_retries_total", user);
    c.ejections = Sample(text, "disco_outlier_ejections_total", user);
    c.timeouts = Sample(text, "http_client_attempts_total",
                        {Label("service", "user-service"), Label("outcome", "timeout")});
    c.exhausted = Sample(text, "http_client_retry_budget_exhausted_total", user);
    last_[i] = c;
  }
  DownstreamCounters total = folded_;
  for (const auto& c : last_) {
    total.retries += c.retries;
    total.ejections += c.ejections;
    total.timeouts += c.timeouts;
    total.exhausted += c.exhausted;
  }
  return total;
}

void ChaosStack::Fold(std::size_t order_index) {
  auto& c = last_[order_index];
  folded_.retries += c.retries;
  folded_.ejections += c.ejections;
  folded_.timeouts += c.timeouts;
  folded_.exhausted += c.exhausted;
  c = {};
}

std::vector<std::string> ChaosStack::OrderKeysInDatabase() {
  if (mariadb_) {
    auto url = service::ParseMysqlUrl(databases_.at("order"));
    if (!url) throw std::runtime_error(url.error().ToString());
    auto conn = service::MysqlConnection::Open(*url, {});
    if (!conn) throw std::runtime_error(conn.error().ToString());
    auto select = (*conn)->Prepare(
        "SELECT idempotency_key FROM orders WHERE idempotency_key LIKE ? ORDER BY idempotency_key");
    select.Bind(1, key_prefix_ + "-%");
    select.Execute();
    std::vector<std::string> keys;
    while (select.Next()) keys.push_back(select.Text(0));
    return keys;
  }
  auto conn =
      service::SqliteConnection::Open(dir_.Sub("orders.db"), service::SqliteSync::kNormal, "");
  if (!conn) throw std::runtime_error(conn.error().ToString());
  auto select = (*conn)->Prepare(
      "SELECT idempotency_key FROM orders WHERE idempotency_key LIKE ?1 ORDER BY idempotency_key");
  select.Bind(1, key_prefix_ + "-%");
  std::vector<std::string> keys;
  while (select.Step()) keys.push_back(select.Text(0));
  return keys;
}

bool ChaosStack::StopOutsideWrites(ServiceProcess& process, const std::string& service) {
  if (mariadb_) return process.Signal(SIGSTOP);
  auto conn = service::SqliteConnection::Open(dir_.Sub(service + "s.db"),
                                              service::SqliteSync::kNormal, "");
  if (!conn) throw std::runtime_error(conn.error().ToString());
  (*conn)->Exec("BEGIN IMMEDIATE");
  const bool stopped = process.Signal(SIGSTOP);
  (*conn)->Exec("ROLLBACK");
  return stopped;
}

void ChaosStack::Report(const std::string& scenario, const Fields& fields) {
  std::string line = "CHAOS scenario=" + scenario + " backend=" + options_.backend;
  if (options_.db != "sqlite") line += " db=" + options_.db;
  if (options_.tls) line += " tls=mtls";
  for (const auto& [key, value] : fields) line += " " + key + "=" + value;
  std::cout << line << std::endl;
  std::error_code ec;
  const std::string dir = DISCO_TEST_ARTIFACTS_DIR;
  std::filesystem::create_directories(dir, ec);
  std::ofstream(dir + "/chaos.txt", std::ios::app) << line << "\n";
}

std::string ChaosStack::Logs() {
  std::string out;
  for (auto* group : {&users_, &orders_}) {
    for (auto& process : *group) {
      out += "--- " + process->id() + " ---\n" + Tail(process->ReadLog(), 3000) + "\n";
    }
  }
  return out;
}

}  // namespace disco::testing
