// consul:// — the Registry interface over a Consul agent's HTTP API.
//
//   consul://host:port[?token=T&stale=1&wait=30s]
//     token  ACL token, sent as X-Consul-Token (else env DISCO_CONSUL_TOKEN)
//     stale  discovery reads with ?stale (any server answers)
//     wait   blocking-query wait of watches (1s-10m, default 30s)
//
// Register → consul_registration.h; Watch → consul_watch.h; threads →
// consul_core.h. List, Services and Deregister are one-shot requests bounded
// by the request timeout. Deregister(service, id) asks this agent to drop the
// instance: it works for instances registered through this agent, which is
// how disco registers (each process talks to its local agent).
#include "registry/backends.h"
#include "registry/consul/consul_codec.h"
#include "registry/consul/consul_core.h"
#include "registry/consul/consul_registration.h"
#include "registry/consul/consul_watch.h"
#include "util/log.h"

namespace disco {
namespace consul {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using std::chrono::milliseconds;

milliseconds Bound(const Config& config) {
  return config.connect_timeout + config.request_timeout + milliseconds(500);
}

asio::awaitable<Result<HttpResponse>> Get(Core* core, std::string target, RequestKind kind) {
  HttpRequest request{http::verb::get, std::move(target), "", core->config().request_timeout, kind};
  auto response = co_await core->client().Send(request, nullptr);
  if (!response) co_return response;
  if (response->status != 200)
    co_return std::unexpected(StatusError(core->config().url, request, *response));
  co_return response;
}

class ConsulRegistry final : public Registry {
 public:
  explicit ConsulRegistry(std::shared_ptr<Core> core) : core_(std::move(core)) {}

  const std::string& url() const override { return core_->config().url; }

  Result<std::unique_ptr<Registration>> Register(const ServiceInstance& instance,
                                                 const RegisterOptions& options) override {
    return StartRegistration(core_, instance, options);
  }

  Result<void> Deregister(std::string_view service, std::string_view id) override {
    if (auto ok = ValidateName("service name", service); !ok) return ok;
    if (auto ok = ValidateName("instance id", id); !ok) return ok;
    return core_->Call(DeregisterOnAgent(core_.get(), std::string(id)), Bound(core_->config()));
  }

  Result<std::vector<InstanceStatus>> List(std::string_view service,
                                           bool include_unhealthy) override {
    if (auto ok = ValidateName("service name", service); !ok) return std::unexpected(ok.error());
    auto target = HealthTarget(core_->config(), std::string(service), !include_unhealthy);
    auto response = core_->Call(Get(core_.get(), std::move(target), RequestKind::kRead),
                                Bound(core_->config()));
    if (!response) return std::unexpected(response.error());
    auto decoded = DecodeHealth(response->body);
    if (!decoded) {
      return Fail(ErrorCode::kMalformed, core_->config().url + ": " + decoded.error().message);
    }
    for (const auto& warning : decoded->warnings) {
      log::Get().warn("consul list {}: skipped {}", service, warning);
    }
    return std::move(decoded->instances);
  }

  Result<std::vector<std::string>> Services() override {
    std::string target = "/v1/catalog/services";
    if (core_->config().stale) target += "?stale";
    auto response = core_->Call(Get(core_.get(), std::move(target), RequestKind::kRead),
                                Bound(core_->config()));
    if (!response) return std::unexpected(response.error());
    auto names = DecodeServices(response->body);
    if (!names)
      return Fail(ErrorCode::kMalformed, core_->config().url + ": " + names.error().message);
    return names;
  }

  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    return StartWatch(core_, std::string(service), std::move(callback));
  }

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace
}  // namespace consul

Result<std::unique_ptr<Registry>> MakeConsulRegistry(const RegistryUrl& url,
                                                     const RegistryOptions& options) {
  auto config = consul::ParseConfig(url, options);
  if (!config) return std::unexpected(config.error());
  return std::make_unique<consul::ConsulRegistry>(
      std::make_shared<consul::Core>(std::move(*config)));
}

}  // namespace disco
