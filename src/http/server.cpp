#include "disco/http/server.h"

#include <fcntl.h>
#include <pthread.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/container/small_vector.hpp>
#include <charconv>
#include <cstring>
#include <list>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/metrics.h"
#include "http/body_budget.h"
#include "http/connection.h"
#include "http/connection_limits.h"
#include "http/head_writer.h"
#include "http/request_framing.h"
#include "http/simple_head.h"
#include "http/tls_handshake.h"
#include "http/trace_context.h"
#include "util/log.h"

namespace disco::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using detail::Connection;
using detail::ConnectionLimits;
using detail::FramingProblem;
using detail::ReadUntil;
using detail::Socket;

constexpr std::string_view kUnmatched = "unmatched";
// Names the instance that answered (ServerOptions::instance_id), so callers
// and demos can see load balancing; a handler may set it (a proxy passes on
// its upstream's).
constexpr const char kServedBy[] = "X-Served-By";
// The access log's line is {"ts":...,<fields>}: spdlog adds the time (cached
// per second, cheap) and the braces; we write the fields.
constexpr const char* kAccessPattern = "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",%v}";
// Lingering close after an early error answer: how long, and how much, the
// server reads and discards what the client still sends (nginx: 30 s /
// 5 s per read). Enough for a client that sends a whole body of tens of
// MiB before it reads the answer, short enough to hold no descriptor long.
constexpr auto kLingerTime = std::chrono::seconds(5);
constexpr std::size_t kLingerBytes = 64 * 1024 * 1024;
// A request body's buffer above this is given back after the request, so
// that a connection that once carried a large body does not keep its memory.
constexpr std::size_t kKeepBodyCapacity = 64 * 1024;
// Accept errors (no descriptors left) are logged at most this often.
constexpr auto kAcceptLogInterval = std::chrono::seconds(10);

// Bounded label values for the method: anything unusual is "OTHER".
constexpr std::string_view kMethods[] = {"GET",   "POST", "PUT",     "DELETE",
                                         "PATCH", "HEAD", "OPTIONS", "OTHER"};

std::size_t MethodIndex(std::string_view method) {
  for (std::size_t i = 0; i + 1 < std::size(kMethods); ++i) {
    if (kMethods[i] == method) return i;
  }
  return std::size(kMethods) - 1;
}

struct ConnectionEntry {
  Connection* connection = nullptr;
  std::atomic<std::int64_t>* idle_count = nullptr;  // the server's, kept by SetIdle
  bool idle = false;                                // waiting for the first byte of a request

  void SetIdle(bool now_idle) {
    if (now_idle == idle) return;
    idle = now_idle;
    idle_count->fetch_add(now_idle ? 1 : -1, std::memory_order_relaxed);
  }
};

// How long a connection in the reserved band may take to send its first
// request: a health check sends at once, and a slot held for the whole
// request_timeout by a client sending one byte would lock health checks out.
constexpr auto kReserveRequestTimeout = std::chrono::seconds(1);

struct RouteMetrics {
  Counter* requests;
  Histogram* latency;
};

struct Worker {
  // Declared before the io_context: coroutine frames destroyed with the
  // io_context unlink themselves from this list.
  std::list<ConnectionEntry*> connections;
  std::unordered_map<std::uint64_t, RouteMetrics> metrics_cache;  // touched only on this thread
  explicit Worker(int concurrency_hint)
      : ioc(std::make_unique<asio::io_context>(concurrency_hint)) {}
  std::unique_ptr<asio::io_context> ioc;
  std::thread thread;
};

// What one connection keeps from request to request. Reused, so that a
// request costs no allocation for its header views, header text or
// response head once they have grown to fit. It lives in Session's frame,
// which outlives every step Session awaits: the steps may hold it by
// reference across their suspensions.
struct SessionState {
  SessionState(Connection& connection, Worker& worker, ConnectionEntry& entry,
               std::list<ConnectionEntry*>::iterator self, bool reserve,
               detail::BodyBudget& body_budget)
      : connection(connection),
        worker(worker),
        entry(entry),
        self(self),
        reserve(reserve),
        body_holding(body_budget) {}

  Connection& connection;
  Worker& worker;
  ConnectionEntry& entry;
  const std::list<ConnectionEntry*>::iterator self;  // in worker.connections
  // In the reserved band: health checks and scrapes only, shorter waits,
  // one answer.
  const bool reserve;
  Request request;
  std::string header_store;
  std::string head;
  detail::BodyBudget::Holding body_holding;  // this request's body bytes
  boost::system::error_code ec;
  // When the last request ended (or the connection opened): read the clock
  // twice per request, not at every step (a clock read is a vDSO call).
  Clock::time_point now = Clock::now();
};

// What the keep-alive decision needs from the request's framing, and the
// answer already chosen when the head broke a framing rule (RequestParser).
struct RequestFrame {
  unsigned version = 11;
  bool wants_keep_alive = true;
  std::optional<Response> rejection;
};

// The answer to a request that could not be read whole.
struct ReadFailure {
  Response response;
  // Sent only if the socket takes it at once; then closed without lingering.
  bool timed_out = false;
};

// A handled request's answer, and the route it is counted under.
struct Handled {
  // Empty content type: the default one would be allocated only to be
  // replaced by the handler's response.
  Response response{.status = 500, .content_type = {}};
  std::string_view route_label = kUnmatched;
  std::size_t route_id = 0;
};

void AppendNumber(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

bool IEquals(beast::string_view a, std::string_view b) {
  return HeaderNameEquals(std::string_view(a.data(), a.size()), b);
}

// The target, and the path and query it splits into.
void SetTarget(Request& request, std::string_view target) {
  request.target = target;
  auto question = target.find('?');
  request.path = target.substr(0, question);
  if (question != std::string_view::npos) request.query = target.substr(question + 1);
}

// The answer to a request whose body does not fit in the server's
// BodyBudget: the server is busy, not the request wrong.
Response BodyBudgetExceeded() {
  Response response = Response::Error(
      503, "overloaded", "the server holds too many request bodies at once; retry shortly");
  response.headers.emplace_back("Retry-After", "1");
  return response;
}

// Parses a request straight into a Request. The method, target and header
// fields are copied into one string owned by the connection (no allocation
// per field, none at all once that string has grown to fit a header block),
// and the Request views them from there; the body goes to request.body.
// Copying is needed: Beast may hand a field over from its own scratch
// buffer (obs-fold), and reading the body may move the read buffer.
class RequestParser final : public detail::BodyParser<true> {
 public:
  // `rejection`: set when the head breaks a framing rule (FramingProblem);
  // the parser then stops with an error.
  // `holding`: the server's BodyBudget, taken as body bytes arrive; when
  // they do not fit, `rejection` is a 503 and the parser stops.
  RequestParser(Request& request, std::string& store, std::optional<Response>& rejection,
                detail::BodyBudget::Holding& holding)
      : BodyParser(request.body),
        request_(request),
        store_(store),
        rejection_(rejection),
        holding_(holding) {
    store_.clear();
  }

  unsigned version() const { return version_; }
  bool expects_continue() const { return expect_continue_; }

 private:
  struct Span {
    std::size_t offset, size;
  };
  Span Keep(beast::string_view text) {
    Span span{store_.size(), text.size()};
    store_.append(text.data(), text.size());
    return span;
  }
  std::string_view View(Span span) const { return {store_.data() + span.offset, span.size}; }

  void on_request_impl(bhttp::verb, beast::string_view method, beast::string_view target,
                       int version, beast::error_code& ec) override {
    version_ = static_cast<unsigned>(version);
    method_ = Keep(method);
    target_ = Keep(target);
    ec = {};
  }
  void on_field_impl(bhttp::field field, beast::string_view name, beast::string_view value,
                     beast::error_code& ec) override {
    ec = {};
    // A chunked body's trailer fields arrive after on_header_impl: appending
    // them could move the store that the Request already views. Dropped.
    if (this->is_header_done()) return;
    if (field == bhttp::field::expect && IEquals(value, "100-continue")) expect_continue_ = true;
    if (field == bhttp::field::host) ++hosts_;
    if (field == bhttp::field::content_length) has_length_ = true;
    if (field == bhttp::field::transfer_encoding) {
      if (has_transfer_encoding_) codings_ += ',';
      codings_.append(value.data(), value.size());
      has_transfer_encoding_ = true;
    }
    fields_.push_back({Keep(name), Keep(value)});
  }
  void on_header_impl(beast::error_code& ec) override {
    rejection_ = FramingProblem(version_, hosts_, codings_, has_transfer_encoding_, has_length_);
    // And Beast must have read the same: a Transfer-Encoding it did not
    // take as chunked would frame the message as having no body.
    if (!rejection_ && has_transfer_encoding_ && !this->chunked())
      rejection_ = Response::Error(400, "bad_request", "malformed Transfer-Encoding");
    if (rejection_) {
      // Stops the parser (rejection_ says why) where the message ends with
      // its head; where a body follows, Beast 1.74 goes on past this error
      // when more bytes are buffered, and on_body_init_impl stops it.
      ec = bhttp::error::bad_transfer_encoding;
      return;
    }
    // The store is complete: views into it stay valid until the next request.
    request_.method = View(method_);
    SetTarget(request_, View(target_));
    request_.headers.reserve(fields_.size());
    for (const auto& [name, value] : fields_)
      request_.headers.emplace_back(View(name), View(value));
    ec = {};
  }

  // A chunk extension with a control character (a bare LF or a NUL inside
  // a quoted string, which Beast lets through) is refused: a parser that
  // ends lines at a bare LF would frame the body differently.
  void on_chunk_header_impl(std::uint64_t size, beast::string_view extensions,
                            beast::error_code& ec) override {
    for (char c : extensions) {
      const auto byte = static_cast<unsigned char>(c);
      if ((byte < 0x20 && c != '\t') || byte == 0x7f) {
        ec = bhttp::error::bad_chunk_extension;
        return;
      }
    }
    BodyParser::on_chunk_header_impl(size, extensions, ec);
  }
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code& ec) override {
    if (rejection_) {
      ec = bhttp::error::bad_transfer_encoding;
      return;
    }
    BodyParser::on_body_init_impl(length, ec);
  }
  std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override {
    if (!holding_.Take(body.size())) {
      rejection_ = BodyBudgetExceeded();
      ec = bhttp::error::body_limit;
      return 0;
    }
    return BodyParser::on_body_impl(body, ec);
  }
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 beast::error_code& ec) override {
    return on_body_impl(body, ec);
  }

  Request& request_;
  std::string& store_;
  std::optional<Response>& rejection_;
  detail::BodyBudget::Holding& holding_;
  Span method_{}, target_{};
  std::string codings_;  // the Transfer-Encoding fields' values, joined by commas
  int hosts_ = 0;
  bool has_length_ = false;
  bool has_transfer_encoding_ = false;
  // Spans until the header is complete (the store may still grow).
  boost::container::small_vector<std::pair<Span, Span>, 16> fields_;
  unsigned version_ = 11;
  bool expect_continue_ = false;
};

// The request at the front of `buffer`, when the strict fast parser takes
// it (http/simple_head.h): its head copied into `store` and viewed from
// there as RequestParser does, the body into request.body, the bytes
// consumed. False: nothing done, Beast's turn (RequestParser).
bool TakeSimpleRequest(beast::flat_buffer& buffer, const ServerOptions& options, std::string& store,
                       Request& request, bool& keep_alive) {
  detail::SimpleMessage simple;
  const auto data = buffer.data();
  const std::string_view text(static_cast<const char*>(data.data()), data.size());
  if (detail::ParseSimpleRequest(text, options.header_limit, options.body_limit, simple) !=
      detail::SimpleParse::kDone)
    return false;
  store.assign(text.data(), simple.head_size);
  auto in_store = [&](std::string_view view) {
    return std::string_view(store.data() + (view.data() - text.data()), view.size());
  };
  request.method = in_store(simple.method);
  SetTarget(request, in_store(simple.target));
  request.headers.reserve(simple.field_count);
  for (std::size_t i = 0; i < simple.field_count; ++i)
    request.headers.emplace_back(in_store(simple.fields[i].name), in_store(simple.fields[i].value));
  request.body.assign(simple.body);
  keep_alive = simple.keep_alive;
  buffer.consume(simple.size);
  return true;
}

// 1xx, 204 and 304 answers have no body, hence no Content-Length.
bool HasBody(int status) { return status >= 200 && status != 204 && status != 304; }

// Headers a handler may not set: the server frames the message itself.
bool IsFramingHeader(std::string_view name) {
  return HeaderNameEquals(name, "Content-Length") || HeaderNameEquals(name, "Connection") ||
         HeaderNameEquals(name, "Transfer-Encoding");
}

// The status line and header block of `response`, written by hand into
// `out` (a string reused per connection): no http::fields (an allocation
// per field) and no Beast serializer (its buffer-sequence iterators cost
// more than the whole request otherwise).
void WriteHead(std::string& out, const Response& response, std::string_view request_id,
               std::string_view served_by, unsigned version, bool keep_alive) {
  const int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  const std::string_view reason = ReasonPhrase(status);
  // The handler's Content-Type, X-Request-Id and X-Served-By (a proxy passes
  // its upstream's on) replace the server's own; the last copy wins.
  std::string_view content_type = response.content_type;
  std::size_t extra = 0;  // room for the handler's other headers
  for (const auto& [name, value] : response.headers) {
    if (HeaderNameEquals(name, "Content-Type"))
      content_type = value;
    else if (HeaderNameEquals(name, "X-Request-Id"))
      request_id = value;
    else if (HeaderNameEquals(name, kServedBy))
      served_by = value;
    extra += detail::FieldSize(name, value);
  }
  // An upper bound: the status line, the fields (skipped ones included),
  // Content-Length's up to 20 digits, a Connection field, the blank line.
  const std::size_t room =
      13 + reason.size() + 2 + detail::FieldSize("Content-Type", content_type) +
      detail::FieldSize("X-Request-Id", request_id) + detail::FieldSize(kServedBy, served_by) +
      extra + detail::FieldSize("Content-Length", "18446744073709551615") +
      detail::FieldSize("Connection", "keep-alive") + 2;
  out.clear();
  // Checked field by field, not counted once as a request head is
  // (detail::WriteCheckedHead): a response has a few short fields to check,
  // and counting its whole head cost 200 instructions more (callgrind).
  out.resize_and_overwrite(room, [&](char* buffer, std::size_t) {
    detail::HeadWriter w(buffer);
    w.Put(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    const char digits[3] = {static_cast<char>('0' + status / 100),
                            static_cast<char>('0' + status / 10 % 10),
                            static_cast<char>('0' + status % 10)};
    w.Put(std::string_view(digits, 3));
    w.Put(" ");
    w.Put(reason);
    w.Put("\r\n");
    if (!content_type.empty()) w.OwnField("Content-Type", content_type);
    w.OwnField("X-Request-Id", request_id);
    if (!served_by.empty()) w.OwnField(kServedBy, served_by);
    for (const auto& [name, value] : response.headers) {
      if (HeaderNameEquals(name, "Content-Type") || HeaderNameEquals(name, "X-Request-Id") ||
          HeaderNameEquals(name, kServedBy) || IsFramingHeader(name))
        continue;
      w.CheckedField(name, value);
    }
    if (HasBody(status)) {
      char length[24];
      auto [end, ec] = std::to_chars(length, length + sizeof length, response.body.size());
      w.Field("Content-Length", std::string_view(length, static_cast<std::size_t>(end - length)));
    }
    if (!keep_alive && version != 10) w.Put("Connection: close\r\n");
    if (keep_alive && version == 10) w.Put("Connection: keep-alive\r\n");
    w.Put("\r\n");
    return w.size();
  });
}

}  // namespace

struct Server::Impl {
  Impl(Router r, ServerOptions o)
      : router(std::move(r)),
        options(std::move(o)),
        limits({options.max_connections, options.max_connections_per_address,
                options.reserved_connections}),
        body_budget(std::max(options.body_memory_limit, options.body_limit)) {
    if (options.threads == 0) options.threads = UsableCores();
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
    connections_accepted =
        &metrics
             ->CounterFamily("http_server_connections_accepted_total",
                             "Client connections admitted (refused ones are counted in "
                             "http_server_connections_refused_total); against requests, "
                             "how well callers reuse connections",
                             {"service"})
             .With({options.service});
    in_flight_gauge =
        &metrics
             ->GaugeFamily("http_server_requests_in_flight", "Requests being handled", {"service"})
             .With({options.service});
    auto& refused = metrics->CounterFamily(
        "http_server_connections_refused_total",
        "Connections closed at accept: the server's limit (full), the client address's "
        "(per_address), or no descriptor left (descriptors)",
        {"service", "reason"});
    refused_full = &refused.With({options.service, "full"});
    refused_per_address = &refused.With({options.service, "per_address"});
    refused_descriptors = &refused.With({options.service, "descriptors"});
    refused_body_memory =
        &metrics
             ->CounterFamily("http_server_requests_refused_total",
                             "Requests refused with 503 before their body was read whole: the "
                             "request bodies held at once reached body_memory_limit (body_memory)",
                             {"service", "reason"})
             .With({options.service, "body_memory"});
    if (options.tls) {
      auto& failures = metrics->CounterFamily(
          "http_server_tls_handshake_failures_total",
          "TLS connections closed before their first request: plain HTTP sent to the TLS port "
          "(plaintext, answered 400), a failed handshake (handshake: no or untrusted client "
          "certificate, no common protocol...), or none by the request timeout (timeout)",
          {"service", "reason"});
      tls_plaintext = &failures.With({options.service, "plaintext"});
      tls_failed = &failures.With({options.service, "handshake"});
      tls_timeout = &failures.With({options.service, "timeout"});
      auto& handshakes = metrics->CounterFamily(
          "http_server_tls_handshakes_total",
          "TLS handshakes completed: full (resumed=\"false\") or resuming an earlier session "
          "(resumed=\"true\": a ticket or session id, no certificate exchange)",
          {"service", "resumed"});
      tls_full = &handshakes.With({options.service, "false"});
      tls_resumed = &handshakes.With({options.service, "true"});
    }
    evicted_idle = &metrics
                        ->CounterFamily("http_server_idle_connections_evicted_total",
                                        "Idle keep-alive connections closed to make room for "
                                        "new ones near the connection limit",
                                        {"service"})
                        .With({options.service});
    refusal_full = Canned(
        Response::Error(503, "overloaded", "the server is at its connection limit; retry shortly"),
        "1");
    refusal_per_address =
        Canned(Response::Error(429, "too_many_connections",
                               "too many connections from your address; reuse or close some"),
               "1");
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

  // A whole answer (head and body) for a connection refused at accept.
  std::string Canned(Response response, std::string_view retry_after) const {
    response.headers.emplace_back("Retry-After", std::string(retry_after));
    std::string text;
    WriteHead(text, response, "-", options.instance_id, 11, false);
    return text + response.body;
  }

  Result<void> Start();
  Awaitable<void> AcceptLoop();
  // The admission of an accepted socket: false when it was refused (and
  // answered and closed here).
  bool Admit(Socket& socket, const ConnectionLimits::Key& key, bool& reserve);
  void OnAcceptError(const boost::system::error_code& ec);
  // Asks the I/O threads to close the connection idle the longest (one in all).
  void EvictIdle();
  // For a request on a connection in the reserved band: true when no more
  // connections than the normal band holds are busy (the rest are idle,
  // and being closed to make room: Admit asked), so that idle connections
  // never keep a request from being served.
  bool RoomForBusy() const {
    const auto busy = static_cast<std::int64_t>(limits.open()) - idle_count.load();
    return busy <= static_cast<std::int64_t>(limits.options().max - limits.options().reserved);
  }
  // One connection, from admission to close: its requests one after
  // another through the steps below.
  Awaitable<void> Session(Socket socket, Worker& worker, asio::ip::address peer,
                          ConnectionLimits::Key key, bool reserve);
  // Waits, idle, for the first bytes of the next request: false when the
  // connection ended instead (idle timeout, peer closed, shutdown; s.ec).
  Awaitable<bool> AwaitRequest(SessionState& s);
  void ResetRequest(SessionState& s);
  // The common request (whole in the buffer, no chunks, no Expect) through
  // the strict fast parser: false when it is not one (nothing consumed).
  bool TakeBuffered(SessionState& s, RequestFrame& frame);
  // Any other request, and whatever the fast parser defers, through Beast,
  // which also reports every error (in s.ec).
  Awaitable<void> ReadWithParser(SessionState& s, Clock::time_point start, RequestFrame& frame);
  // The answer to a request that failed to read with `ec`; nullopt when the
  // peer went away and there is nobody to answer.
  std::optional<ReadFailure> ReadFailureAnswer(const boost::system::error_code& ec,
                                               std::optional<Response>& rejection) const;
  Awaitable<void> AnswerReadFailure(SessionState& s, ReadFailure failure, Clock::time_point start);
  // Routes the request read whole and runs its handler (or answers 404,
  // 405, or 503 when a reserved-band connection is shed).
  Awaitable<Handled> Dispatch(SessionState& s);
  // Writes the response head into s.head; returns how many body bytes follow it.
  std::size_t WriteResponseHead(SessionState& s, const Response& response, unsigned version,
                                bool keep_alive);
  void EndRequest(SessionState& s, const Handled& handled, Clock::time_point start,
                  std::size_t bytes_in, std::size_t bytes_out);
  // After an error answer: see the comment inside.
  Awaitable<void> Linger(SessionState& s);
  // What the send batch still holds for the connection, or the rest of an
  // answer the socket took only in part, leaves within request_timeout
  // (detail::FinishWrites; s.ec when it did not).
  Awaitable<void> FinishSending(SessionState& s);
  // The TLS handshake of a new connection (options.tls): true when done.
  Awaitable<bool> StartTls(Connection& connection, const asio::ip::address& peer,
                           ConnectionEntry& entry, bool reserve);
  void Finish(Worker& worker, std::string_view route_label, std::size_t route_id,
              std::string_view method, std::string_view path, int status, Clock::time_point start,
              Clock::time_point end, const std::string& request_id, std::size_t bytes_in,
              std::size_t bytes_out, std::string_view traceparent = {},
              std::string_view parent_span_id = {});
  void StopThreads();

  Router router;
  ServerOptions options;
  MetricsRegistry* metrics;
  Family<Counter>* requests_family;
  Family<Histogram>* latency_family;
  Gauge* connections_gauge;
  Counter* connections_accepted;
  Gauge* in_flight_gauge;
  Counter* refused_full;
  Counter* refused_per_address;
  Counter* refused_descriptors;
  Counter* evicted_idle;
  Counter* refused_body_memory;
  Counter* tls_plaintext = nullptr;  // with options.tls only
  Counter* tls_failed = nullptr;
  Counter* tls_timeout = nullptr;
  Counter* tls_full = nullptr;
  Counter* tls_resumed = nullptr;
  std::string refusal_full, refusal_per_address;
  std::shared_ptr<spdlog::logger> access;
  // "level":"info","service":...,"instance":...: the fields every log line
  // of a service starts with (services/common/logging.h), made once.
  std::string access_identity;

  ConnectionLimits limits;
  detail::BodyBudget body_budget;
  std::atomic<std::int64_t> idle_count{0};  // connections waiting for a request
  std::atomic<int> evictions_wanted{0};
  std::size_t next_eviction = 0;  // acceptor thread only
  // A descriptor held in reserve: when accept fails for want of
  // descriptors, it is closed so that the pending connections can be taken
  // and closed (their clients learn at once instead of waiting in the
  // backlog), then opened again. Acceptor thread only, like the two below.
  int spare_fd = -1;
  Clock::time_point last_accept_log{};
  std::uint64_t accept_errors_unlogged = 0;

  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::uint16_t port = 0;
  bool started = false;
  bool stopped = false;
  std::atomic<bool> draining{false};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> accepted_connections{0};
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
  // One thread runs each io_context. With a single one, every socket is
  // only ever touched by that thread (closes from elsewhere are posted to
  // it), so the reactor's per-socket lock is not needed; the scheduler keeps
  // its lock, since other threads post to it (blocking pools, Stop()). With
  // more, the acceptor on thread 0 registers each accepted socket with
  // another thread's reactor, which needs that lock.
  const int hint = options.threads == 1 ? BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO : 1;
  for (std::size_t i = 0; i < options.threads; ++i)
    workers.push_back(std::make_unique<Worker>(hint));
  acceptor = std::make_unique<tcp::acceptor>(*workers[0]->ioc);
  tcp::endpoint endpoint(address, options.port);
  std::string where = options.host + ":" + std::to_string(options.port);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(1024, ec);
  // ::accept() in OnAcceptError must not block.
  if (!ec) acceptor->non_blocking(true, ec);
  if (ec) {
    acceptor.reset();
    workers.clear();
    return Fail(ErrorCode::kUnavailable, "cannot listen on " + where + ": " + ec.message());
  }
  port = acceptor->local_endpoint().port();
  spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (options.access_log) {
    access_identity = "\"level\":\"info\",\"service\":" + JsonQuote(options.service) +
                      ",\"instance\":" + JsonQuote(options.instance_id);
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
    tcp::endpoint peer;  // from accept() itself: no getpeername() per connection
    Socket socket = co_await acceptor->async_accept(*target.ioc, peer,
                                                    asio::redirect_error(http::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) break;
      // Out of file descriptors or similar: pause instead of spinning.
      OnAcceptError(ec);
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::redirect_error(http::use_awaitable, ec));
      continue;
    }
    const auto key = ConnectionLimits::KeyOf(peer.address());
    bool reserve = false;
    if (!Admit(socket, key, reserve)) continue;
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(*target.ioc, Session(std::move(socket), target, peer.address(), key, reserve),
                   asio::detached);
  }
}

bool Server::Impl::Admit(Socket& socket, const ConnectionLimits::Key& key, bool& reserve) {
  boost::system::error_code ec;
  const auto admit = limits.Open(key);
  if (admit == ConnectionLimits::Admit::kNormal) return true;
  // Near or at the limit, idle connections make room. (Not for a refusal
  // per address: the server has room, and the idle connection closed
  // would be anyone's.)
  if (admit != ConnectionLimits::Admit::kPerAddress) EvictIdle();
  if (admit == ConnectionLimits::Admit::kReserve) {
    reserve = true;
    return true;
  }
  // Refused: the answer goes out if the send buffer takes it now (it is
  // small); nothing waits for this client. At a TLS port only the close: a
  // TLS client cannot read a plaintext answer, and a handshake to send one
  // would spend on a refused client the CPU the refusal is there to save.
  const std::string& answer =
      admit == ConnectionLimits::Admit::kFull ? refusal_full : refusal_per_address;
  (admit == ConnectionLimits::Admit::kFull ? refused_full : refused_per_address)->Inc();
  if (!options.tls) {
    [[maybe_unused]] auto sent =
        ::send(socket.native_handle(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
  return false;
}

void Server::Impl::OnAcceptError(const boost::system::error_code& ec) {
  if (ec == asio::error::no_descriptors || ec.value() == ENFILE) {
    refused_descriptors->Inc();
    EvictIdle();  // descriptors for the next ones
    if (spare_fd >= 0) {
      // Every connection waiting now (bounded per round, so that the
      // thread goes on serving), not one per backoff: those behind the
      // first would wait in the backlog for as many backoffs.
      ::close(spare_fd);
      for (int i = 0; i < 1024; ++i) {
        const int fd = ::accept(acceptor->native_handle(), nullptr, nullptr);
        if (fd < 0) break;
        ::close(fd);
      }
      spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
  }
  // One line per interval, not one per failed accept: a descriptor
  // shortage fails every accept until it ends.
  const auto now = Clock::now();
  if (now - last_accept_log < kAcceptLogInterval) {
    ++accept_errors_unlogged;
    return;
  }
  log::Get().warn("http accept failed: {} ({} more failure(s) since the last report)", ec.message(),
                  accept_errors_unlogged);
  accept_errors_unlogged = 0;
  last_accept_log = now;
}

void Server::Impl::EvictIdle() {
  // At most one wanted per I/O thread: accepts while nothing is idle must
  // not pile up evictions for later.
  int wanted = evictions_wanted.load(std::memory_order_relaxed);
  while (wanted < static_cast<int>(workers.size()) &&
         !evictions_wanted.compare_exchange_weak(wanted, wanted + 1, std::memory_order_relaxed)) {
  }
  // Each I/O thread in turn, starting with the next: the first with an idle
  // connection closes its oldest, as long as an eviction is still wanted.
  for (std::size_t i = 0; i < workers.size(); ++i) {
    Worker* w = workers[(next_eviction + i) % workers.size()].get();
    asio::post(*w->ioc, [this, w] {
      if (evictions_wanted.load(std::memory_order_relaxed) <= 0) return;
      for (auto it = w->connections.rbegin(); it != w->connections.rend(); ++it) {
        // The list's back: idle the longest. One still sending its last
        // answer is not idle.
        if (!(*it)->idle || (*it)->connection->sending()) continue;
        if (evictions_wanted.fetch_sub(1, std::memory_order_relaxed) <= 0) {
          evictions_wanted.fetch_add(1, std::memory_order_relaxed);
          return;
        }
        boost::system::error_code ignored;
        (*it)->connection->socket().cancel(ignored);
        (*it)->SetIdle(false);  // not chosen twice
        evicted_idle->Inc();
        return;
      }
    });
  }
  ++next_eviction;
}

void Server::Impl::Finish(Worker& worker, std::string_view route_label, std::size_t route_id,
                          std::string_view method, std::string_view path, int status,
                          Clock::time_point start, Clock::time_point end,
                          const std::string& request_id, std::size_t bytes_in,
                          std::size_t bytes_out, std::string_view traceparent,
                          std::string_view parent_span_id) {
  double seconds = std::chrono::duration<double>(end - start).count();
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
    line += access_identity;
    line += ",\"type\":\"access\",\"method\":";
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
    // Trace fields: null for an answer given before the request was parsed.
    auto quoted_or_null = [&line](std::string_view key, std::string_view value) {
      line += key;
      if (value.empty())
        line += "null";
      else
        line += JsonQuote(value);
    };
    quoted_or_null(",\"trace_id\":", traceparent.size() >= 35 ? traceparent.substr(3, 32) : "");
    quoted_or_null(",\"span_id\":", traceparent.size() >= 52 ? traceparent.substr(36, 16) : "");
    quoted_or_null(",\"parent_id\":", parent_span_id);
    line += ",\"bytes_in\":";
    AppendNumber(line, bytes_in);
    line += ",\"bytes_out\":";
    AppendNumber(line, bytes_out);
    access->info(line);
  }
}

Awaitable<void> Server::Impl::Session(Socket socket, Worker& worker, asio::ip::address peer,
                                      ConnectionLimits::Key key, bool reserve) {
  auto connection = std::make_shared<Connection>(std::move(socket));
  connection->CancelOnTimeout();  // a timed-out request still gets its 408
  connection->set_max_buffered(options.header_limit);
  ConnectionEntry entry{connection.get(), &idle_count};
  worker.connections.push_front(&entry);
  auto self = worker.connections.begin();
  open_connections.fetch_add(1, std::memory_order_relaxed);
  accepted_connections.fetch_add(1, std::memory_order_relaxed);
  connections_gauge->Add(1);
  connections_accepted->Inc();
  struct Unlink {
    Impl* impl;
    Worker& worker;
    std::list<ConnectionEntry*>::iterator it;
    Connection& connection;
    const ConnectionLimits::Key& key;
    ConnectionEntry& entry;
    ~Unlink() {
      entry.SetIdle(false);
      connection.Close();
      impl->limits.Close(key);
      worker.connections.erase(it);
      impl->connections_gauge->Add(-1);
      impl->open_connections.fetch_sub(1, std::memory_order_relaxed);
    }
  } unlink{this, worker, self, *connection, key, entry};

  if (options.tls) {
    const bool secured = co_await StartTls(*connection, peer, entry, reserve);
    if (!secured) co_return;  // ~Unlink closes
  }
  SessionState s(*connection, worker, entry, self, reserve, body_budget);
  // The rest of a batched answer (send_batch.h) is bounded as its write was.
  connection->set_write_timeout(options.request_timeout);
  s.request.remote_address = peer.to_string();
  s.request.secure = connection->tls() != nullptr;
  bool linger = false;  // close gently after an error answer (the peer may still be sending)
  while (!draining.load(std::memory_order_relaxed)) {
    if (connection->buffer().size() == 0) {
      const bool arrived = co_await AwaitRequest(s);
      if (!arrived) break;
    }
    // A batched answer the socket took only in part is finished before the
    // next request is read: the request's deadline (408) must not cut it.
    if (connection->tail_pending()) {
      co_await FinishSending(s);
      if (s.ec) break;
    }
    const auto start = Clock::now();
    ResetRequest(s);
    RequestFrame frame;
    if (!TakeBuffered(s, frame)) co_await ReadWithParser(s, start, frame);
    if (s.ec) {
      auto failure = ReadFailureAnswer(s.ec, frame.rejection);
      if (!failure) break;  // the peer went away mid-request: nobody to answer
      linger = !failure->timed_out;
      co_await AnswerReadFailure(s, std::move(*failure), start);
      break;
    }

    // Before the handler, which may move the body away (the gateway does).
    const std::size_t bytes_in = s.request.body.size();
    Handled handled = co_await Dispatch(s);
    // Read after the handler: a drain that began meanwhile closes this connection.
    const bool keep_alive =
        frame.wants_keep_alive && !s.reserve && !draining.load(std::memory_order_relaxed);
    const std::size_t bytes_out = WriteResponseHead(s, handled.response, frame.version, keep_alive);
    // One gather write: the head and the body leave in one sendmsg. Only
    // a write that has to wait for the peer needs a deadline.
    std::array<asio::const_buffer, 2> out{asio::buffer(s.head),
                                          asio::buffer(handled.response.body.data(), bytes_out)};
    // An answer followed by a read joins the send batch (send_batch.h); the
    // last one is sent at once, before the connection closes.
    if (!(keep_alive ? detail::WriteSoon : detail::WriteNow)(*connection, out, s.ec)) {
      connection->SetDeadline(Clock::now() + options.request_timeout);
      co_await detail::WriteRest(*connection, out, s.ec);
    }
    s.now = Clock::now();
    EndRequest(s, handled, start, bytes_in, bytes_out);
    if (s.ec || !keep_alive) break;
    if (s.request.body.capacity() > kKeepBodyCapacity) std::string().swap(s.request.body);
    connection->ShrinkBuffer();
  }

  // Answers still in the send batch, or the rest of one the socket took
  // only in part, leave before the connection is shut down (the client may
  // have half-closed, or the server be draining).
  if (connection->sending() && !connection->timed_out()) co_await FinishSending(s);
  if (linger && connection->socket().is_open()) co_await Linger(s);
  connection->Shutdown();
  // ~Unlink closes the connection.
}

Awaitable<bool> Server::Impl::StartTls(Connection& connection, const asio::ip::address& peer,
                                       ConnectionEntry& entry, bool reserve) {
  std::string reason;
  // Until its first bytes the connection is idle, as a plain one waiting for
  // its first request: closed first to make room, so that connections that
  // send nothing cannot fill the server. In the reserved band the handshake
  // has the band's short time, as a plain first request does.
  entry.SetIdle(true);
  const auto deadline =
      Clock::now() + (reserve ? std::min<std::chrono::milliseconds>(options.request_timeout,
                                                                    kReserveRequestTimeout)
                              : options.request_timeout);
  const auto result = co_await detail::AcceptTls(connection, *options.tls, deadline, reason,
                                                 [&entry] { entry.SetIdle(false); });
  switch (result) {
    case detail::TlsAccept::kDone:
      (SSL_session_reused(connection.tls()->native_handle()) == 1 ? tls_resumed : tls_full)->Inc();
      co_return true;
    case detail::TlsAccept::kPlaintext: tls_plaintext->Inc(); break;
    case detail::TlsAccept::kFailed: tls_failed->Inc(); break;
    case detail::TlsAccept::kTimeout: tls_timeout->Inc(); break;
    case detail::TlsAccept::kClosed: break;
  }
  if (result != detail::TlsAccept::kClosed)
    log::Get().debug("TLS connection from {} closed before its first request: {}{}{}",
                     peer.to_string(), detail::TlsAcceptName(result), reason.empty() ? "" : ": ",
                     reason);
  co_return false;
}

Awaitable<void> Server::Impl::FinishSending(SessionState& s) {
  s.connection.SetDeadline(Clock::now() + options.request_timeout);
  co_await detail::FinishWrites(s.connection, s.ec);
}

Awaitable<bool> Server::Impl::AwaitRequest(SessionState& s) {
  s.entry.SetIdle(true);
  // Idle the longest at the back: eviction takes from there.
  s.worker.connections.splice(s.worker.connections.begin(), s.worker.connections, s.self);
  s.connection.SetDeadline(s.now + (s.reserve ? std::min<std::chrono::milliseconds>(
                                                    options.idle_timeout, kReserveRequestTimeout)
                                              : options.idle_timeout));
  auto& buffer = s.connection.buffer();
  // The last answer may still wait in the send batch: then the client
  // cannot have sent its next request (unless it pipelines, which the
  // batch's peek sees), and the recv() that would find nothing is skipped.
  s.connection.SkipReceiveUntilSent();
  std::size_t n = co_await s.connection.AsyncReadSome(
      buffer.prepare(4096), asio::redirect_error(http::use_awaitable, s.ec));
  s.entry.SetIdle(false);
  if (s.ec) co_return false;
  buffer.commit(n);
  co_return true;
}

void Server::Impl::ResetRequest(SessionState& s) {
  Request& request = s.request;
  request.method = request.target = request.path = request.query = request.route = {};
  request.headers.clear();
  request.params.clear();
  request.body.clear();
  s.body_holding.Release();
}

bool Server::Impl::TakeBuffered(SessionState& s, RequestFrame& frame) {
  if (!TakeSimpleRequest(s.connection.buffer(), options, s.header_store, s.request,
                         frame.wants_keep_alive))
    return false;
  if (!s.body_holding.Take(s.request.body.size())) {
    frame.rejection = BodyBudgetExceeded();
    s.ec = bhttp::error::body_limit;
  }
  return true;
}

Awaitable<void> Server::Impl::ReadWithParser(SessionState& s, Clock::time_point start,
                                             RequestFrame& frame) {
  Connection& connection = s.connection;
  auto& ec = s.ec;
  RequestParser parser(s.request, s.header_store, frame.rejection, s.body_holding);
  parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
  parser.body_limit(options.body_limit);
  connection.SetDeadline(start + (s.reserve ? std::min<std::chrono::milliseconds>(
                                                  options.request_timeout, kReserveRequestTimeout)
                                            : options.request_timeout));
  if (!detail::ParseBuffered(connection, parser, ReadUntil::kHeader, ec))
    co_await detail::ReadMore(connection, parser, ReadUntil::kHeader, ec);
  // Not inviting a body that would not fit: refused before it is sent.
  if (!ec && parser.expects_continue() && !parser.is_done() && parser.content_length() &&
      !body_budget.Available(static_cast<std::size_t>(*parser.content_length()))) {
    frame.rejection = BodyBudgetExceeded();
    ec = bhttp::error::body_limit;
  }
  if (!ec && parser.expects_continue() && !parser.is_done()) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    std::array<asio::const_buffer, 2> out{asio::buffer(kContinue.data(), kContinue.size()),
                                          asio::const_buffer()};
    if (!detail::WriteNow(connection, out, ec)) co_await detail::WriteRest(connection, out, ec);
    if (ec && connection.timed_out()) ec = beast::error::timeout;
  }
  if (!ec && !detail::ParseBuffered(connection, parser, ReadUntil::kMessage, ec))
    co_await detail::ReadMore(connection, parser, ReadUntil::kMessage, ec);
  if (!ec) {
    frame.version = parser.version();
    frame.wants_keep_alive = parser.keep_alive();
  }
}

std::optional<ReadFailure> Server::Impl::ReadFailureAnswer(
    const boost::system::error_code& ec, std::optional<Response>& rejection) const {
  if (rejection) return ReadFailure{std::move(*rejection)};
  if (ec == bhttp::error::body_limit) {
    return ReadFailure{
        Response::Error(413, "payload_too_large",
                        "request body exceeds " + std::to_string(options.body_limit) + " bytes")};
  }
  if (ec == bhttp::error::header_limit) {
    return ReadFailure{Response::Error(
        431, "header_too_large",
        "request header exceeds " + std::to_string(options.header_limit) + " bytes")};
  }
  if (ec == bhttp::error::buffer_overflow) {
    return ReadFailure{Response::Error(400, "chunk_line_too_long",
                                       "a chunk-size line or the trailer section exceeds " +
                                           std::to_string(options.header_limit) + " bytes")};
  }
  if (ec == beast::error::timeout) {
    // Too slow (slowloris ends here): told so if the socket takes the
    // answer at once, then closed without waiting for the client.
    return ReadFailure{Response::Error(408, "request_timeout",
                                       "request not received within " +
                                           std::to_string(options.request_timeout.count()) + " ms"),
                       /*timed_out=*/true};
  }
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
      ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
      ec == bhttp::error::partial_message) {
    return std::nullopt;
  }
  return ReadFailure{
      Response::Error(400, "bad_request", "malformed HTTP request: " + ec.message())};
}

Awaitable<void> Server::Impl::AnswerReadFailure(SessionState& s, ReadFailure failure,
                                                Clock::time_point start) {
  const Response& error = failure.response;
  std::string request_id = NewRequestId();
  WriteHead(s.head, error, request_id, options.instance_id, 11, false);
  s.connection.SetDeadline(Clock::now() + options.request_timeout);
  std::array<asio::const_buffer, 2> out{asio::buffer(s.head), asio::buffer(error.body)};
  if (!detail::WriteNow(s.connection, out, s.ec) && !failure.timed_out)
    co_await detail::WriteRest(s.connection, out, s.ec);
  Finish(s.worker, kUnmatched, 0, "-", "-", error.status, start, Clock::now(), request_id, 0,
         error.body.size());
  if (error.status == 503) refused_body_memory->Inc();  // the only 503 here: the budget
  s.body_holding.Release();  // before lingering: the body is no longer kept
}

Awaitable<Handled> Server::Impl::Dispatch(SessionState& s) {
  Request& request = s.request;
  // No deadline while the handler runs (it bounds its own calls).
  s.connection.SetDeadline(Connection::kNever);
  in_flight.fetch_add(1, std::memory_order_relaxed);
  in_flight_gauge->Add(1);
  std::string_view caller_id = request.Header("X-Request-Id");
  if (IsValidRequestId(caller_id))
    request.request_id.assign(caller_id);
  else
    detail::NewRequestIdInto(request.request_id);  // no allocation once the id has one
  detail::StartServerSpan(request.Header("traceparent"), request.traceparent,
                          request.parent_span_id);

  Handled handled;
  // A connection in the reserved band serves health checks and scrapes
  // only (and closes after one answer: see the keep-alive decision).
  const bool shed =
      s.reserve &&
      !(request.method == "GET" && (request.path == "/health" || request.path == "/metrics")) &&
      !RoomForBusy();
  auto match = shed ? RouteMatch{}  // kNotFound: not routed
                    : router.Match(request.method, request.path, request.params);
  switch (match.kind) {
    case RouteMatch::Kind::kFound:
      request.route = match.pattern;
      handled.route_label = match.pattern;
      handled.route_id = match.index + 1;
      try {
        handled.response = co_await (*match.handler)(request);
      } catch (const std::exception& e) {
        log::Get().error("handler {} {} failed (request id {}): {}", request.method, match.pattern,
                         request.request_id, e.what());
        handled.response = Response::Error(
            500, "internal", "internal error (request id " + request.request_id + ")");
      }
      break;
    case RouteMatch::Kind::kMethodNotAllowed:
      handled.response = Response::Error(405, "method_not_allowed",
                                         "method " + std::string(request.method) +
                                             " is not allowed here (allowed: " + match.allow + ")");
      handled.response.headers.emplace_back("Allow", match.allow);
      break;
    case RouteMatch::Kind::kNotFound:
      if (shed) {
        handled.response = Response::Error(503, "overloaded",
                                           "the server is at its connection limit; retry shortly");
        handled.response.headers.emplace_back("Retry-After", "1");
      } else {
        handled.response =
            Response::Error(404, "not_found", "no route for " + std::string(request.path));
      }
      break;
  }
  co_return handled;
}

std::size_t Server::Impl::WriteResponseHead(SessionState& s, const Response& response,
                                            unsigned version, bool keep_alive) {
  WriteHead(s.head, response, s.request.request_id, options.instance_id, version, keep_alive);
  // A HEAD answer has the head a GET would have, without the body.
  const bool with_body = HasBody(response.status) && s.request.method != "HEAD";
  return with_body ? response.body.size() : 0;
}

void Server::Impl::EndRequest(SessionState& s, const Handled& handled, Clock::time_point start,
                              std::size_t bytes_in, std::size_t bytes_out) {
  const Request& request = s.request;
  Finish(s.worker, handled.route_label, handled.route_id, request.method, request.path,
         handled.response.status, start, s.now, request.request_id, bytes_in, bytes_out,
         request.traceparent, request.parent_span_id);
  // Answered: the body's bytes go back now, not when the connection's next
  // request comes (an idle keep-alive connection would hold them for
  // idle_timeout).
  s.body_holding.Release();
  in_flight_gauge->Add(-1);
  in_flight.fetch_sub(1, std::memory_order_relaxed);
}

Awaitable<void> Server::Impl::Linger(SessionState& s) {
  // Half-close and drain what the peer still sends (briefly, bounded), so
  // the kernel does not answer its remaining bytes with a reset that could
  // destroy our error response before the peer reads it.
  Socket& sock = s.connection.socket();
  sock.shutdown(tcp::socket::shutdown_send, s.ec);
  s.connection.SetDeadline(Clock::now() + kLingerTime);
  std::size_t drained = 0;
  char sink[16384];
  while (drained < kLingerBytes) {
    std::size_t n = co_await sock.async_read_some(asio::buffer(sink),
                                                  asio::redirect_error(http::use_awaitable, s.ec));
    if (s.ec) break;
    drained += n;
  }
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
std::size_t Server::threads() const { return impl_->options.threads; }
bool Server::draining() const { return impl_->draining.load(); }
std::uint64_t Server::open_connections() const { return impl_->open_connections.load(); }
std::uint64_t Server::accepted_connections() const {
  return impl_->accepted_connections.load();
}
std::uint64_t Server::requests_in_flight() const { return impl_->in_flight.load(); }
std::size_t Server::body_bytes_held() const { return impl_->body_budget.used(); }

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
      for (ConnectionEntry* entry : w->connections) {
        boost::system::error_code ignored;
        if (!entry->idle) continue;
        // One still sending its last answer stops reading only (the read
        // ends as at the client's end of stream), so the answer still leaves.
        if (entry->connection->sending())
          entry->connection->socket().shutdown(tcp::socket::shutdown_receive, ignored);
        else
          entry->connection->socket().cancel(ignored);
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
