#include "registry/consul/consul_http.h"

#include <charconv>

#include "disco/http/client.h"

namespace disco::consul {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

// Consul answers are small, but a big catalog must not be cut off.
constexpr std::size_t kMaxBodyBytes = 64ull << 20;
// Heartbeats of many registrations share these; watches hold their own
// connection only while a query is in flight.
constexpr std::size_t kMaxIdleConnections = 8;
// Connections in flight at once, per lane: together below the agent's
// default limits.http_max_conns_per_client (200), leaving room for the
// other processes on the host. A process watching more than 128 services
// has the rest wait for a connection (up to one blocking query's wait).
constexpr std::size_t kMaxWatchConnections = 128;
constexpr std::size_t kMaxOtherConnections = 40;

std::string Describe(const HttpRequest& request) {
  return std::string(bhttp::to_string(request.method)) + " " + request.target;
}

std::optional<std::uint64_t> ConsulIndex(std::string_view text) {
  std::uint64_t value = 0;
  auto [ptr, err] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || err != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

void CancelSlot::Cancel() {
  interrupt_.Cancel();
  timer_.cancel();
  if (wake_) wake_();
}

asio::awaitable<void> CancelSlot::Sleep(std::chrono::milliseconds duration) {
  if (cancelled()) co_return;
  timer_.expires_after(duration);
  boost::system::error_code ec;
  co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
}

HttpClient::HttpClient(asio::io_context& io, const std::vector<HostPort>& agents,
                       std::string token, std::string url,
                       std::chrono::milliseconds connect_timeout, std::shared_ptr<tls::Config> tls)
    : io_(io),
      token_(std::move(token)),
      url_(std::move(url)),
      connect_timeout_(connect_timeout),
      tls_(std::move(tls)),
      transport_(http::detail::TransportOptions{.max_idle_per_endpoint = kMaxIdleConnections,
                                                .response_limit = kMaxBodyBytes,
                                                .user_agent = "disco"}),
      watch_lane_(kMaxWatchConnections),
      other_lane_(kMaxOtherConnections) {
  for (const auto& agent : agents) addresses_.push_back(agent.ToString());
}

std::string HttpClient::What(std::size_t agent) const {
  if (addresses_.size() < 2) return url_;
  return url_ + " (agent " + addresses_.at(agent) + ")";
}

void HttpClient::CloseIdle() { transport_.CloseIdle(io_); }

// GCC 12 reports asio's coroutine frame operator delete as mismatched with
// its operator new (a false positive on the frame allocator, GCC PR 103485).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<Result<HttpResponse>> HttpClient::Send(HttpRequest request, CancelSlot* slot,
                                                       std::size_t agent) {
  CountRequest(request.kind);
  const std::string& address = addresses_.at(agent);
  if (slot && slot->cancelled())
    co_return Fail(ErrorCode::kCancelled, url_ + ": request cancelled");
  const std::string method(bhttp::to_string(request.method));
  http::ClientRequest head;
  head.method = method;
  if (!token_.empty()) head.headers.emplace_back("X-Consul-Token", token_);
  if (request.method != bhttp::verb::get || !request.body.empty())
    head.content_type = "application/json";
  head.body = std::move(request.body);  // its size is the Content-Length
  const std::string wire = transport_.SerializeHead(head, address, request.target);
  auto& lane = request.kind == RequestKind::kWatch ? watch_lane_ : other_lane_;
  const auto permit = co_await lane.Acquire(slot);
  if (!permit.granted()) co_return Fail(ErrorCode::kCancelled, url_ + ": request cancelled");

  const auto started = Clock::now();
  http::detail::ExchangeControl control{.connect_deadline = started + connect_timeout_,
                                        .interrupt = slot ? &slot->interrupt_ : nullptr,
                                        .tls = tls_.get()};
  http::detail::AttemptResult result;
  // The transport runs on the io_context's own executor type; this backend's
  // coroutines on any_io_executor: one co_spawn bridges the two, on the
  // same thread.
  co_await asio::co_spawn(io_.get_executor(),
                          transport_.RoundTrip(wire, head.body, method, address, started,
                                               started + request.timeout, result, &control),
                          asio::use_awaitable);
  if (!result.answered) {
    if (result.code == ErrorCode::kCancelled)
      co_return Fail(ErrorCode::kCancelled, url_ + ": request cancelled");
    std::string what = What(agent) + ": " + Describe(request) + ": ";
    const bool connect = result.outcome == CallOutcome::kConnectRefused ||
                         result.outcome == CallOutcome::kConnectFailed;
    if (result.code == ErrorCode::kTimeout ||
        (connect && result.error.find("timed out") != std::string::npos)) {
      const auto bound = connect ? connect_timeout_ : request.timeout;
      co_return Fail(ErrorCode::kTimeout, what + (connect ? "connect: " : "") +
                                              "no answer within " + std::to_string(bound.count()) +
                                              " ms");
    }
    co_return Fail(ErrorCode::kUnavailable, what + result.error);
  }
  HttpResponse response;
  response.status = result.response.status;
  response.index = ConsulIndex(result.response.Header("X-Consul-Index"));
  response.body = std::move(result.response.body);
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
  if (response.status == 500 && text.find("No path to datacenter") != std::string::npos) {
    code = ErrorCode::kInvalidArgument;
    message = url + ": unknown datacenter (" + message.substr(url.size() + 2) + ")";
  }
  return Error{code, std::move(message)};
}

}  // namespace disco::consul
