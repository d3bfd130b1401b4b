#include "registry/etcd/etcd_registry.h"
#include "registry/registry_tls.h"

#include <set>

#include "registry/backends.h"
#include "registry/etcd/etcd_context.h"
#include "registry/etcd/etcd_registration.h"
#include "registry/etcd/etcd_watch.h"

namespace disco {
namespace etcd {

Result<Listing> ListService(Context& context, std::string_view service,
                            const CallOptions& options) {
  const std::string prefix = ServicePrefix(context.prefix, service);
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixRangeEnd(prefix));
  auto response = context.connection.Range(request, options);
  if (!response) return std::unexpected(response.error());
  Listing listing;
  listing.revision = response->header().revision();
  for (const auto& kv : response->kvs()) {
    auto instance = DecodeValue(service, prefix, kv.key(), kv.value());
    if (!instance) {
      context.malformed.Warn(context.url, kv.key(), kv.mod_revision(), instance.error());
      continue;
    }
    auto id = instance->id;
    listing.instances.emplace(std::move(id), std::move(*instance));
  }
  return listing;
}

std::vector<ServiceInstance> SortedInstances(
    const std::map<std::string, ServiceInstance>& instances) {
  std::vector<ServiceInstance> out;
  out.reserve(instances.size());
  for (const auto& [id, instance] : instances) out.push_back(instance);
  return out;
}

namespace {

class EtcdRegistry final : public Registry {
 public:
  explicit EtcdRegistry(std::shared_ptr<Context> context) : context_(std::move(context)) {}

  const std::string& url() const override { return context_->url; }

  Result<std::unique_ptr<Registration>> Register(const ServiceInstance& instance,
                                                 const RegisterOptions& options) override {
    if (auto ok = Validate(instance); !ok) return std::unexpected(ok.error());
    auto registration = EtcdRegistration::Start(context_, instance, options.ttl);
    if (!registration) {
      return Fail(registration.error().code, "registering " + instance.service + "/" + instance.id +
                                                 ": " + registration.error().message);
    }
    return std::unique_ptr<Registration>(std::move(*registration));
  }

  Result<void> Deregister(std::string_view service, std::string_view id) override {
    if (auto ok = ValidateName("service name", service); !ok) return ok;
    // Ids written by other clients (Go's endpoints manager uses host:port)
    // need not follow disco's naming rules; any key suffix can be removed.
    if (id.empty()) return Fail(ErrorCode::kInvalidArgument, "instance id is empty");
    auto& connection = context_->connection;
    CallOptions options{connection.Deadline(), nullptr};
    const std::string key = InstanceKey(context_->prefix, service, id);

    etcdserverpb::RangeRequest range;
    range.set_key(key);
    auto found = connection.Range(range, options);
    if (!found) return std::unexpected(found.error());
    if (found->kvs().empty()) return {};
    const std::int64_t lease = found->kvs(0).lease();
    if (lease != 0) {
      etcdserverpb::LeaseTimeToLiveRequest ttl;
      ttl.set_id(lease);
      ttl.set_keys(true);
      auto info = connection.LeaseTimeToLive(ttl, options);
      if (!info && !IsLeaseNotFound(info.error())) return std::unexpected(info.error());
      if (info && info->ttl() > 0 && info->keys_size() == 1 && info->keys(0) == key) {
        // Revoking (not just deleting) tells the registrant, through TTL 0 on
        // its next keep-alive, that it must register again.
        etcdserverpb::LeaseRevokeRequest revoke;
        revoke.set_id(lease);
        auto revoked = connection.LeaseRevoke(revoke, options);
        if (revoked || IsLeaseNotFound(revoked.error())) return {};
        return std::unexpected(revoked.error());
      }
    }
    etcdserverpb::DeleteRangeRequest erase;
    erase.set_key(key);
    if (auto erased = connection.DeleteRange(erase, options); !erased) {
      return std::unexpected(erased.error());
    }
    return {};
  }

  Result<std::vector<InstanceStatus>> List(std::string_view service, bool) override {
    if (auto ok = ValidateName("service name", service); !ok) return std::unexpected(ok.error());
    auto listing = ListService(*context_, service, {context_->connection.Deadline(), nullptr});
    if (!listing) return std::unexpected(listing.error());
    std::vector<InstanceStatus> out;
    out.reserve(listing->instances.size());
    for (auto& [id, instance] : listing->instances) {
      out.push_back({std::move(instance), HealthState::kPassing, {}});
    }
    return out;
  }

  Result<std::vector<std::string>> Services() override {
    const std::string root = RootPrefix(context_->prefix);
    etcdserverpb::RangeRequest request;
    request.set_key(root.empty() ? std::string(1, '\0') : root);
    request.set_range_end(PrefixRangeEnd(root));
    request.set_keys_only(true);
    auto response = context_->connection.Range(request, {context_->connection.Deadline(), nullptr});
    if (!response) return std::unexpected(response.error());
    std::set<std::string, std::less<>> names;
    for (const auto& kv : response->kvs()) {
      std::string_view rest(kv.key());
      rest.remove_prefix(root.size());
      auto slash = rest.find('/');
      // Only "<service>/<id>" below the prefix is an instance.
      if (slash == std::string_view::npos || slash == 0 || slash + 1 == rest.size()) continue;
      names.emplace(rest.substr(0, slash));
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    return std::make_unique<EtcdWatch>(context_, std::string(service), std::move(callback));
  }

 private:
  std::shared_ptr<Context> context_;
};

}  // namespace
}  // namespace etcd

Result<std::unique_ptr<Registry>> MakeEtcdRegistry(const RegistryUrl& url,
                                                   const RegistryOptions& options) {
  if (url.endpoints.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "etcd:// needs at least one host:port");
  }
  static const std::set<std::string, std::less<>> kKnownParams = {"prefix", "user", "password",
                                                                    "auto_sync"};
  for (const auto& [key, value] : url.params) {
    if (!kKnownParams.contains(key) && !IsRegistryTlsParam(key)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "etcd:// does not know parameter '" + key +
                      "' (known: prefix, user, password, auto_sync, tls, ca, cert, key, tls_reload)");
    }
  }
  auto auto_sync = etcd::ParseAutoSync(url);
  if (!auto_sync) return std::unexpected(auto_sync.error());
  auto tls = ParseRegistryTls(url);
  if (!tls) return std::unexpected(tls.error());
  if (url.params.contains("password") && !url.params.contains("user")) {
    return Fail(ErrorCode::kInvalidArgument, "etcd:// parameter 'password' needs 'user'");
  }
  if (options.request_timeout <= std::chrono::milliseconds::zero()) {
    return Fail(ErrorCode::kInvalidArgument, "request_timeout must be positive");
  }
  std::string prefix = url.params.contains("prefix") ? url.params.at("prefix") : "services";
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();

  auto context = std::make_shared<etcd::Context>(url, url.Redacted(), options, std::move(prefix),
                                                 tls->config, *auto_sync);
  return std::make_unique<etcd::EtcdRegistry>(std::move(context));
}

}  // namespace disco
