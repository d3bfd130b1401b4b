// EtcdRegistration: one instance kept alive in etcd by a lease.
//
// Register grants a lease of the asked TTL (etcd raises anything below its
// minimum, 2 s by default, so the granted TTL is read back and used), puts the
// key with that lease, and schedules its keep-alive on the registry's
// KeepAlivePool (a few threads for all its registrations), which refreshes
// the lease every TTL/3 with a one-shot keep-alive bounded by the request
// timeout. The keep-alive restores the registration by itself:
//   - keep-alive answers TTL <= 0 (lease gone: expired during an outage, or
//     etcd restarted with a fresh data dir, or revoked by someone else's
//     Registry::Deregister): grant a new lease and put the key again;
//   - etcd unreachable: state kRestoring, retry with backoff (100 ms up to
//     1 s) across every endpoint, back to kActive at the first success.
//
// Threading: the keep-alive runs on a pool thread. Deregister() and the
// destructor cancel its in-flight call (ClientContext::TryCancel), take the
// task off the pool (waiting for a run in progress), then revoke the lease
// with a deadline of request_timeout, so they return in bounded time even if
// etcd is down or hung. All methods may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "disco/registry.h"
#include "registry/etcd/etcd_context.h"
#include "util/backoff.h"

namespace disco::etcd {

class EtcdRegistration final : public Registration {
 public:
  // Registers synchronously (lease grant + put, both within one
  // request_timeout), then schedules the keep-alive.
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
  // The time between two refreshes: TTL/3.
  std::chrono::milliseconds Interval() const;
  // The pool's task: one refresh; returns the delay to the next.
  std::chrono::milliseconds Tick();
  // One refresh; true when the registration is known to be in place.
  bool Refresh();
  void StopKeepAlive();

  const std::shared_ptr<Context> context_;
  const ServiceInstance instance_;
  const std::string key_;
  const std::string value_;
  const std::chrono::seconds requested_ttl_;
  std::atomic<std::chrono::seconds::rep> granted_ttl_{0};  // written by the keep-alive
  std::atomic<RegistrationState> state_{RegistrationState::kActive};

  // Owned by the keep-alive task (one run at a time); read by Deregister
  // after the task was removed.
  std::int64_t lease_id_ = 0;
  bool lease_lost_ = false;
  Backoff backoff_;

  CallCanceller canceller_;
  std::uint64_t task_ = 0;  // in context_->keepalives

  std::mutex deregister_mu_;  // serialises Deregister() callers
};

}  // namespace disco::etcd
