#include "disco/http/server.h"

#include <pthread.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <list>
#include <thread>
#include <unordered_map>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/metrics.h"
#include "util/log.h"

namespace disco::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kUnmatched = "unmatched";
// Names the instance that answered (ServerOptions::instance_id), so callers
// and demos can see load balancing; a handler may set it (a proxy passes on
// its upstream's).
constexpr const char kServedBy[] = "X-Served-By";
// The access log's line is {"ts":...,<fields>}: spdlog adds the time (cached
// per second, cheap) and the braces; we write the fields.
constexpr const char* kAccessPattern = "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",%v}";

// Bounded label values for the method: anything unusual is "OTHER".
constexpr std::string_view kMethods[] = {"GET",   "POST", "PUT",     "DELETE",
                                         "PATCH", "HEAD", "OPTIONS", "OTHER"};

std::size_t MethodIndex(std::string_view method) {
  for (std::size_t i = 0; i + 1 < std::size(kMethods); ++i) {
    if (kMethods[i] == method) return i;
  }
  return std::size(kMethods) - 1;
}

struct Connection {
  beast::tcp_stream* stream = nullptr;
  bool idle = true;  // waiting for the first byte of a request
};

struct RouteMetrics {
  Counter* requests;
  Histogram* latency;
};

struct Worker {
  // Declared before the io_context: coroutine frames destroyed with the
  // io_context unlink themselves from this list.
  std::list<Connection*> connections;
  std::unordered_map<std::uint64_t, RouteMetrics> metrics_cache;  // touched only on this thread
  std::unique_ptr<asio::io_context> ioc = std::make_unique<asio::io_context>(1);
  std::thread thread;
};

std::string_view SV(beast::string_view s) { return {s.data(), s.size()}; }

void AppendNumber(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

}  // namespace

struct Server::Impl {
  Impl(Router r, ServerOptions o) : router(std::move(r)), options(std::move(o)) {
    if (options.threads == 0) options.threads = std::max(1u, std::thread::hardware_concurrency());
    metrics = options.metrics ? options.metrics : &MetricsRegistry::Default();
    requests_family =
        &metrics->CounterFamily("http_server_requests_total", "HTTP requests answered",
                                {"service", "route", "method", "status"});
    latency_family =
        &metrics->HistogramFamily("http_server_request_duration_seconds",
                                  "Time from the request's first byte being parsed to the "
                                  "response written",
                                  {"service", "route", "method", "status"});
    connections_gauge =
        &metrics
             ->GaugeFamily("http_server_open_connections", "Open client connections", {"service"})
             .With({options.service});
    in_flight_gauge =
        &metrics
             ->GaugeFamily("http_server_requests_in_flight", "Requests being handled", {"service"})
             .With({options.service});
    if (!router.Has("GET", "/health")) {
      router.Add("GET", "/health", [this](Request&) -> Awaitable<Response> { co_return Health(); });
    }
    if (!router.Has("GET", "/metrics")) {
      router.Add("GET", "/metrics", [this](Request&) -> Awaitable<Response> {
        co_return Response::Text(200, metrics->Render(),
                                 "text/plain; version=0.0.4; charset=utf-8");
      });
    }
  }

  Response Health() const {
    bool drain = draining.load();
    std::string body = "{\"status\":";
    body += drain ? "\"draining\"" : "\"ok\"";
    body += ",\"service\":" + JsonQuote(options.service) +
            ",\"instance\":" + JsonQuote(options.instance_id) + "}";
    return Response::Json(drain ? 503 : 200, std::move(body));
  }

  Result<void> Start();
  Awaitable<void> AcceptLoop();
  Awaitable<void> Session(tcp::socket socket, Worker& worker);
  void Finish(Worker& worker, std::string_view route_label, std::size_t route_id,
              std::string_view method, std::string_view path, int status, Clock::time_point start,
              const std::string& request_id, std::size_t bytes_in, std::size_t bytes_out);
  void StopThreads();

  Router router;
  ServerOptions options;
  MetricsRegistry* metrics;
  Family<Counter>* requests_family;
  Family<Histogram>* latency_family;
  Gauge* connections_gauge;
  Gauge* in_flight_gauge;
  std::shared_ptr<spdlog::logger> access;

  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> in_flight{0};
};

Result<void> Server::Impl::Start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(options.host, ec);
  if (ec) {
    // A host name: resolve it once (start-up only, blocking is fine here).
    asio::io_context tmp;
    tcp::resolver resolver(tmp);
    auto results = resolver.resolve(options.host, std::to_string(options.port), ec);
    if (ec || results.empty()) {
      return Fail(ErrorCode::kInvalidArgument, "cannot resolve listen host '" + options.host + "'");
    }
    address = results.begin()->endpoint().address();
  }
  for (std::size_t i = 0; i < options.threads; ++i) workers.push_back(std::make_unique<Worker>());
  acceptor = std::make_unique<tcp::acceptor>(*workers[0]->ioc);
  tcp::endpoint endpoint(address, options.port);
  std::string where = options.host + ":" + std::to_string(options.port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(1024, ec);
  if (ec) {
    acceptor.reset();
    workers.clear();
    return Fail(ErrorCode::kUnavailable, "cannot listen on " + where + ": " + ec.message());
  }
  port = acceptor->local_endpoint().port();
  if (options.access_log) {
    access = spdlog::get("access");
    if (!access) {
      access = spdlog::stdout_logger_mt("access");
      access->set_pattern(kAccessPattern, spdlog::pattern_time_type::utc);
    }
  }
  asio::co_spawn(*workers[0]->ioc, AcceptLoop(), asio::detached);
  for (std::size_t i = 0; i < workers.size(); ++i) {
    auto* worker = workers[i].get();
    worker->thread = std::thread([worker, i] {
      std::string name = "http-io-" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      auto guard = asio::make_work_guard(*worker->ioc);
      worker->ioc->run();
    });
  }
  started = true;
  return {};
}

Awaitable<void> Server::Impl::AcceptLoop() {
  std::size_t next = 0;
  asio::steady_timer backoff(*workers[0]->ioc);
  while (acceptor && acceptor->is_open()) {
    Worker& target = *workers[next++ % workers.size()];
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor->async_accept(*target.ioc, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) break;
      // Out of file descriptors or similar: pause instead of spinning.
      log::Get().warn("http accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(*target.ioc, Session(std::move(socket), target), asio::detached);
  }
}

void Server::Impl::Finish(Worker& worker, std::string_view route_label, std::size_t route_id,
                          std::string_view method, std::string_view path, int status,
                          Clock::time_point start, const std::string& request_id,
                          std::size_t bytes_in, std::size_t bytes_out) {
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::size_t method_index = MethodIndex(method);
  std::uint64_t key = (static_cast<std::uint64_t>(route_id) << 16) | (method_index << 10) |
                      static_cast<std::uint64_t>(status & 0x3ff);
  auto it = worker.metrics_cache.find(key);
  if (it == worker.metrics_cache.end()) {
    char status_text[8];
    auto [end, ec] = std::to_chars(status_text, status_text + sizeof status_text, status);
    std::string_view status_view(status_text, end - status_text);
    std::string_view labels[] = {options.service, route_label, kMethods[method_index], status_view};
    it = worker.metrics_cache
             .emplace(key,
                      RouteMetrics{&requests_family->With(labels), &latency_family->With(labels)})
             .first;
  }
  it->second.requests->Inc();
  it->second.latency->Observe(seconds);
  if (access) {
    std::string line;
    line.reserve(256);
    line += "\"type\":\"access\",\"method\":";
    line += JsonQuote(method);
    line += ",\"path\":";
    line += JsonQuote(path);
    line += ",\"route\":";
    line += JsonQuote(route_label);
    line += ",\"status\":";
    AppendNumber(line, static_cast<std::uint64_t>(status));
    line += ",\"duration_ms\":";
    char buf[32];
    auto [end, ec] =
        std::to_chars(buf, buf + sizeof buf, seconds * 1000.0, std::chars_format::fixed, 3);
    line.append(buf, end);
    line += ",\"request_id\":";
    line += JsonQuote(request_id);
    line += ",\"bytes_in\":";
    AppendNumber(line, bytes_in);
    line += ",\"bytes_out\":";
    AppendNumber(line, bytes_out);
    access->info(line);
  }
}

Awaitable<void> Server::Impl::Session(tcp::socket socket, Worker& worker) {
  beast::tcp_stream stream(std::move(socket));
  Connection connection{&stream};
  worker.connections.push_front(&connection);
  auto self = worker.connections.begin();
  open_connections.fetch_add(1, std::memory_order_relaxed);
  connections_gauge->Add(1);
  struct Unlink {
    Impl* impl;
    Worker& worker;
    std::list<Connection*>::iterator it;
    ~Unlink() {
      worker.connections.erase(it);
      impl->connections_gauge->Add(-1);
      impl->open_connections.fetch_sub(1, std::memory_order_relaxed);
    }
  } unlink{this, worker, self};

  std::string remote;
  {
    boost::system::error_code ec;
    auto endpoint = stream.socket().remote_endpoint(ec);
    if (!ec) remote = endpoint.address().to_string();
  }

  beast::flat_buffer buffer;
  boost::system::error_code ec;
  bool linger = false;  // close gently after an error answer (the peer may still be sending)
  while (!draining.load(std::memory_order_relaxed)) {
    if (buffer.size() == 0) {
      connection.idle = true;
      stream.expires_after(options.idle_timeout);
      std::size_t n = co_await stream.async_read_some(
          buffer.prepare(4096), asio::redirect_error(asio::use_awaitable, ec));
      connection.idle = false;
      if (ec) break;  // idle timeout, peer closed, or shutdown: nothing to answer
      buffer.commit(n);
    }
    auto start = Clock::now();
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
    parser.body_limit(options.body_limit);
    stream.expires_after(options.request_timeout);
    co_await bhttp::async_read_header(stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && parser.get()[bhttp::field::expect] == "100-continue" && !parser.is_done()) {
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
      co_await bhttp::async_write(stream, cont, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !parser.is_done()) {
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec) {
      Response error;
      if (ec == bhttp::error::body_limit) {
        error = Response::Error(
            413, "payload_too_large",
            "request body exceeds " + std::to_string(options.body_limit) + " bytes");
      } else if (ec == bhttp::error::header_limit) {
        error = Response::Error(
            431, "header_too_large",
            "request header exceeds " + std::to_string(options.header_limit) + " bytes");
      } else if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream ||
                 ec == asio::error::eof || ec == asio::error::connection_reset ||
                 ec == asio::error::operation_aborted || ec == bhttp::error::partial_message) {
        // Too slow (tcp_stream has closed the socket: slowloris ends here) or
        // the peer went away mid-request: nobody to answer.
        break;
      } else {
        error = Response::Error(400, "bad_request", "malformed HTTP request: " + ec.message());
      }
      bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(error.status), 11};
      out.set(bhttp::field::content_type, error.content_type);
      out.keep_alive(false);
      std::string request_id = NewRequestId();
      out.set("X-Request-Id", request_id);
      if (!options.instance_id.empty()) out.set(kServedBy, options.instance_id);
      std::size_t bytes_out = error.body.size();
      out.body() = std::move(error.body);
      out.prepare_payload();
      stream.expires_after(options.request_timeout);
      co_await bhttp::async_write(stream, out, asio::redirect_error(asio::use_awaitable, ec));
      Finish(worker, kUnmatched, 0, "-", "-", error.status, start, request_id, 0, bytes_out);
      linger = true;
      break;
    }

    in_flight.fetch_add(1, std::memory_order_relaxed);
    in_flight_gauge->Add(1);
    auto& message = parser.get();
    Request request;
    request.method = SV(message.method_string());
    request.target = SV(message.target());
    auto question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string_view::npos) request.query = request.target.substr(question + 1);
    request.headers.reserve(16);
    for (const auto& field : message)
      request.headers.emplace_back(SV(field.name_string()), SV(field.value()));
    request.body = std::move(message.body());
    request.remote_address = remote;
    std::string_view caller_id = SV(message["X-Request-Id"]);
    request.request_id = IsValidRequestId(caller_id) ? std::string(caller_id) : NewRequestId();

    Response response;
    std::string_view route_label = kUnmatched;
    std::size_t route_id = 0;
    auto match = router.Match(request.method, request.path, request.params);
    switch (match.kind) {
      case RouteMatch::Kind::kFound:
        request.route = match.pattern;
        route_label = match.pattern;
        route_id = match.index + 1;
        try {
          response = co_await (*match.handler)(request);
        } catch (const std::exception& e) {
          log::Get().error("handler {} {} failed (request id {}): {}", request.method,
                           match.pattern, request.request_id, e.what());
          response = Response::Error(500, "internal",
                                     "internal error (request id " + request.request_id + ")");
        }
        break;
      case RouteMatch::Kind::kMethodNotAllowed:
        response = Response::Error(405, "method_not_allowed",
                                   "method " + std::string(request.method) +
                                       " is not allowed here (allowed: " + match.allow + ")");
        response.headers.emplace_back("Allow", match.allow);
        break;
      case RouteMatch::Kind::kNotFound:
        response = Response::Error(404, "not_found", "no route for " + std::string(request.path));
        break;
    }

    bool keep_alive = message.keep_alive() && !draining.load(std::memory_order_relaxed);
    bhttp::response<bhttp::string_body> out{static_cast<bhttp::status>(response.status),
                                            message.version()};
    if (!response.content_type.empty()) out.set(bhttp::field::content_type, response.content_type);
    out.set("X-Request-Id", request.request_id);
    if (!options.instance_id.empty()) out.set(kServedBy, options.instance_id);
    for (auto& [name, value] : response.headers) {
      // Repeatable headers (Set-Cookie, Vary...) keep every copy; the ones the
      // server owns are replaced (a proxy passes its upstream's X-Served-By on).
      if (HeaderNameEquals(name, "X-Request-Id") || HeaderNameEquals(name, "Content-Type") ||
          HeaderNameEquals(name, kServedBy))
        out.set(name, value);
      else
        out.insert(name, value);
    }
    std::size_t bytes_in = request.body.size();
    std::size_t bytes_out = response.body.size();
    out.body() = std::move(response.body);
    out.keep_alive(keep_alive);
    out.prepare_payload();
    stream.expires_after(options.request_timeout);
    co_await bhttp::async_write(stream, out, asio::redirect_error(asio::use_awaitable, ec));
    Finish(worker, route_label, route_id, request.method, request.path, response.status, start,
           request.request_id, bytes_in, bytes_out);
    in_flight_gauge->Add(-1);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (ec || !keep_alive) break;
  }

  if (linger && stream.socket().is_open()) {
    // Half-close and drain what the peer still sends (briefly, bounded), so
    // the kernel does not answer its remaining bytes with a reset that could
    // destroy our error response before the peer reads it.
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(std::chrono::milliseconds(500));
    std::size_t drained = 0;
    char sink[4096];
    while (drained < 1024 * 1024) {
      std::size_t n = co_await stream.async_read_some(
          asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      drained += n;
    }
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream.close();
}

void Server::Impl::StopThreads() {
  if (!started || stopped) return;
  stopped = true;
  for (auto& worker : workers) worker->ioc->stop();
  for (auto& worker : workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  acceptor.reset();
  // Destroying each io_context destroys the coroutines still suspended on it.
  for (auto& worker : workers) worker->ioc.reset();
}

Server::Server(Router router, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(router), std::move(options))) {}

Server::~Server() { Stop(); }

Result<void> Server::Start() {
  if (impl_->started) return Fail(ErrorCode::kInternal, "server already started");
  return impl_->Start();
}

std::uint16_t Server::port() const { return impl_->port; }
bool Server::draining() const { return impl_->draining.load(); }
std::uint64_t Server::open_connections() const { return impl_->open_connections.load(); }
std::uint64_t Server::requests_in_flight() const { return impl_->in_flight.load(); }

bool Server::Drain(std::chrono::milliseconds grace) {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return true;
  impl.draining.store(true);
  auto deadline = Clock::now() + grace;
  // Stop accepting on the acceptor's thread (it is not thread-safe).
  asio::post(*impl.workers[0]->ioc, [&impl] {
    boost::system::error_code ec;
    if (impl.acceptor) impl.acceptor->close(ec);
  });
  // Close connections that wait for a request; busy ones close after their
  // current response (the session loop checks `draining`).
  for (auto& worker : impl.workers) {
    asio::post(*worker->ioc, [w = worker.get()] {
      for (Connection* c : w->connections) {
        if (c->idle) c->stream->cancel();
      }
    });
  }
  bool clean = true;
  while (impl.open_connections.load() > 0) {
    if (Clock::now() >= deadline) {
      clean = false;
      log::Get().warn(
          "http server: grace period over with {} connection(s) open, {} request(s) in flight",
          impl.open_connections.load(), impl.in_flight.load());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  impl.StopThreads();
  return clean;
}

void Server::Stop() { Drain(std::chrono::milliseconds(0)); }

}  // namespace disco::http
