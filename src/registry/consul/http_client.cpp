#include "registry/consul/http_client.h"

#include <charconv>

namespace disco::consul {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

// Consul answers are small, but a big catalog must not be cut off.
constexpr std::uint64_t kMaxBodyBytes = 64ull << 20;
// Bytes waiting unparsed in a connection's buffer: Beast's parser takes
// body bytes as they come, so only a head, a chunk-size line or a trailer
// section waits here, and an agent (or anything posing as one) that never
// ends one must not grow the buffer without limit (read: buffer_overflow).
constexpr std::size_t kMaxBufferedBytes = 1 << 20;
// Heartbeats of many registrations share these; watches hold their own
// connection only while a query is in flight.
constexpr std::size_t kMaxIdleConnections = 8;

std::string Describe(const HttpRequest& request) {
  return std::string(http::to_string(request.method)) + " " + request.target;
}

}  // namespace

// One keep-alive connection to the agent.
class Connection {
 public:
  explicit Connection(asio::io_context& io) : stream(io) {}
  void Close() {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    open = false;
  }

  beast::tcp_stream stream;
  beast::flat_buffer buffer{kMaxBufferedBytes};
  bool open = false;
};

void CancelSlot::Cancel() {
  cancelled_ = true;
  timer_.cancel();
  if (active_) active_->Close();
}

asio::awaitable<void> CancelSlot::Sleep(std::chrono::milliseconds duration) {
  if (cancelled_) co_return;
  timer_.expires_after(duration);
  beast::error_code ec;
  co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

HttpClient::HttpClient(asio::io_context& io, HostPort agent, std::string token, std::string url,
                       std::chrono::milliseconds connect_timeout)
    : io_(io),
      agent_(std::move(agent)),
      token_(std::move(token)),
      url_(std::move(url)),
      connect_timeout_(connect_timeout) {}

HttpClient::~HttpClient() { CloseIdle(); }

void HttpClient::CloseIdle() {
  for (auto& connection : idle_) connection->Close();
  idle_.clear();
}

asio::awaitable<Result<HttpResponse>> HttpClient::Send(HttpRequest request, CancelSlot* slot) {
  CountRequest(request.kind);
  for (int attempt = 0;; ++attempt) {
    if (slot && slot->cancelled())
      co_return Fail(ErrorCode::kCancelled, url_ + ": request cancelled");
    std::shared_ptr<Connection> connection;
    if (!idle_.empty()) {
      connection = std::move(idle_.back());
      idle_.pop_back();
    } else {
      connection = std::make_shared<Connection>(io_);
    }
    bool retryable = false;
    auto result = co_await SendOnce(request, connection, slot, &retryable);
    if (result || !retryable || attempt > 0) co_return result;
    // A reused connection that the agent had closed (idle timeout, restart):
    // the request never reached it, so one more try on a new connection.
  }
}

// GCC 12 reports asio's coroutine frame operator delete as mismatched with
// its operator new (a false positive on the frame allocator, GCC PR 103485).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<Result<HttpResponse>> HttpClient::SendOnce(const HttpRequest& request,
                                                           std::shared_ptr<Connection> connection,
                                                           CancelSlot* slot, bool* retryable) {
  const bool reused = connection->open;
  if (slot) slot->active_ = connection;
  struct ClearActive {
    CancelSlot* slot;
    ~ClearActive() {
      if (slot) slot->active_.reset();
    }
  } clear_active{slot};

  beast::error_code ec;
  auto fail = [&](std::string_view step) -> Result<HttpResponse> {
    connection->Close();
    if (slot && slot->cancelled()) return Fail(ErrorCode::kCancelled, url_ + ": request cancelled");
    std::string what = url_ + ": " + Describe(request) + ": " + std::string(step) + ": ";
    if (ec == beast::error::timeout) {
      auto bound = step == "connect" ? connect_timeout_ : request.timeout;
      return Fail(ErrorCode::kTimeout,
                  what + "no answer within " + std::to_string(bound.count()) + " ms");
    }
    return Fail(ErrorCode::kUnavailable, what + ec.message());
  };

  if (!connection->open) {
    tcp::resolver resolver(io_);
    auto endpoints = co_await resolver.async_resolve(agent_.host, std::to_string(agent_.port),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("resolve " + agent_.host);
    if (slot && slot->cancelled()) co_return fail("connect");
    connection->stream.expires_after(connect_timeout_);
    co_await connection->stream.async_connect(endpoints,
                                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail("connect");
    connection->open = true;
    connection->buffer.clear();
  }

  http::request<http::string_body> req{request.method, request.target, 11};
  req.set(http::field::host, agent_.ToString());
  req.set(http::field::user_agent, "disco");
  req.keep_alive(true);
  if (!token_.empty()) req.set("X-Consul-Token", token_);
  if (request.method != http::verb::get || !request.body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = request.body;
    req.prepare_payload();
  }

  connection->stream.expires_after(request.timeout);
  co_await http::async_write(connection->stream, req,
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    *retryable = reused && ec != beast::error::timeout;
    co_return fail("write");
  }
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxBodyBytes);
  co_await http::async_read(connection->stream, connection->buffer, parser,
                            asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    // Nothing of the answer arrived on a connection we had used before: the
    // agent closed it in between, not in reaction to this request.
    *retryable = reused && ec != beast::error::timeout && !parser.got_some();
    co_return fail("read");
  }
  auto message = parser.release();
  HttpResponse response;
  response.status = static_cast<int>(message.result_int());
  if (auto it = message.find("X-Consul-Index"); it != message.end()) {
    std::uint64_t value = 0;
    auto text = it->value();
    auto [ptr, err] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (err == std::errc() && ptr == text.data() + text.size()) response.index = value;
  }
  response.body = std::move(message.body());
  if (message.keep_alive() && (!slot || !slot->cancelled())) {
    connection->stream.expires_never();
    if (idle_.size() < kMaxIdleConnections) {
      idle_.push_back(std::move(connection));
    } else {
      connection->Close();
    }
  } else {
    connection->Close();
  }
  co_return response;
}
#pragma GCC diagnostic pop

Error StatusError(const std::string& url, const HttpRequest& request,
                  const HttpResponse& response) {
  std::string text = response.body;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  if (text.size() > 300) text = text.substr(0, 300) + "...";
  std::string message =
      url + ": " + Describe(request) + ": HTTP " + std::to_string(response.status);
  if (!text.empty()) message += " " + text;
  ErrorCode code = ErrorCode::kUnavailable;
  if (response.status == 400) code = ErrorCode::kInvalidArgument;
  if (response.status == 401 || response.status == 403) code = ErrorCode::kPermissionDenied;
  if (response.status == 404) code = ErrorCode::kNotFound;
  return Error{code, std::move(message)};
}

}  // namespace disco::consul
