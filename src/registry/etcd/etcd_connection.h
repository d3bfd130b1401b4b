// EtcdConnection: gRPC channels to the endpoints of one etcd cluster, and the
// bounded one-shot calls every other part of the etcd backend makes.
//
// One channel per endpoint (the URL's, or discovered ones: auto_sync below).
// Calls go to the endpoint that last worked; when its member fails in any
// way a call moves on to the next endpoint within the same deadline, so a
// cluster with one dead, hung or partitioned member keeps working:
//   - unreachable (UNAVAILABLE, refused): at once;
//   - hung (accepts, never answers): after a per-try deadline shorter than the
//     call's (CallOptions::per_try, by default request_timeout / endpoints,
//     at least 250 ms; the last endpoint tried gets what is left);
//   - without a leader, or in an election ("no leader", "leader changed",
//     "raft proposal dropped", "request timed out"): at once, and once every
//     endpoint was tried the call goes round again while its deadline allows,
//     so a call made during a leader election succeeds when it ends.
// With one endpoint a call makes one try with the whole deadline.
//
// Reconnecting: gRPC C++ (1.51, sync API) makes progress on a connection
// attempt only while some thread polls the channel, and a fail-fast call on a
// channel in TRANSIENT_FAILURE fails without polling. Left alone, a channel
// would then reconnect only when gRPC's 5 s backup poller happens to run. So
// before each call EtcdConnection waits (polling) until the endpoint's channel is
// READY or has just failed a fresh connection attempt; with the short
// reconnect backoff set here (100 ms up to 1 s) a call made after etcd came
// back succeeds within about a second, and a call to a dead endpoint fails
// with kUnavailable as soon as its connection attempt is refused.
//
// Every one-shot call has a deadline (RegistryOptions::request_timeout unless
// the caller gives an earlier one) and can be cancelled from another thread
// through a CallCanceller, which is how destructors stay bounded.
//
// Auth (URL params `user` and `password`): the token from Authenticate is
// cached and sent as metadata `token`; on "invalid auth token" the call
// authenticates again and is retried once.
//
// Member discovery (URL param `auto_sync=SECONDS`, as clientv3's
// AutoSyncInterval): every SECONDS, and soon after a call failed over, a
// thread asks a member for Cluster.MemberList and makes the started,
// non-learner members' client URLs (http://, or https:// with TLS; at most
// kMaxDiscoveredEndpoints) the endpoint set. Endpoints known before keep
// their channels. A list without a usable URL changes nothing; when every
// discovered member refuses a call or a stream, it falls back to the URL's
// own (seed) endpoints, and that list is not installed again for 5 minutes
// (or SECONDS if longer) unless it changes: members advertising client URLs
// this host cannot reach would otherwise send every call through them first.
//
// Thread safety: every method may be called from any thread. The endpoint
// set is immutable and held by shared_ptr: a call (or stream) takes a copy
// when it starts, so a swap never pulls a channel from under it; only the
// "endpoint that last worked" cursor inside a set changes, atomically.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "disco/error.h"
#include "disco/registry.h"
#include "disco/registry_url.h"
#include "disco/tls.h"
#include "etcd/rpc.grpc.pb.h"
#include "registry/etcd/etcd_auto_sync.h"

namespace disco::etcd {

using Clock = std::chrono::steady_clock;

// gRPC takes deadlines only on the system clock; ours are steady so that a
// clock jump does not stretch or cut a timeout.
inline std::chrono::system_clock::time_point ToGrpcDeadline(Clock::time_point deadline) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now());
}

// Lets one thread cancel the gRPC call another thread is blocked in. Once
// Cancel() ran, every later Attach() fails, so a call that had not started
// yet never starts.
class CallCanceller {
 public:
  // Returns false (and does not attach) if Cancel() already ran.
  bool Attach(grpc::ClientContext* context);
  void Detach();
  void Cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;                  // guarded by mu_
  grpc::ClientContext* context_ = nullptr;  // guarded by mu_
};

struct CallOptions {
  Clock::time_point deadline;          // required
  CallCanceller* canceller = nullptr;  // optional
  // Bound on one try at one endpoint when the URL names several; zero: the
  // connection's default (request_timeout / endpoints, at least 250 ms).
  std::chrono::milliseconds per_try{0};
};

struct Stubs {
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Auth::Stub> auth;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
};

// One member's client endpoint: its channel and stubs. Immutable once made.
struct Endpoint {
  std::string name;  // "host:port", for messages
  std::shared_ptr<grpc::Channel> channel;
  Stubs stubs;
};

// The endpoints calls go to. Immutable but for the cursor.
struct EndpointSet {
  std::vector<std::shared_ptr<const Endpoint>> endpoints;  // never empty
  // The endpoint that last worked (an index, taken modulo the size).
  mutable std::atomic<std::size_t> current{0};
};

class EtcdConnection {
 public:
  // REQUIRES: url.endpoints is not empty.
  // `tls`: gRPC's TLS with its files (CA; certificate and key for mutual
  // TLS); null: plaintext. When its files change (checked at most every
  // tls->check_interval(), by the call that finds the interval over), every
  // channel is made again with the new files: calls and streams already
  // running finish on the old channels, the next ones take the new.
  // `auto_sync`: member discovery every so often (zero: off).
  EtcdConnection(const RegistryUrl& url, std::string redacted_url, const RegistryOptions& options,
                 std::shared_ptr<tls::Config> tls = nullptr,
                 std::chrono::seconds auto_sync = std::chrono::seconds(0));
  ~EtcdConnection();
  EtcdConnection(const EtcdConnection&) = delete;
  EtcdConnection& operator=(const EtcdConnection&) = delete;

  const std::string& url() const { return url_; }
  std::size_t endpoint_count() const { return Endpoints()->endpoints.size(); }
  // The endpoints calls go to now ("host:port"), for tests and messages.
  std::vector<std::string> EndpointNames() const;

  // Cluster.MemberList on a member, then the members' client URLs become the
  // endpoint set (see the header comment). Returns the number of endpoints.
  Result<std::size_t> Sync(const CallOptions& options);
  std::chrono::milliseconds request_timeout() const { return request_timeout_; }
  // A deadline request_timeout from now.
  Clock::time_point Deadline() const { return Clock::now() + request_timeout_; }

  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request,
                                            const CallOptions& options);
  Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request,
                                        const CallOptions& options);
  Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request, const CallOptions& options);
  Result<etcdserverpb::LeaseGrantResponse> LeaseGrant(
      const etcdserverpb::LeaseGrantRequest& request, const CallOptions& options);
  // Errors: kNotFound when the lease does not exist (any more).
  Result<etcdserverpb::LeaseRevokeResponse> LeaseRevoke(
      const etcdserverpb::LeaseRevokeRequest& request, const CallOptions& options);
  Result<etcdserverpb::LeaseTimeToLiveResponse> LeaseTimeToLive(
      const etcdserverpb::LeaseTimeToLiveRequest& request, const CallOptions& options);
  // One keep-alive round trip on a short-lived LeaseKeepAlive stream. A lease
  // that is gone is not an error: the response then has TTL <= 0.
  Result<etcdserverpb::LeaseKeepAliveResponse> KeepAliveOnce(std::int64_t lease_id,
                                                             const CallOptions& options);

  // For long-lived streams: the stubs of the endpoint to use now, and its
  // index for ReportStreamFailure(). Fills `context` with the auth token
  // (authenticating first if needed, bounded by `options`).
  // `set` keeps the stubs alive for the stream's life.
  struct StreamTarget {
    std::shared_ptr<const EndpointSet> set;
    const Stubs* stubs = nullptr;
    std::size_t index = 0;
    const std::string& endpoint() const { return set->endpoints[index]->name; }
  };
  Result<StreamTarget> PrepareStream(grpc::ClientContext& context, const CallOptions& options);
  // A stream on `target` broke: the next call starts at the next endpoint
  // (and member discovery, if on, runs soon). Also forgets the auth token
  // when the failure said it was bad.
  void ReportStreamFailure(const StreamTarget& target, const grpc::Status& status);

  // The Error a failed gRPC call maps to, naming the endpoint.
  Error ToError(const grpc::Status& status, const std::string& endpoint) const;

 private:
  using Attempt = std::function<grpc::Status(const Stubs&, grpc::ClientContext&)>;

  std::shared_ptr<const EndpointSet> Endpoints() const;
  // A try's deadline when the caller gives none: request timeout ÷
  // endpoints, at least 250 ms.
  std::chrono::milliseconds DefaultPerTry(std::size_t endpoints) const;
  // Waits until `channel` is READY, or a connection attempt made during the
  // wait failed, or `deadline`/cancellation.
  void AwaitConnectivity(grpc::Channel& channel, Clock::time_point deadline,
                         CallCanceller* canceller);
  // Runs `attempt` on the current endpoint, moving on to the next ones while
  // their members fail (see the header comment) and the deadline allows.
  Result<void> Invoke(const Attempt& attempt, const CallOptions& options);
  // The URL's own endpoints.
  std::shared_ptr<const EndpointSet> Seeds() const;
  // Every member of the discovered set `failed` was out of reach while a
  // seed answered: the seeds become the set again, and unless a seed's
  // address is in that list too (then members just came back), Sync does
  // not install the same list again for a while (logged once at warn).
  void FallBackToSeeds(const std::shared_ptr<const EndpointSet>& failed,
                       const std::shared_ptr<const EndpointSet>& seeds);
  // For streams: the first endpoint of `set`, from its cursor on, whose
  // channel is READY within a per-try deadline (or the whole deadline with
  // one endpoint); none when no channel got ready.
  std::optional<std::size_t> ReadyEndpoint(const EndpointSet& set, const CallOptions& options);
  // One pass of Invoke over `set`; `fell_through` tells whether every member
  // refused or hung (so that other endpoints may be worth a try).
  Result<void> InvokeOn(const EndpointSet& set, const Attempt& attempt, const CallOptions& options,
                        bool& fell_through);
  // Adds the token to `context`, authenticating on `endpoint` if needed.
  Result<void> AddAuth(grpc::ClientContext& context, const Endpoint& endpoint,
                       const CallOptions& options);
  std::string CachedToken();
  void ForgetToken(const std::string& token);
  // REQUIRES: set_mu_ held (reads credentials_).
  std::shared_ptr<const Endpoint> MakeEndpoint(const std::string& target) const;
  // Makes every channel again when the TLS files changed (see the
  // constructor). Cheap when it is not time to check.
  void RotateIfFilesChanged();
  // A call failed over: member discovery runs soon.
  void NoteFailover();
  void SyncLoop();

  const std::string url_;
  const std::chrono::milliseconds request_timeout_;
  const std::shared_ptr<tls::Config> tls_config_;  // null: plaintext
  const bool tls_;
  const int max_response_bytes_;         // gRPC's receive limit on this connection's channels
  std::mutex rotate_mu_;                 // one thread checks the files at a time
  Clock::time_point next_file_check_{};  // guarded by rotate_mu_
  // The URL's endpoints: the first set, and the fallback of discovered ones.
  std::shared_ptr<const EndpointSet> seeds_;
  mutable std::mutex set_mu_;
  std::shared_ptr<const EndpointSet> set_;                 // guarded by set_mu_
  std::shared_ptr<grpc::ChannelCredentials> credentials_;  // guarded by set_mu_
  std::uint64_t credentials_generation_ = 0;               // guarded by set_mu_
  // The (sorted) names of the last discovered list that every call found
  // dead, and until when Sync does not install it again (FallBackToSeeds).
  std::vector<std::string> dead_list_;  // guarded by set_mu_
  Clock::time_point dead_until_{};      // guarded by set_mu_

  const std::string user_;
  const std::string password_;
  std::mutex auth_mu_;
  std::string token_;  // guarded by auth_mu_

  const std::chrono::seconds auto_sync_;
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool sync_soon_ = false;  // guarded by sync_mu_
  bool stopping_ = false;   // guarded by sync_mu_
  CallCanceller sync_canceller_;
  std::thread sync_thread_;  // last: started when the rest is ready
};

// True when a failed call means that this member cannot serve now but
// another member (or this one after an election) may: "no leader",
// "leader changed", "raft proposal dropped", "request timed out".
bool IsMemberUnready(const grpc::Status& status);

// True when a failed call means "the lease does not exist".
bool IsLeaseNotFound(const Error& error);

}  // namespace disco::etcd
