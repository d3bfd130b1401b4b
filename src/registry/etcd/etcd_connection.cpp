#include "registry/etcd/etcd_connection.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include "registry/etcd/etcd_test_hooks.h"
#include "util/log.h"

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

// tls::Config checked the files already; gRPC takes the PEM text, so a
// rotation makes the channels again (gRPC 1.51's file-watching
// TlsCredentials would re-read them, but abort the process when a server
// goes away: grpc/grpc#34683). No CA file: gRPC's own roots (the system's).
// gRPC checks the dialled host or IP. Null when a configured file reads
// empty (replaced between the check and this read): an empty CA would make
// gRPC trust the system's roots instead, an empty key send no certificate.
std::shared_ptr<grpc::ChannelCredentials> Credentials(const tls::Config* tls) {
  if (tls == nullptr) return grpc::InsecureChannelCredentials();
  const auto& files = tls->files();
  grpc::SslCredentialsOptions options;
  if (!files.ca_file.empty()) {
    options.pem_root_certs = ReadAll(files.ca_file);
    if (options.pem_root_certs.empty()) return nullptr;
  }
  if (!files.cert_file.empty()) {
    options.pem_cert_chain = ReadAll(files.cert_file);
    options.pem_private_key = ReadAll(files.key_file);
    if (options.pem_cert_chain.empty() || options.pem_private_key.empty()) return nullptr;
  }
  return grpc::SslCredentials(options);
}

// The largest answer read from etcd: 64 MiB, about 200,000 instances of
// one service. A larger one fails the call with a clear error.
constexpr int kMaxResponseBytes = 64 << 20;
std::atomic<int> g_max_response_bytes{kMaxResponseBytes};

std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    int max_response_bytes) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kMinConnectTimeoutMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Without this gRPC stops pinging after two pings on a quiet watch stream.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A Range over a large service can exceed gRPC's 4 MiB default, and etcd
  // sends responses of any size; a bound still (as the Consul backend's).
  args.SetMaxReceiveMessageSize(max_response_bytes);
  // Our calls fail over and retry themselves; gRPC's own retry filter
  // (1.51) aborts the process on a TLS connection a restarted etcd closed
  // mid-call (absl::optional<grpc_status_code> not engaged, grpc/grpc#34683;
  // the etcd-tls conformance case hit it).
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return grpc::CreateCustomChannel(target, credentials, args);
}

using DiscoveredHook = std::function<void(std::string_view, const std::vector<std::string>&)>;
std::mutex g_discovered_hook_mu;
DiscoveredHook g_discovered_hook;  // guarded by g_discovered_hook_mu

void RunDiscoveredHook(std::string_view url, const std::vector<std::string>& endpoints) {
  DiscoveredHook hook;
  {
    std::lock_guard lock(g_discovered_hook_mu);
    hook = g_discovered_hook;
  }
  if (hook) hook(url, endpoints);
}

}  // namespace

void SetMaxResponseBytesForTesting(int bytes) {
  g_max_response_bytes.store(bytes > 0 ? bytes : kMaxResponseBytes, std::memory_order_relaxed);
}

void SetEndpointsDiscoveredHookForTesting(DiscoveredHook hook) {
  std::lock_guard lock(g_discovered_hook_mu);
  g_discovered_hook = std::move(hook);
}

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
                               const RegistryOptions& options, std::shared_ptr<tls::Config> tls,
                               std::chrono::seconds auto_sync)
    : url_(std::move(redacted_url)),
      request_timeout_(options.request_timeout),
      tls_config_(std::move(tls)),
      tls_(tls_config_ != nullptr),
      max_response_bytes_(g_max_response_bytes.load(std::memory_order_relaxed)),
      user_(url.params.contains("user") ? url.params.at("user") : std::string()),
      password_(url.params.contains("password") ? url.params.at("password") : std::string()),
      auto_sync_(auto_sync) {
  std::lock_guard lock(set_mu_);
  credentials_ = Credentials(tls_config_.get());
  if (!credentials_) {
    // Only a file emptied since tls::Config::Load read it. Fail closed: roots
    // gRPC cannot load make every handshake fail (empty roots would mean the
    // system's).
    grpc::SslCredentialsOptions unusable;
    unusable.pem_root_certs = "no usable CA";
    credentials_ = grpc::SslCredentials(unusable);
  }
  credentials_generation_ = tls_config_ ? tls_config_->generation() : 0;
  auto seeds = std::make_shared<EndpointSet>();
  for (const auto& endpoint : url.endpoints) {
    seeds->endpoints.push_back(MakeEndpoint(endpoint.ToString()));
  }
  seeds_ = std::move(seeds);
  set_ = seeds_;
  if (auto_sync_.count() > 0) sync_thread_ = std::thread([this] { SyncLoop(); });
}

EtcdConnection::~EtcdConnection() {
  if (!sync_thread_.joinable()) return;
  {
    std::lock_guard lock(sync_mu_);
    stopping_ = true;
  }
  sync_cv_.notify_all();
  sync_canceller_.Cancel();
  sync_thread_.join();
}

std::shared_ptr<const Endpoint> EtcdConnection::MakeEndpoint(const std::string& target) const {
  auto endpoint = std::make_shared<Endpoint>();
  endpoint->name = target;
  endpoint->channel = MakeChannel(target, credentials_, max_response_bytes_);
  endpoint->stubs.kv = etcdserverpb::KV::NewStub(endpoint->channel);
  endpoint->stubs.lease = etcdserverpb::Lease::NewStub(endpoint->channel);
  endpoint->stubs.watch = etcdserverpb::Watch::NewStub(endpoint->channel);
  endpoint->stubs.auth = etcdserverpb::Auth::NewStub(endpoint->channel);
  endpoint->stubs.cluster = etcdserverpb::Cluster::NewStub(endpoint->channel);
  return endpoint;
}

std::chrono::milliseconds EtcdConnection::DefaultPerTry(std::size_t endpoints) const {
  return std::max<std::chrono::milliseconds>(
      kMinPerTry,
      request_timeout_ / static_cast<std::int64_t>(std::max<std::size_t>(endpoints, 1)));
}

std::shared_ptr<const EndpointSet> EtcdConnection::Endpoints() const {
  const_cast<EtcdConnection*>(this)->RotateIfFilesChanged();
  std::lock_guard lock(set_mu_);
  return set_;
}

void EtcdConnection::RotateIfFilesChanged() {
  if (!tls_config_ || tls_config_->check_interval().count() <= 0) return;
  std::unique_lock check(rotate_mu_, std::try_to_lock);
  if (!check.owns_lock()) return;  // another call is checking
  const auto now = Clock::now();
  if (now < next_file_check_) return;
  next_file_check_ = now + tls_config_->check_interval();
  auto reloaded = tls_config_->ReloadIfChanged();
  if (!reloaded) {
    // Reported once per change of the files; the channels keep the old ones.
    log::Get().warn("etcd {}: TLS files changed but cannot be used, keeping the old: {}", url_,
                    reloaded.error().message);
    return;
  }
  const auto generation = tls_config_->generation();
  // Read outside the set's lock: every call's Endpoints() takes it.
  auto credentials = Credentials(tls_config_.get());
  std::lock_guard lock(set_mu_);
  if (generation == credentials_generation_) return;
  credentials_generation_ = generation;
  if (!credentials) {
    log::Get().warn("etcd {}: TLS files changed but one reads empty now, keeping the old", url_);
    return;
  }
  credentials_ = std::move(credentials);
  auto remake = [&](const EndpointSet& set) {
    auto fresh = std::make_shared<EndpointSet>();
    for (const auto& endpoint : set.endpoints)
      fresh->endpoints.push_back(MakeEndpoint(endpoint->name));
    fresh->current.store(set.current.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return fresh;
  };
  const bool seeded = set_ == seeds_;
  seeds_ = remake(*seeds_);
  set_ = seeded ? seeds_ : remake(*set_);
  log::Get().info("etcd {}: TLS files changed; new connections use them", url_);
}

std::vector<std::string> EtcdConnection::EndpointNames() const {
  std::vector<std::string> names;
  for (const auto& endpoint : Endpoints()->endpoints) names.push_back(endpoint->name);
  return names;
}

void EtcdConnection::NoteFailover() {
  if (auto_sync_.count() == 0) return;
  {
    std::lock_guard lock(sync_mu_);
    sync_soon_ = true;
  }
  sync_cv_.notify_all();
}

void EtcdConnection::SyncLoop() {
  // A failover asks for a sync at once, but a flapping member must not turn
  // that into a MemberList storm.
  constexpr auto kMinGap = std::chrono::seconds(1);
  std::unique_lock lock(sync_mu_);
  // The first sync runs at once: a URL naming one member learns the others
  // before that member can fail.
  auto last = Clock::now() - auto_sync_;
  while (true) {
    sync_cv_.wait_until(lock, last + auto_sync_, [&] { return stopping_ || sync_soon_; });
    if (stopping_) return;
    if (sync_cv_.wait_until(lock, last + kMinGap, [&] { return stopping_; })) return;
    sync_soon_ = false;
    lock.unlock();
    auto synced = Sync({Deadline(), &sync_canceller_});
    if (!synced && synced.error().code != ErrorCode::kCancelled) {
      log::Get().debug("etcd {}: member discovery failed: {}", url_, synced.error().ToString());
    }
    last = Clock::now();
    lock.lock();
  }
}

Result<std::size_t> EtcdConnection::Sync(const CallOptions& options) {
  etcdserverpb::MemberListRequest request;
  etcdserverpb::MemberListResponse response;
  auto ok = Invoke(
      [&](const Stubs& stubs, grpc::ClientContext& context) {
        response.Clear();
        return stubs.cluster->MemberList(&context, request, &response);
      },
      options);
  if (!ok) return std::unexpected(ok.error());
  std::vector<ListedMember> members;
  members.reserve(static_cast<std::size_t>(response.members_size()));
  for (const auto& member : response.members()) {
    members.push_back({member.id(),
                       member.name(),
                       member.islearner(),
                       {member.clienturls().begin(), member.clienturls().end()}});
  }
  auto [targets, answered, truncated] =
      SelectMemberEndpoints(members, response.header().member_id(), tls_);
  std::unique_lock lock(set_mu_);
  // Never shrink to nothing: a list without a usable URL changes nothing.
  if (targets.empty()) return set_->endpoints.size();
  auto known = [&](const std::string& name) -> std::shared_ptr<const Endpoint> {
    for (const auto* set : {set_.get(), seeds_.get()}) {
      for (const auto& endpoint : set->endpoints) {
        if (endpoint->name == name) return endpoint;
      }
    }
    return nullptr;
  };
  std::vector<std::string> now;
  for (const auto& endpoint : set_->endpoints) now.push_back(endpoint->name);
  std::vector<std::string> sorted_targets = targets;
  std::sort(now.begin(), now.end());
  std::sort(sorted_targets.begin(), sorted_targets.end());
  if (now == sorted_targets) return targets.size();
  if (sorted_targets == dead_list_ && Clock::now() < dead_until_) {
    // Every call found this list dead and went to the seeds (FallBackToSeeds):
    // installing it again would only send the next calls through it again.
    return set_->endpoints.size();
  }
  auto next = std::make_shared<EndpointSet>();
  for (const auto& target : targets) {
    auto endpoint = known(target);
    next->endpoints.push_back(endpoint ? std::move(endpoint) : MakeEndpoint(target));
  }
  next->current.store(answered, std::memory_order_relaxed);
  std::string names;
  for (const auto& target : targets) names += (names.empty() ? "" : ",") + target;
  if (truncated) {
    log::Get().warn("etcd {}: the member list names more than {} client URLs; using the first {}",
                    url_, kMaxDiscoveredEndpoints, kMaxDiscoveredEndpoints);
  }
  log::Get().info("etcd {}: members discovered, endpoints now {}", url_, names);
  set_ = std::move(next);
  lock.unlock();
  RunDiscoveredHook(url_, targets);
  return targets.size();
}

Error EtcdConnection::ToError(const grpc::Status& status, const std::string& endpoint) const {
  std::string message = "etcd " + endpoint + ": " + status.error_message();
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
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (text.find("larger than max") != std::string::npos) {
        return {ErrorCode::kMalformed, std::move(message) + " (disco reads answers of at most " +
                                           std::to_string(max_response_bytes_ >> 20) +
                                           " MiB from etcd)"};
      }
      return {ErrorCode::kUnavailable, std::move(message)};
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

Result<void> EtcdConnection::AddAuth(grpc::ClientContext& context, const Endpoint& endpoint,
                                     const CallOptions& options) {
  if (user_.empty()) return {};
  std::string token = CachedToken();
  if (token.empty()) {
    // Concurrent callers may each authenticate once; the last token wins and
    // every one of them stays valid, so no lock is held across the call.
    grpc::ClientContext auth_context;
    auth_context.set_deadline(ToGrpcDeadline(options.deadline));
    if (options.canceller != nullptr && !options.canceller->Attach(&auth_context)) {
      return Fail(ErrorCode::kCancelled, "etcd " + endpoint.name + ": cancelled");
    }
    etcdserverpb::AuthenticateRequest request;
    request.set_name(user_);
    request.set_password(password_);
    etcdserverpb::AuthenticateResponse response;
    auto status = endpoint.stubs.auth->Authenticate(&auth_context, request, &response);
    if (options.canceller != nullptr) options.canceller->Detach();
    if (!status.ok()) {
      auto error = ToError(status, endpoint.name);
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

void EtcdConnection::AwaitConnectivity(grpc::Channel& channel, Clock::time_point deadline,
                                       CallCanceller* canceller) {
  // Short waits, so that a cancellation is noticed within one of them.
  constexpr auto kStep = std::chrono::milliseconds(50);
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
  const auto set = Endpoints();
  const auto seeds = Seeds();
  bool fell_through = false;
  // A lone discovered member has no other member to hand a hung try to: it
  // gets half the time, so that if it hangs the URL's endpoints get the rest.
  const bool lone = set != seeds && set->endpoints.size() == 1;
  CallOptions first = options;
  if (lone) first.deadline = Clock::now() + (options.deadline - Clock::now()) / 2;
  auto result = InvokeOn(*set, attempt, first, fell_through);
  if (lone && !result && result.error().code == ErrorCode::kTimeout) fell_through = true;
  if (result || !fell_through || set == seeds || Clock::now() >= options.deadline) return result;
  // Every discovered member refused or hung: the URL's own endpoints may
  // still reach the cluster (members may have moved again).
  auto seeded = InvokeOn(*seeds, attempt, options, fell_through);
  if (!seeded) return result;
  FallBackToSeeds(set, seeds);
  return seeded;
}

std::shared_ptr<const EndpointSet> EtcdConnection::Seeds() const {
  std::lock_guard lock(set_mu_);  // a TLS rotation replaces the seeds too
  return seeds_;
}

void EtcdConnection::FallBackToSeeds(const std::shared_ptr<const EndpointSet>& failed,
                                     const std::shared_ptr<const EndpointSet>& seeds) {
  // Members that advertise client URLs this host cannot reach (a
  // --advertise-client-urls naming a private address, a port behind NAT, a
  // typo) fail every call while the seeds work: without this memory every
  // sync would install that list again and every call go through it first.
  constexpr auto kDeadListBackoff = std::chrono::minutes(5);
  std::vector<std::string> names;
  bool overlaps = false;  // a seed is in the failed list too
  for (const auto& endpoint : failed->endpoints) {
    names.push_back(endpoint->name);
    for (const auto& seed : seeds->endpoints) overlaps |= seed->name == endpoint->name;
  }
  std::sort(names.begin(), names.end());
  bool again = false;
  {
    std::lock_guard lock(set_mu_);
    if (set_ == failed) set_ = seeds;
    if (!overlaps) {
      again = names == dead_list_;
      dead_list_ = names;
      dead_until_ = Clock::now() + std::max<Clock::duration>(auto_sync_, kDeadListBackoff);
    }
  }
  if (overlaps) {
    // One address failed in the list and then answered as a seed: members
    // came back during the call (a restart), the list is usable and the
    // next sync may install it again.
    NoteFailover();
    return;
  }
  std::string joined;
  for (const auto& name : names) joined += (joined.empty() ? "" : ",") + name;
  // Once per list: it is a configuration error, not news every few minutes.
  if (again) {
    log::Get().debug("etcd {}: discovered endpoints {} still unreachable; using the URL's", url_,
                     joined);
  } else {
    log::Get().warn(
        "etcd {}: no discovered member answered at the client URLs the members advertise ({}), "
        "but the URL's own endpoints do: calls use those, and that list is not used again for "
        "{} min unless it changes. Check the members' --advertise-client-urls: they must be "
        "reachable from this host",
        url_, joined,
        std::chrono::duration_cast<std::chrono::minutes>(
            std::max<Clock::duration>(auto_sync_, kDeadListBackoff))
            .count());
  }
  // The next discovery starts from the seeds.
  NoteFailover();
}

Result<void> EtcdConnection::InvokeOn(const EndpointSet& set, const Attempt& attempt,
                                      const CallOptions& options, bool& fell_through) {
  fell_through = false;
  const auto& endpoints = set.endpoints;
  const std::size_t count = endpoints.size();
  const auto per_try = options.per_try.count() > 0 ? options.per_try : DefaultPerTry(count);
  std::optional<Error> last_error;
  bool retried_auth = false;
  // Endpoints whose try ran into its per-try deadline: later rounds of this
  // call skip them (unless every endpoint hung), so that a hung member costs
  // one try, not one per round.
  std::vector<bool> hung_here(count, false);
  while (true) {
    const std::size_t first = set.current.load(std::memory_order_relaxed) % count;
    // Whether another round may succeed: some member was hung or electing,
    // as opposed to every endpoint refusing (a dead cluster fails fast).
    bool worth_another_round = false;
    for (std::size_t tried = 0; tried < count;) {
      const std::size_t index = (first + tried) % count;
      const Endpoint& endpoint = *endpoints[index];
      if (options.canceller != nullptr && options.canceller->cancelled()) {
        return Fail(ErrorCode::kCancelled, "etcd " + endpoint.name + ": cancelled");
      }
      if (Clock::now() >= options.deadline && last_error) return std::unexpected(*last_error);
      if (hung_here[index] &&
          std::find(hung_here.begin(), hung_here.end(), false) != hung_here.end()) {
        ++tried;
        continue;
      }
      CallOptions try_options = options;
      if (count > 1) try_options.deadline = std::min(options.deadline, Clock::now() + per_try);
      AwaitConnectivity(*endpoint.channel, try_options.deadline, options.canceller);
      grpc::ClientContext context;
      context.set_deadline(ToGrpcDeadline(try_options.deadline));
      if (auto ok = AddAuth(context, endpoint, try_options); !ok) {
        const auto code = ok.error().code;
        if (code != ErrorCode::kUnavailable && (code != ErrorCode::kTimeout || count == 1))
          return ok;
        worth_another_round |= code == ErrorCode::kTimeout;
        last_error = ok.error();
        ++tried;
        continue;
      }
      if (options.canceller != nullptr && !options.canceller->Attach(&context)) {
        return Fail(ErrorCode::kCancelled, "etcd " + endpoint.name + ": cancelled");
      }
      grpc::Status status = attempt(endpoint.stubs, context);
      if (options.canceller != nullptr) options.canceller->Detach();
      if (status.ok()) {
        set.current.store(index, std::memory_order_relaxed);
        return {};
      }
      if (!user_.empty() && IsInvalidToken(status) && !retried_auth) {
        // Simple tokens expire after --auth-token-ttl of disuse: log in again once.
        ForgetToken(CachedToken());
        retried_auth = true;
        continue;
      }
      last_error = ToError(status, endpoint.name);
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
      set.current.store((index + 1) % count, std::memory_order_relaxed);
      NoteFailover();
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
  fell_through = true;
  if (last_error) return std::unexpected(*last_error);
  return Fail(ErrorCode::kTimeout, "etcd " + url_ + ": no answer within the request timeout");
}

Result<etcdserverpb::RangeResponse> EtcdConnection::Range(const etcdserverpb::RangeRequest& request,
                                                          const CallOptions& options) {
  etcdserverpb::RangeResponse response;
  auto ok = Invoke(
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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
      [&](const Stubs& stubs, grpc::ClientContext& context) {
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

std::optional<std::size_t> EtcdConnection::ReadyEndpoint(const EndpointSet& set,
                                                         const CallOptions& options) {
  const auto& endpoints = set.endpoints;
  const std::size_t count = endpoints.size();
  if (count == 1) {
    AwaitConnectivity(*endpoints[0]->channel, options.deadline, options.canceller);
    if (endpoints[0]->channel->GetState(false) == GRPC_CHANNEL_READY) return 0;
    return std::nullopt;
  }
  // The first endpoint whose channel becomes ready within a per-try
  // deadline: a hung member's connection attempt never completes.
  const auto per_try = options.per_try.count() > 0 ? options.per_try : DefaultPerTry(count);
  for (std::size_t tried = 0; tried < count; ++tried) {
    const std::size_t index = set.current.load(std::memory_order_relaxed) % count;
    auto& channel = *endpoints[index]->channel;
    AwaitConnectivity(channel, std::min(options.deadline, Clock::now() + per_try),
                      options.canceller);
    if (channel.GetState(false) == GRPC_CHANNEL_READY) return index;
    std::size_t expected = index;
    set.current.compare_exchange_strong(expected, (index + 1) % count, std::memory_order_relaxed);
  }
  return std::nullopt;
}

Result<EtcdConnection::StreamTarget> EtcdConnection::PrepareStream(grpc::ClientContext& context,
                                                                   const CallOptions& options) {
  auto set = Endpoints();
  auto ready = ReadyEndpoint(*set, options);
  if (!ready) {
    // As in Invoke: no discovered member is reachable, the seeds may be. A
    // watch would otherwise fail on a dead endpoint until a sync happened to
    // move the set.
    auto seeds = Seeds();
    if (set != seeds && Clock::now() < options.deadline) {
      if (auto seeded = ReadyEndpoint(*seeds, options)) {
        FallBackToSeeds(set, seeds);
        set = std::move(seeds);
        ready = seeded;
      }
    }
  }
  // None ready: the stream fails on the current one and is reported.
  const std::size_t index =
      ready.value_or(set->current.load(std::memory_order_relaxed) % set->endpoints.size());
  const auto& endpoint = *set->endpoints[index];
  if (auto ok = AddAuth(context, endpoint, options); !ok) {
    return std::unexpected(ok.error());
  }
  const Stubs* stubs = &endpoint.stubs;
  return StreamTarget{std::move(set), stubs, index};
}

void EtcdConnection::ReportStreamFailure(const StreamTarget& target, const grpc::Status& status) {
  if (IsInvalidToken(status)) ForgetToken(CachedToken());
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED || IsMemberUnready(status)) {
    std::size_t expected = target.index;
    target.set->current.compare_exchange_strong(
        expected, (target.index + 1) % target.set->endpoints.size(), std::memory_order_relaxed);
    NoteFailover();
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
