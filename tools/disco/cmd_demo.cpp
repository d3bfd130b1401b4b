// disco demo: the demo's client. Registers a user, logs in, creates orders,
// lists and fetches them — through the gateway (--gateway URL) or straight to
// the services found in the registry — and prints which instance served each
// call (the X-Served-By header every disco server sends), so load balancing
// and failover are visible. --loop / --duration keep calling afterwards.

#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "common.h"
#include "demo_transcript.h"
#include "disco/detail/asio.h"
#include "disco/http/client.h"
#include "disco/stop_signals.h"
#include "disco/tls.h"

namespace disco::cli {
namespace {

namespace asio = boost::asio;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kUsers = "user-service";
constexpr std::string_view kOrders = "order-service";

struct Args {
  std::string gateway;  // http(s)://host:port; empty: discover the services in the registry
  // TLS: the CA that the gateway's (or the instances') certificates chain to,
  // and the certificate presented to servers that ask for one (mutual TLS).
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string user;     // empty: demo-<time>-<random>
  std::string password = "demo-password-1";
  int orders = 3;
  int loop = 0;
  double duration_s = 0;
  int interval_ms = 50;
  int call_timeout_ms = 5000;
  bool json = false;
  std::string json_file;
};

// One call of the demo and the status that counts as success.
struct Call {
  std::string step;
  std::string method;
  std::string path;
  std::string_view service;
  std::string body{};             // JSON; empty: no body
  std::string idempotency_key{};  // sent as Idempotency-Key (makes a POST retry-safe)
  int expect = 200;
};

// The answer of a call: the transcript record and the parsed JSON body.
struct Answer {
  StepRecord record;
  json body;
};

struct Product {
  const char* name;
  int quantity;
  const char* price;
};
constexpr Product kProducts[] = {{"keyboard", 1, "49.90"},
                                 {"mouse", 2, "19.99"},
                                 {"monitor", 1, "189.00"},
                                 {"usb-cable", 3, "4.50"},
                                 {"headset", 1, "79.00"}};

// SIGINT or SIGTERM arrived (main() blocked both in every thread, so they
// wait here to be taken). Latches.
bool StopRequested() {
  static bool stopped = false;
  if (!stopped && TakeStopSignal() != 0) stopped = true;
  return stopped;
}

std::string DefaultUser() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "demo-%04d%02d%02d-%02d%02d%02d-%04x", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<unsigned>(std::random_device{}() & 0xffff));
  return buf;
}

// "http[s]://host:port[/]" → "http[s]://host:port"; a missing port means 80
// or 443 (the client treats a host without a port as a service name).
Result<std::string> NormalizeGateway(std::string url) {
  const bool tls = url.starts_with("https://");
  const std::size_t scheme = tls ? 8 : 7;
  if (!tls && !url.starts_with("http://"))
    return Fail(ErrorCode::kInvalidArgument, "--gateway must be an http(s)://host:port URL");
  while (url.ends_with('/')) url.pop_back();
  std::string_view authority = std::string_view(url).substr(scheme);
  if (authority.empty() || authority.find('/') != std::string_view::npos)
    return Fail(ErrorCode::kInvalidArgument,
                "--gateway must be http(s)://host:port, without a path");
  if (authority.find(':') == std::string_view::npos) url += tls ? ":443" : ":80";
  return url;
}

std::string JsonString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  return it->is_string() ? it->get<std::string>() : it->dump();
}

class DemoRun {
 public:
  DemoRun(const Args& args, http::Client& client, Transcript& transcript)
      : args_(args), client_(client), transcript_(transcript) {}

  // The walkthrough, then the loop. Returns the exit code.
  http::Awaitable<int> Run(std::string user) {
    user_ = std::move(user);
    transcript_.Begin(user_);
    bool completed = co_await Walkthrough();
    int rounds = 0;
    if (completed && (args_.loop > 0 || args_.duration_s > 0)) rounds = co_await Loop();
    transcript_.Finish(rounds, !completed && StopRequested());
    co_return transcript_.failed() > 0 || !completed ? 1 : 0;
  }

 private:
  std::string Url(std::string_view service, const std::string& path) const {
    if (!args_.gateway.empty()) return args_.gateway + path;
    return (args_.tls_ca.empty() ? "http://" : "https://") + std::string(service) + path;
  }

  http::Awaitable<Answer> Do(Call call, int round) {
    Answer answer;
    StepRecord& r = answer.record;
    r.n = ++steps_;
    r.round = round;
    r.step = call.step;
    r.method = call.method;
    r.path = call.path;
    r.service = std::string(call.service);

    http::ClientRequest request;
    request.method = call.method;
    request.url = Url(call.service, call.path);
    request.request_id = user_ + "-" + std::to_string(r.n);  // findable in every access log
    if (!call.body.empty()) {
      request.body = call.body;
      request.content_type = "application/json";
    }
    if (!token_.empty()) request.authorization = "Bearer " + token_;
    // Retry-safe by its Idempotency-Key (http::Client's rule).
    if (!call.idempotency_key.empty())
      request.headers.emplace_back("Idempotency-Key", call.idempotency_key);
    r.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    auto start = Clock::now();
    auto result = co_await client_.Send(std::move(request));
    r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!result) {
      r.detail = result.error().ToString();
      co_return answer;
    }
    r.status = result->status;
    r.served_by = std::string(result->Header("X-Served-By"));
    if (r.served_by.empty()) r.served_by = result->instance_id;
    answer.body = json::parse(result->body, nullptr, false);
    r.ok = r.status == call.expect;
    if (!r.ok) {
      std::string message = JsonString(answer.body, "message");
      std::string code = JsonString(answer.body, "error");
      r.detail = "expected " + std::to_string(call.expect) + ", got " + std::to_string(r.status) +
                 (code.empty() ? "" : " " + code) + (message.empty() ? "" : ": " + message);
      if (code.empty() && message.empty()) r.detail += ": " + result->body.substr(0, 120);
    }
    co_return answer;
  }

  // A step the walkthrough cannot go on without failed, or a signal came.
  bool Stop(const StepRecord& r) { return !r.ok || StopRequested(); }

  // Every co_await below takes named locals only: GCC 12 mishandles
  // temporaries that live across a suspension point in a coroutine.
  http::Awaitable<bool> Walkthrough() {
    // 1. Register (a new name on every run), 2. log in, 3. who am I.
    Call call = MakeCall("register", "POST", "/api/users/register", kUsers, 201);
    call.body =
        json{{"username", user_}, {"password", args_.password}, {"email", user_ + "@example.com"}}
            .dump();
    Answer reg = co_await Do(std::move(call), 0);
    if (reg.record.ok)
      reg.record.detail = "user " + JsonString(reg.body, "id") + " '" + user_ + "' created";
    transcript_.Step(reg.record);
    if (Stop(reg.record)) co_return false;

    call = MakeCall("login", "POST", "/api/users/login", kUsers, 200);
    call.body = json{{"username", user_}, {"password", args_.password}}.dump();
    Answer login = co_await Do(std::move(call), 0);
    if (login.record.ok) {
      token_ = JsonString(login.body, "token");
      if (token_.empty()) {
        login.record.ok = false;
        login.record.detail = "no token in the answer";
      } else {
        login.record.detail =
            "JWT issued, expires in " + JsonString(login.body, "expires_in") + " s";
      }
    }
    transcript_.Step(login.record);
    if (Stop(login.record)) co_return false;

    call = MakeCall("me", "GET", "/api/users/me", kUsers, 200);
    Answer me = co_await Do(std::move(call), 0);
    if (me.record.ok) {
      me.record.detail =
          "user " + JsonString(me.body, "id") + ", email " + JsonString(me.body, "email");
    }
    transcript_.Step(me.record);
    if (Stop(me.record)) co_return false;

    // 4. Orders, each with an Idempotency-Key (a retried POST cannot make two).
    std::vector<std::string> ids;
    for (int i = 0; i < args_.orders; ++i) {
      std::size_t product = static_cast<std::size_t>(i) % std::size(kProducts);
      std::string key = user_ + "-order-" + std::to_string(i + 1);
      Answer order = co_await CreateOrder(product, std::move(key), 0);
      if (order.record.ok) ids.push_back(JsonString(order.body, "id"));
      transcript_.Step(order.record);
      if (StopRequested()) co_return false;
    }

    // 5. List them: exactly the orders just made (another user's never show).
    call = MakeCall("list_orders", "GET", "/api/orders", kOrders, 200);
    Answer list = co_await Do(std::move(call), 0);
    if (list.record.ok) CheckList(list, ids.size());
    transcript_.Step(list.record);
    if (StopRequested()) co_return false;

    // 6. Fetch one by id.
    if (!ids.empty()) {
      std::string id = ids.front();
      Answer one = co_await GetOrder(std::move(id), 0);
      transcript_.Step(one.record);
      if (StopRequested()) co_return false;
    }
    co_return true;
  }

  static Call MakeCall(const char* step, const char* method, std::string path,
                       std::string_view service, int expect) {
    Call call;
    call.step = step;
    call.method = method;
    call.path = std::move(path);
    call.service = service;
    call.expect = expect;
    return call;
  }

  static void CheckList(Answer& list, std::size_t expected) {
    if (!list.body.is_object() || !list.body.contains("count") || !list.body["count"].is_number()) {
      list.record.ok = false;
      list.record.detail = "the answer has no order count";
      return;
    }
    std::size_t count = list.body["count"].get<std::size_t>();
    if (count != expected) {
      list.record.ok = false;
      list.record.detail =
          "expected " + std::to_string(expected) + " orders, listed " + std::to_string(count);
      return;
    }
    list.record.detail = std::to_string(count) + " orders";
    std::string products;
    if (list.body.contains("orders") && list.body["orders"].is_array()) {
      for (const auto& o : list.body["orders"])
        products += (products.empty() ? " (" : ", ") + JsonString(o, "product");
    }
    if (!products.empty()) list.record.detail += products + ")";
  }

  http::Awaitable<Answer> CreateOrder(std::size_t product, std::string key, int round) {
    const Product& p = kProducts[product];
    Call call = MakeCall("create_order", "POST", "/api/orders", kOrders, 201);
    call.body = json{{"product", p.name}, {"quantity", p.quantity}, {"price", p.price}}.dump();
    call.idempotency_key = std::move(key);
    Answer order = co_await Do(std::move(call), round);
    if (order.record.ok) {
      order.record.detail = "order " + JsonString(order.body, "id") + ": " +
                            std::to_string(p.quantity) + " x " + p.name + " at " + p.price + " = " +
                            JsonString(order.body, "total");
    }
    co_return order;
  }

  http::Awaitable<Answer> GetOrder(std::string id, int round) {
    Call call = MakeCall("get_order", "GET", "/api/orders/" + id, kOrders, 200);
    Answer one = co_await Do(std::move(call), round);
    if (one.record.ok) {
      if (JsonString(one.body, "id") != id) {
        one.record.ok = false;
        one.record.detail = "asked for order " + id + ", got " + JsonString(one.body, "id");
      } else {
        one.record.detail = "order " + id + ": " + JsonString(one.body, "product") + ", total " +
                            JsonString(one.body, "total") + ", " + JsonString(one.body, "status");
      }
    }
    co_return one;
  }

  // Rounds of: who am I, create an order, fetch it. Returns the rounds done.
  http::Awaitable<int> Loop() {
    transcript_.BeginLoop("GET /api/users/me, POST /api/orders, GET /api/orders/{id} every " +
                          std::to_string(args_.interval_ms) + " ms");
    auto executor = co_await asio::this_coro::executor;
    asio::steady_timer timer(executor);
    auto start = Clock::now();
    auto over = [&](int rounds) {
      if (StopRequested()) return true;
      if (args_.loop > 0 && rounds >= args_.loop) return true;
      return args_.duration_s > 0 &&
             Clock::now() - start >= std::chrono::duration<double>(args_.duration_s);
    };
    int rounds = 0;
    while (!over(rounds)) {
      ++rounds;
      Call call = MakeCall("me", "GET", "/api/users/me", kUsers, 200);
      Answer me = co_await Do(std::move(call), rounds);
      transcript_.LoopStep(me.record);
      std::size_t product = static_cast<std::size_t>(rounds) % std::size(kProducts);
      std::string key = user_ + "-round-" + std::to_string(rounds);
      Answer order = co_await CreateOrder(product, std::move(key), rounds);
      transcript_.LoopStep(order.record);
      if (order.record.ok) {
        std::string id = JsonString(order.body, "id");
        Answer one = co_await GetOrder(std::move(id), rounds);
        transcript_.LoopStep(one.record);
      }
      // Pause, a signal still ending the loop within 100 ms.
      auto until = Clock::now() + std::chrono::milliseconds(args_.interval_ms);
      while (Clock::now() < until && !StopRequested()) {
        timer.expires_at(std::min(until, Clock::now() + std::chrono::milliseconds(100)));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(http::use_awaitable, ec));
        transcript_.Tick();
      }
    }
    co_return rounds;
  }

  const Args& args_;
  http::Client& client_;
  Transcript& transcript_;
  std::string user_;
  std::string token_;
  int steps_ = 0;
};

int Run(const GlobalOptions& global, Args args) {
  QuietLibraryWarnings();  // failures show in the transcript, once
  std::unique_ptr<Registry> registry;
  std::string via, target;
  if (!args.gateway.empty()) {
    auto url = NormalizeGateway(args.gateway);
    if (!url) return ReportError("demo", url.error());
    args.gateway = *url;
    via = "gateway";
    target = args.gateway;
    // Calls go to the gateway's address; the client needs a registry all
    // the same, and an in-process one asks nobody.
    auto memory = MakeRegistry("memory://disco-demo");
    if (!memory) return ReportError("demo", memory.error());
    registry = std::move(*memory);
  } else {
    registry = OpenRegistry(global);
    if (!registry) return 2;
    via = "registry";
    target = registry->url();
    if (auto services = registry->Services(); !services)
      return ReportError("demo: registry " + registry->url(), services.error());
  }

  std::ofstream json_file;
  if (!args.json_file.empty()) {
    json_file.open(args.json_file, std::ios::trunc);
    if (!json_file) {
      std::cerr << "disco: demo: cannot write --json-file " << args.json_file << std::endl;
      return 2;
    }
  }

  http::ClientOptions options;
  options.per_try_timeout = std::chrono::milliseconds(args.call_timeout_ms);
  options.user_agent = "disco-demo";
  if (args.gateway.empty()) {
    // As order-service calls user-service: one retry on another instance,
    // and instances that refuse connections leave the picks at once.
    options.max_attempts = 2;
    options.outlier_detection = OutlierOptions{};
    options.resolve_timeout = std::chrono::milliseconds(global.timeout_ms);
  } else {
    options.max_attempts = 1;  // the gateway retries; what it cannot save shows here
  }
  if (!args.tls_ca.empty() || !args.tls_cert.empty() || !args.tls_key.empty()) {
    // Without --tls-ca an https:// gateway is checked against the system's CAs.
    if (args.tls_ca.empty())
      return ReportError("demo", Error{ErrorCode::kInvalidArgument,
                                       "--tls-cert/--tls-key need --tls-ca"});
    auto tls = tls::Config::Load(tls::Role::kClient, {args.tls_cert, args.tls_key, args.tls_ca});
    if (!tls) return ReportError("demo: --tls-ca/--tls-cert/--tls-key", tls.error());
    options.tls = std::move(*tls);
  }
  http::Client client(*registry, options);
  if (args.gateway.empty()) {
    for (auto service : {kUsers, kOrders})
      (void)client.Prepare(service, std::chrono::milliseconds(global.timeout_ms));
  }

  Transcript transcript(std::cout, {.json = args.json,
                                    .json_copy = json_file.is_open() ? &json_file : nullptr,
                                    .via = via,
                                    .target = target});
  DemoRun run(args, client, transcript);
  asio::io_context io;
  int exit_code = 1;
  std::string user = args.user.empty() ? DefaultUser() : args.user;
  asio::co_spawn(io, run.Run(user), [&](std::exception_ptr error, int code) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        std::cerr << "disco: demo: " << e.what() << std::endl;
      }
      return;
    }
    exit_code = code;
  });
  io.run();
  return exit_code;
}

}  // namespace

void AddDemo(CLI::App& app, GlobalOptions& global, int* exit_code) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "demo",
      "The demo client: register a user, log in, create, list and fetch orders, showing which "
      "instance served each call");
  cmd->add_option("--gateway", args->gateway,
                  "Send every call to the gateway at this URL (http://host:port or "
                  "https://host:port); without it, user-service and order-service are discovered "
                  "in --registry")
      ->envname("DISCO_GATEWAY");
  cmd->add_option("--tls-ca", args->tls_ca,
                  "PEM CA that the gateway's or the instances' certificates must chain to (an "
                  "https:// gateway without it: the system's CAs; without --gateway: the "
                  "services are called over TLS, their certificates checked for their names)")
      ->envname("DISCO_TLS_CA");
  cmd->add_option("--tls-cert", args->tls_cert,
                  "PEM certificate presented to servers that require one (mutual TLS; needs "
                  "--tls-key and --tls-ca)")
      ->envname("DISCO_TLS_CERT");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key of --tls-cert")
      ->envname("DISCO_TLS_KEY");
  cmd->add_option("--user", args->user,
                  "Username to register (default: demo-<UTC time>-<random>, new on every run)");
  cmd->add_option("--password", args->password, "Password of that user (8-128 characters)")
      ->capture_default_str();
  cmd->add_option("--orders", args->orders, "Orders created by the walkthrough")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--loop", args->loop,
                  "After the walkthrough, this many rounds of: GET /api/users/me, POST "
                  "/api/orders, GET /api/orders/{id} (0: none)")
      ->check(CLI::Range(0, 100'000'000))
      ->capture_default_str();
  cmd->add_option("--duration", args->duration_s,
                  "After the walkthrough, keep doing rounds for this many seconds (0: none; with "
                  "--loop, whichever ends first). SIGINT or SIGTERM ends the loop early, with the "
                  "summary")
      ->check(CLI::Range(0.0, 7 * 24 * 3600.0))
      ->capture_default_str();
  cmd->add_option("--interval-ms", args->interval_ms, "Pause between two rounds")
      ->check(CLI::Range(0, 3'600'000))
      ->capture_default_str();
  cmd->add_option("--call-timeout-ms", args->call_timeout_ms, "Bound on each HTTP call")
      ->check(CLI::Range(100, 600'000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json,
                "Print JSON lines instead of text: {\"type\":\"start\"}, one {\"type\":\"step\"} "
                "per call, {\"type\":\"loop\"} when the loop begins, and {\"type\":\"summary\"}");
  cmd->add_option("--json-file", args->json_file,
                  "Also write the JSON lines to this file (the text still goes to stdout)");
  cmd->footer(
      "Every disco server names itself in the X-Served-By response header, and the gateway\n"
      "passes its upstream's on: the 'served by' column shows load balancing at work.\n"
      "Exit code: 0 when every call succeeded, 1 when any failed, 2 for bad arguments.\n"
      "Examples:\n"
      "  disco demo --gateway http://127.0.0.1:8080\n"
      "  disco --registry consul://127.0.0.1:8500 demo --orders 5\n"
      "  disco demo --gateway http://127.0.0.1:8080 --duration 30 --interval-ms 20\n"
      "  disco demo --gateway https://127.0.0.1:8443 --tls-ca ca.pem");
  cmd->callback([&global, args, exit_code] { *exit_code = Run(global, *args); });
}

}  // namespace disco::cli
