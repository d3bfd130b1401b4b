#include "registry/etcd/etcd_registration.h"

#include <algorithm>

#include "util/backoff.h"
#include "util/log.h"

namespace disco::etcd {
namespace {

constexpr std::chrono::milliseconds kMinRefreshInterval{500};
constexpr std::chrono::milliseconds kRestoreBackoffInitial{100};
constexpr std::chrono::milliseconds kRestoreBackoffMax{1000};
constexpr std::chrono::milliseconds kMinKeepAliveTry{250};

}  // namespace

EtcdRegistration::EtcdRegistration(std::shared_ptr<Context> context, ServiceInstance instance,
                                   std::chrono::seconds requested_ttl)
    : context_(std::move(context)),
      instance_(std::move(instance)),
      key_(InstanceKey(context_->prefix, instance_.service, instance_.id)),
      value_(EncodeValue(instance_)),
      requested_ttl_(requested_ttl),
      backoff_(kRestoreBackoffInitial, kRestoreBackoffMax) {}

Result<std::unique_ptr<EtcdRegistration>> EtcdRegistration::Start(std::shared_ptr<Context> context,
                                                                  ServiceInstance instance,
                                                                  std::chrono::seconds ttl) {
  std::unique_ptr<EtcdRegistration> registration(
      new EtcdRegistration(std::move(context), std::move(instance), ttl));
  CallOptions options{registration->context_->connection.Deadline(), nullptr};
  if (auto ok = registration->GrantAndPut(options); !ok) {
    // Nothing to undo: a lease granted before a failed put holds no key and
    // expires by itself; revoking it could cost another request timeout.
    registration->state_.store(RegistrationState::kDeregistered);
    return std::unexpected(ok.error());
  }
  auto* raw = registration.get();
  registration->task_ = raw->context_->keepalives.Add(raw->Interval(), [raw] { return raw->Tick(); });
  return registration;
}

EtcdRegistration::~EtcdRegistration() { (void)Deregister(); }

Result<void> EtcdRegistration::GrantAndPut(const CallOptions& options) {
  auto& connection = context_->connection;
  etcdserverpb::LeaseGrantRequest grant;
  grant.set_ttl(requested_ttl_.count());
  auto granted = connection.LeaseGrant(grant, options);
  if (!granted) return std::unexpected(granted.error());
  lease_id_ = granted->id();
  // etcd raises a TTL below its minimum (2 s by default); refresh by what it
  // granted, not by what was asked.
  granted_ttl_.store(std::max<std::int64_t>(granted->ttl(), 1));
  lease_lost_ = false;

  etcdserverpb::PutRequest put;
  put.set_key(key_);
  put.set_value(value_);
  put.set_lease(lease_id_);
  if (auto done = connection.Put(put, options); !done) {
    // The fresh lease holds nothing and expires by itself; the next attempt
    // grants another.
    lease_lost_ = true;
    return std::unexpected(done.error());
  }
  return {};
}

bool EtcdRegistration::Refresh() {
  auto& connection = context_->connection;
  auto now = Clock::now();
  // A keep-alive that takes longer than the TTL is useless: the lease would
  // have expired meanwhile.
  // With several endpoints each try is cut at a quarter of the TTL, so that
  // a hung member costs one short try and the next member renews the lease
  // long before it lapses.
  CallOptions options{std::min(now + connection.request_timeout(), now + granted_ttl()),
                      &canceller_,
                      std::max(kMinKeepAliveTry, std::chrono::milliseconds(granted_ttl()) / 4)};
  if (!lease_lost_) {
    auto alive = connection.KeepAliveOnce(lease_id_, options);
    if (alive && alive->ttl() > 0) return true;
    if (!alive && !IsLeaseNotFound(alive.error())) {
      if (state_.load() == RegistrationState::kActive && !canceller_.cancelled()) {
        log::Get().warn("etcd {}: keep-alive of {}/{} failed, restoring: {}", context_->url,
                        instance_.service, instance_.id, alive.error().ToString());
      }
      return false;
    }
    // TTL <= 0 is how etcd says the lease is gone (not an error).
    log::Get().warn("etcd {}: lease of {}/{} is gone, registering again", context_->url,
                    instance_.service, instance_.id);
    lease_lost_ = true;
  }
  auto restored = GrantAndPut(options);
  if (!restored && state_.load() == RegistrationState::kActive && !canceller_.cancelled()) {
    log::Get().warn("etcd {}: re-registering {}/{} failed, will retry: {}", context_->url,
                    instance_.service, instance_.id, restored.error().ToString());
  }
  return restored.has_value();
}

std::chrono::milliseconds EtcdRegistration::Interval() const {
  return std::max<std::chrono::milliseconds>(kMinRefreshInterval, granted_ttl() / 3);
}

std::chrono::milliseconds EtcdRegistration::Tick() {
  if (Refresh()) {
    if (state_.exchange(RegistrationState::kActive) == RegistrationState::kRestoring) {
      log::Get().info("etcd {}: registration of {}/{} is active again", context_->url,
                      instance_.service, instance_.id);
    }
    backoff_.Reset();
    return Interval();
  }
  // Cancelled: Deregister is removing this task; the delay does not matter.
  if (!canceller_.cancelled()) state_.store(RegistrationState::kRestoring);
  return backoff_.Next();
}

void EtcdRegistration::StopKeepAlive() {
  // Cancel the call a pool thread may be making for this registration, so
  // that Remove, which waits for that run, returns at once.
  canceller_.Cancel();
  context_->keepalives.Remove(task_);
}

Result<void> EtcdRegistration::Deregister() {
  std::lock_guard serial(deregister_mu_);
  if (state_.load() == RegistrationState::kDeregistered) return {};
  StopKeepAlive();
  state_.store(RegistrationState::kDeregistered);
  // Revoking deletes the key in the same revision; if etcd cannot be reached
  // the key still disappears when the lease expires, within the TTL.
  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(lease_id_);
  auto done = context_->connection.LeaseRevoke(revoke, {context_->connection.Deadline(), nullptr});
  if (!done && !IsLeaseNotFound(done.error())) {
    return Fail(done.error().code,
                "deregistering " + instance_.service + "/" + instance_.id + " (it expires within " +
                    std::to_string(granted_ttl().count()) + " s): " + done.error().message);
  }
  return {};
}

}  // namespace disco::etcd
