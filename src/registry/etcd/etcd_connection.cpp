#include "registry/etcd/etcd_connection.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

namespace disco::etcd {
namespace {

// Reconnect quickly after an outage: gRPC's defaults (1 s growing to 120 s)
// would leave a registrant dark for minutes after etcd comes back.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 1000;
// gRPC uses the "min reconnect backoff" as the floor of each connect
// attempt's timeout, not of the delay between attempts.
constexpr int kMinConnectTimeoutMs = 1000;
// HTTP/2 keepalive on busy connections finds a dead peer (half-open TCP) even
// when no call is waiting for an answer. etcd's --grpc-keepalive-min-time
// defaults to 5 s and it closes connections that ping more often.
constexpr int kKeepaliveTimeMs = 10000;
constexpr int kKeepaliveTimeoutMs = 5000;
// How long a call waits for an immediate reconnection attempt to an endpoint
// that failed before, until it gives up on it for now (kUnavailable).
constexpr auto kRetryWindow = std::chrono::milliseconds(300);
// The shortest per-try deadline: a loaded machine answers slower than a LAN.
constexpr auto kMinPerTry = std::chrono::milliseconds(250);

bool IsInvalidToken(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
         status.error_message().find("invalid auth token") != std::string::npos;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// tls::Config checked the files already; gRPC takes the PEM text once, so
// a rotated certificate reaches etcd connections only when the registry is
// made again (gRPC 1.51's file-watching TlsCredentials would re-read them,
// but abort the process when a server goes away: grpc/grpc#34683). No CA
// file: gRPC's own roots (the system's). gRPC checks the dialled host or IP.
std::shared_ptr<grpc::ChannelCredentials> Credentials(const tls::Config* tls) {
  if (tls == nullptr) return grpc::InsecureChannelCredentials();
  const auto& files = tls->files();
  grpc::SslCredentialsOptions options;
  if (!files.ca_file.empty()) options.pem_root_certs = ReadAll(files.ca_file);
  if (!files.cert_file.empty()) {
    options.pem_cert_chain = ReadAll(files.cert_file);
    options.pem_private_key = ReadAll(files.key_file);
  }
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kMinConnectTimeoutMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Without this gRPC stops pinging after two pings on a quiet watch stream.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A Range over a large service can exceed gRPC's 4 MiB default; etcd itself
  // sends responses of any size.
  args.SetMaxReceiveMessageSize(-1);
  // Our calls fail over and retry themselves; gRPC's own retry filter
  // (1.51) aborts the process on a TLS connection a restarted etcd closed
  // mid-call (absl::optional<grpc_status_code> not engaged, grpc/grpc#34683;
  // the etcd-tls conformance case hit it).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return grpc::CreateCustomChannel(target, credentials, args);
}

}  // namespace

bool CallCanceller::Attach(grpc::ClientContext* context) {
  std::lock_guard lock(mu_);
  if (cancelled_) return false;
  context_ = context;
  return true;
}

void CallCanceller::Detach() {
  std::lock_guard lock(mu_);
  context_ = nullptr;
}

void CallCanceller::Cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool CallCanceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

EtcdConnection::EtcdConnection(const RegistryUrl& url, std::string redacted_url,
                               const RegistryOptions& options, const tls::Config* tls)
    : url_(std::move(redacted_url)),
      request_timeout_(options.request_timeout),
      default_per_try_(std::max<std::chrono::milliseconds>(
          kMinPerTry, options.request_timeout / static_cast<std::int64_t>(std::max<std::size_t>(
                                                    url.endpoints.size(), 1)))),
      user_(url.params.contains("user") ? url.params.at("user") : std::string()),
      password_(url.params.contains("password") ? url.params.at("password") : std::string()) {
  const auto credentials = Credentials(tls);
  for (const auto& endpoint : url.endpoints) {
    auto target = endpoint.ToString();
    auto channel = MakeChannel(target, credentials);
    Stubs stubs;
    stubs.kv = etcdserverpb::KV::NewStub(channel);
    stubs.lease = etcdserverpb::Lease::NewStub(channel);
    stubs.watch = etcdserverpb::Watch::NewStub(channel);
    stubs.auth = etcdserverpb::Auth::NewStub(channel);
    stubs_.push_back(std::move(stubs));
    channels_.push_back(std::move(channel));
    endpoint_names_.push_back(std::move(target));
  }
}

Error EtcdConnection::ToError(const grpc::Status& status, std::size_t index) const {
  std::string message = "etcd " + endpoint_names_.at(index) + ": " + status.error_message();
  const auto& text = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return {ErrorCode::kUnavailable, std::move(message)};
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return {ErrorCode::kTimeout, std::move(message) + " (no answer within the request timeout)"};
    case grpc::StatusCode::CANCELLED:
      return {ErrorCode::kCancelled, std::move(message)};
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return {ErrorCode::kPermissionDenied, std::move(message)};
    case grpc::StatusCode::NOT_FOUND:
      return {ErrorCode::kNotFound, std::move(message)};
    case grpc::StatusCode::INVALID_ARGUMENT:
      // etcd reports a missing or wrong user/password as InvalidArgument.
      if (text.find("user name") != std::string::npos ||
          text.find("authentication failed") != std::string::npos ||
          text.find("auth") != std::string::npos) {
        return {ErrorCode::kPermissionDenied, std::move(message)};
      }
      return {ErrorCode::kInternal, std::move(message)};
    default:
      return {ErrorCode::kInternal, std::move(message)};
  }
}

std::string EtcdConnection::CachedToken() {
  std::lock_guard lock(auth_mu_);
  return token_;
}

void EtcdConnection::ForgetToken(const std::string& token) {
  std::lock_guard lock(auth_mu_);
  if (token_ == token) token_.clear();
}

Result<void> EtcdConnection::AddAuth(grpc::ClientContext& context, std::size_t index,
                                     const CallOptions& options) {
  if (user_.empty()) return {};
  std::string token = CachedToken();
  if (token.empty()) {
    // Concurrent callers may each authenticate once; the last token wins and
    // every one of them stays valid, so no lock is held across the call.
    grpc::ClientContext auth_context;
    auth_context.set_deadline(ToGrpcDeadline(options.deadline));
    if (options.canceller != nullptr && !options.canceller->Attach(&auth_context)) {
      return Fail(ErrorCode::kCancelled, "etcd " + endpoint_names_[index] + ": cancelled");
    }
    etcdserverpb::AuthenticateRequest request;
    request.set_name(user_);
    request.set_password(password_);
    etcdserverpb::AuthenticateResponse response;
    auto status = stubs_[index].auth->Authenticate(&auth_context, request, &response);
    if (options.canceller != nullptr) options.canceller->Detach();
    if (!status.ok()) {
      auto error = ToError(status, index);
      error.message = "authenticating as '" + user_ + "': " + error.message;
      return std::unexpected(std::move(error));
    }
    token = response.token();
    std::lock_guard lock(auth_mu_);
    token_ = token;
  }
  context.AddMetadata("token", token);
  return {};
}

void EtcdConnection::AwaitConnectivity(std::size_t index, Clock::time_point deadline,
                                       CallCanceller* canceller) {
  // Short waits, so that a cancellation is noticed within one of them.
  constexpr auto kStep = std::chrono::milliseconds(50);
  auto& channel = *channels_[index];
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) return;
  // From IDLE the channel reports the outcome of the attempt this starts. In
  // TRANSIENT_FAILURE it stays there until an attempt succeeds, so a failed
  // retry is invisible: skip the backoff to retry now, and give the attempt
  // a short window to succeed (a loopback or LAN connect takes milliseconds).
  bool attempted = state != GRPC_CHANNEL_TRANSIENT_FAILURE;
  if (!attempted) {
    grpc::experimental::ChannelResetConnectionBackoff(&channel);
    deadline = std::min(deadline, Clock::now() + kRetryWindow);
  }
  while (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_SHUTDOWN) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && attempted) return;
    auto now = Clock::now();
    if (now >= deadline || (canceller != nullptr && canceller->cancelled())) return;
    if (channel.WaitForStateChange(state, ToGrpcDeadline(std::min(deadline, now + kStep)))) {
      state = channel.GetState(/*try_to_connect=*/true);
      if (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) attempted = true;
    }
  }
}

Result<void> EtcdConnection::Invoke(const Attempt& attempt, const CallOptions& options) {
  const std::size_t count = stubs_.size();
  const auto per_try = options.per_try.count() > 0 ? options.per_try : default_per_try_;
  std::optional<Error> last_error;
  bool retried_auth = false;
  // Endpoints whose try ran into its per-try deadline: later rounds of this
  // call skip them (unless every endpoint hung), so that a hung member costs
  // one try, not one per round.
  std::vector<bool> hung_here(count, false);
  while (true) {
    const std::size_t first = current_.load(std::memory_order_relaxed) % count;
    // Whether another round may succeed: some member was hung or electing,
    // as opposed to every endpoint refusing (a dead cluster fails fast).
    bool worth_another_round = false;
    for (std::size_t tried = 0; tried < count;) {
      const std::size_t index = (first + tried) % count;
      if (options.canceller != nullptr && options.canceller->cancelled()) {
        return Fail(ErrorCode::kCancelled, "etcd " + endpoint_names_[index] + ": cancelled");
      }
      if (Clock::now() >= options.deadline && last_error) return std::unexpected(*last_error);
      if (hung_here[index] &&
          std::find(hung_here.begin(), hung_here.end(), false) != hung_here.end()) {
        ++tried;
        continue;
      }
      CallOptions try_options = options;
      if (count > 1) try_options.deadline = std::min(options.deadline, Clock::now() + per_try);
      AwaitConnectivity(index, try_options.deadline, options.canceller);
      grpc::ClientContext context;
      context.set_deadline(ToGrpcDeadline(try_options.deadline));
      if (auto ok = AddAuth(context, index, try_options); !ok) {
        const auto code = ok.error().code;
        if (code != ErrorCode::kUnavailable && (code != ErrorCode::kTimeout || count == 1))
          return ok;
        worth_another_round |= code == ErrorCode::kTimeout;
        last_error = ok.error();
        ++tried;
        continue;
      }
      if (options.canceller != nullptr && !options.canceller->Attach(&context)) {
        return Fail(ErrorCode::kCancelled, "etcd " + endpoint_names_[index] + ": cancelled");
      }
      grpc::Status status = attempt(stubs_[index], context);
      if (options.canceller != nullptr) options.canceller->Detach();
      if (status.ok()) {
        current_.store(index, std::memory_order_relaxed);
        return {};
      }
      if (!user_.empty() && IsInvalidToken(status) && !retried_auth) {
        // Simple tokens expire after --auth-token-ttl of disuse: log in again once.
        ForgetToken(CachedToken());
        retried_auth = true;
        continue;
      }
      last_error = ToError(status, index);
      const bool unready = IsMemberUnready(status);
      // A try cut by its per-try deadline: this member is hung (or slow).
      const bool hung = count > 1 && status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE && !unready && !hung) {
        return std::unexpected(*last_error);
      }
      worth_another_round |= unready || hung;
      if (hung) hung_here[index] = true;
      // The next call starts at the next endpoint, and this one tries it now
      // if time is left.
      current_.store((index + 1) % count, std::memory_order_relaxed);
      ++tried;
    }
    if (!worth_another_round || count == 1) break;
    // Every member failed but some may recover within the deadline (an
    // election takes about one election timeout): pause briefly, go round.
    constexpr auto kRoundPause = std::chrono::milliseconds(100);
    const auto now = Clock::now();
    if (now + kRoundPause >= options.deadline) break;
    std::this_thread::sleep_for(kRoundPause);
  }
  if (last_error) return std::unexpected(*last_error);
  return Fail(ErrorCode::kTimeout, "etcd " + url_ + ": no answer within the request timeout");
}

Result<etcdserverpb::RangeResponse> EtcdConnection::Range(const etcdserverpb::RangeRequest& request,
                                                          const CallOptions& options) {
  etcdserverpb::RangeResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.kv->Range(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<etcdserverpb::PutResponse> EtcdConnection::Put(const etcdserverpb::PutRequest& request,
                                                      const CallOptions& options) {
  etcdserverpb::PutResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.kv->Put(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<etcdserverpb::DeleteRangeResponse> EtcdConnection::DeleteRange(
    const etcdserverpb::DeleteRangeRequest& request, const CallOptions& options) {
  etcdserverpb::DeleteRangeResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.kv->DeleteRange(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<etcdserverpb::LeaseGrantResponse> EtcdConnection::LeaseGrant(
    const etcdserverpb::LeaseGrantRequest& request, const CallOptions& options) {
  etcdserverpb::LeaseGrantResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.lease->LeaseGrant(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  if (!response.error().empty()) {
    return Fail(ErrorCode::kInternal, "etcd " + url_ + ": lease grant: " + response.error());
  }
  return response;
}

Result<etcdserverpb::LeaseRevokeResponse> EtcdConnection::LeaseRevoke(
    const etcdserverpb::LeaseRevokeRequest& request, const CallOptions& options) {
  etcdserverpb::LeaseRevokeResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.lease->LeaseRevoke(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<etcdserverpb::LeaseTimeToLiveResponse> EtcdConnection::LeaseTimeToLive(
    const etcdserverpb::LeaseTimeToLiveRequest& request, const CallOptions& options) {
  etcdserverpb::LeaseTimeToLiveResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.lease->LeaseTimeToLive(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<etcdserverpb::LeaseKeepAliveResponse> EtcdConnection::KeepAliveOnce(
    std::int64_t lease_id, const CallOptions& options) {
  etcdserverpb::LeaseKeepAliveResponse response;
  auto ok = Invoke(
      [&](Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        // A stream per round trip (as `etcdctl lease keep-alive --once` does):
        // each one carries the call deadline, so a hung etcd shows up as a
        // timeout instead of a keep-alive that silently stops.
        auto stream = stubs.lease->LeaseKeepAlive(&context);
        etcdserverpb::LeaseKeepAliveRequest request;
        request.set_id(lease_id);
        if (!stream->Write(request) || !stream->Read(&response)) {
          auto status = stream->Finish();
          if (!status.ok()) return status;
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed early");
        }
        stream->WritesDone();
        (void)stream->Finish();  // the answer is in; how the stream ends does not matter
        return grpc::Status::OK;
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  return response;
}

Result<EtcdConnection::StreamTarget> EtcdConnection::PrepareStream(grpc::ClientContext& context,
                                                                   const CallOptions& options) {
  const std::size_t count = stubs_.size();
  std::size_t index = current_.load(std::memory_order_relaxed) % count;
  if (count > 1) {
    // The first endpoint whose channel becomes ready within a per-try
    // deadline: a hung member's connection attempt never completes.
    const auto per_try = options.per_try.count() > 0 ? options.per_try : default_per_try_;
    for (std::size_t tried = 0; tried < count; ++tried) {
      index = (current_.load(std::memory_order_relaxed)) % count;
      AwaitConnectivity(index, std::min(options.deadline, Clock::now() + per_try),
                        options.canceller);
      if (channels_[index]->GetState(false) == GRPC_CHANNEL_READY) break;
      std::size_t expected = index;
      current_.compare_exchange_strong(expected, (index + 1) % count, std::memory_order_relaxed);
    }
  } else {
    AwaitConnectivity(index, options.deadline, options.canceller);
  }
  if (auto ok = AddAuth(context, index, options); !ok) return std::unexpected(ok.error());
  return StreamTarget{&stubs_[index], index};
}

void EtcdConnection::ReportStreamFailure(std::size_t index, const grpc::Status& status) {
  if (IsInvalidToken(status)) ForgetToken(CachedToken());
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED || IsMemberUnready(status)) {
    std::size_t expected = index;
    current_.compare_exchange_strong(expected, (index + 1) % stubs_.size(),
                                     std::memory_order_relaxed);
  }
}

bool IsMemberUnready(const grpc::Status& status) {
  const auto& text = status.error_message();
  for (const char* reason : {"no leader", "leader changed", "raft proposal dropped",
                             "request timed out", "not capable", "context deadline exceeded"}) {
    if (text.find(reason) != std::string::npos) return true;
  }
  return false;
}

bool IsLeaseNotFound(const Error& error) {
  return error.code == ErrorCode::kNotFound ||
         error.message.find("requested lease not found") != std::string::npos;
}

}  // namespace disco::etcd
