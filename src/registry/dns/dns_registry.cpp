// dns:// — a read-only registry over DNS: Kubernetes headless Services,
// Consul's DNS interface, or any zone with SRV or A/AAAA records. Lookups run
// on one c-ares thread (ares_loop.h), watch callbacks on a delivery thread
// (dns_delivery.h); see dns_config.h for the URL.
#include <condition_variable>
#include <mutex>
#include <optional>

#include "registry/backends.h"
#include "registry/dns/ares_loop.h"
#include "registry/dns/dns_config.h"
#include "registry/dns/dns_lookup.h"
#include "registry/dns/dns_watch.h"

namespace disco {
namespace {

class DnsRegistry : public Registry {
 public:
  DnsRegistry(std::string url, std::shared_ptr<const dns::DnsConfig> config,
              std::shared_ptr<dns::Threads> threads, std::chrono::milliseconds request_timeout)
      : url_(std::move(url)), config_(std::move(config)), threads_(std::move(threads)),
        request_timeout_(request_timeout) {}

  const std::string& url() const override { return url_; }

  Result<std::unique_ptr<Registration>> Register(const ServiceInstance&,
                                                 const RegisterOptions&) override {
    return ReadOnly("register");
  }

  Result<void> Deregister(std::string_view, std::string_view) override { return ReadOnly("deregister"); }

  Result<std::vector<InstanceStatus>> List(std::string_view service, bool include_unhealthy) override {
    auto result = Resolve(service);
    if (!result) return std::unexpected(result.error());
    if (include_unhealthy) return std::move(result->all);
    std::vector<InstanceStatus> out;
    for (auto& instance : result->active) out.push_back({std::move(instance), HealthState::kPassing, {}});
    return out;
  }

  Result<std::vector<std::string>> Services() override {
    if (config_->services.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "DNS has no list of services: name them in the URL (" + url_ +
                      "&services=a,b) or ask for one service");
    }
    return config_->services;
  }

  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    return dns::StartWatch(threads_, config_, std::string(service), std::move(callback));
  }

 private:
  std::unexpected<Error> ReadOnly(const std::string& what) const {
    return Fail(ErrorCode::kInvalidArgument,
                "cannot " + what + " through " + url_ +
                    ": dns:// is read-only (the DNS server publishes the records: Kubernetes, "
                    "Consul, a zone file); register through consul:// or etcd://");
  }

  Result<dns::LookupResult> Resolve(std::string_view service) {
    struct Waiter {
      std::mutex mu;
      std::condition_variable cv;
      std::optional<Result<dns::LookupResult>> result;
    };
    auto waiter = std::make_shared<Waiter>();
    auto deliver = [waiter](Result<dns::LookupResult> result) {
      {
        std::lock_guard lock(waiter->mu);
        waiter->result = std::move(result);
      }
      waiter->cv.notify_all();
    };
    auto& ares = *threads_->loop;
    bool posted = ares.Post([loop = &ares, config = config_, name = std::string(service),
                               deliver = std::move(deliver)]() mutable {
      dns::Lookup(*loop, std::move(config), std::move(name), std::move(deliver));
    });
    if (!posted) return Fail(ErrorCode::kUnavailable, "dns:// resolver queue is full");
    std::unique_lock lock(waiter->mu);
    if (!waiter->cv.wait_for(lock, request_timeout_, [&] { return waiter->result.has_value(); })) {
      return Fail(ErrorCode::kTimeout, "no DNS answer for " + std::string(service) + " within " +
                                           std::to_string(request_timeout_.count()) + " ms");
    }
    return std::move(*waiter->result);
  }

  std::string url_;
  std::shared_ptr<const dns::DnsConfig> config_;
  std::shared_ptr<dns::Threads> threads_;
  std::chrono::milliseconds request_timeout_;
};

}  // namespace

Result<std::unique_ptr<Registry>> MakeDnsRegistry(const RegistryUrl& url, const RegistryOptions& options) {
  auto config = dns::ParseDnsConfig(url);
  if (!config) return std::unexpected(config.error());
  auto loop = dns::AresLoop::Make(*config);
  if (!loop) return std::unexpected(loop.error());
  auto threads = std::make_shared<dns::Threads>();
  threads->loop = std::move(*loop);
  return std::make_unique<DnsRegistry>(url.Redacted(),
                                       std::make_shared<const dns::DnsConfig>(std::move(*config)),
                                       std::move(threads), options.request_timeout);
}

}  // namespace disco
