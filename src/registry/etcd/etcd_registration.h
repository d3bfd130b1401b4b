// EtcdRegistration: one instance kept alive in etcd by a lease.
//
// Register grants a lease of the asked TTL (etcd raises anything below its
// minimum, 2 s by default, so the granted TTL is read back and used), puts the
// key with that lease, and starts a keep-alive thread. The thread refreshes
// the lease every TTL/3 with a one-shot keep-alive bounded by the request
// timeout. It restores the registration by itself:
//   - keep-alive answers TTL <= 0 (lease gone: expired during an outage, or
//     etcd restarted with a fresh data dir, or revoked by someone else's
//     Registry::Deregister): grant a new lease and put the key again;
//   - etcd unreachable: state kRestoring, retry with backoff (100 ms up to
//     1 s) across every endpoint, back to kActive at the first success.
//
// Threading: one background thread per registration. Deregister() and the
// destructor cancel the thread's in-flight call (ClientContext::TryCancel),
// wake it and join it, then revoke the lease with a deadline of
// request_timeout, so they return in bounded time even if etcd is down or
// hung. All methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "disco/registry.h"
#include "registry/etcd/etcd_context.h"

namespace disco::etcd {

class EtcdRegistration final : public Registration {
 public:
  // Registers synchronously (lease grant + put, both within one
  // request_timeout), then starts the keep-alive thread.
  // REQUIRES: `instance` is valid (disco::Validate).
  static Result<std::unique_ptr<EtcdRegistration>> Start(std::shared_ptr<Context> context,
                                                         ServiceInstance instance,
                                                         std::chrono::seconds ttl);

  ~EtcdRegistration() override;

  Result<void> Deregister() override;
  const ServiceInstance& instance() const override { return instance_; }
  RegistrationState state() const override { return state_.load(); }

  // The TTL etcd granted (at least etcd's minimum).
  std::chrono::seconds granted_ttl() const { return std::chrono::seconds(granted_ttl_.load()); }

 private:
  EtcdRegistration(std::shared_ptr<Context> context, ServiceInstance instance,
                   std::chrono::seconds requested_ttl);

  // Grants a lease and puts the key with it, within `options`.
  Result<void> GrantAndPut(const CallOptions& options);
  void Run();
  // One refresh; true when the registration is known to be in place.
  bool Refresh();
  void Sleep(std::chrono::milliseconds duration);
  void StopThread();

  const std::shared_ptr<Context> context_;
  const ServiceInstance instance_;
  const std::string key_;
  const std::string value_;
  const std::chrono::seconds requested_ttl_;
  std::atomic<std::chrono::seconds::rep> granted_ttl_{0};  // written by the keep-alive thread
  std::atomic<RegistrationState> state_{RegistrationState::kActive};

  // Owned by the keep-alive thread while it runs; read by Deregister after
  // the thread was joined.
  std::int64_t lease_id_ = 0;
  bool lease_lost_ = false;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  CallCanceller canceller_;
  std::thread thread_;

  std::mutex deregister_mu_;  // serialises Deregister() callers
};

}  // namespace disco::etcd
