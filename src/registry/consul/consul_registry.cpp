// consul:// — the Registry interface over a Consul agent's HTTP API.
//
//   consul://host:port[,host:port...][?token=T&stale=1&wait=30s&dc=NAME&tag=T]
//     token  ACL token, sent as X-Consul-Token (else env DISCO_CONSUL_TOKEN)
//     stale  discovery reads with ?stale (any server answers)
//     wait   blocking-query wait of watches (1s-10m, default 30s)
//     dc     datacenter of discovery reads (List, Services, Watch)
//     tag    discovery keeps instances carrying every listed tag
//
// Several agents: the first is the local one registrations go to; discovery
// and registrations move to the next agent when one fails (consul_core.h
// AgentFailure). Register → consul_registration.h; Watch → consul_watch.h;
// threads → consul_core.h. List and Services are one-shot requests, each
// try bounded by the request timeout, tried on every agent in turn.
// Deregister(service, id) asks every agent to drop the instance (agent
// registrations are agent-local, and after a failover the instance may be
// held by any of them); it succeeds if at least one agent answered.
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

// Every agent tried once at most.
milliseconds AllAgentsBound(const Config& config) { return Bound(config) * config.agents.size(); }

// A discovery read, from the current discovery agent, then the next ones
// while the failure is the agent's.
asio::awaitable<Result<HttpResponse>> Get(Core* core, std::string target, RequestKind kind) {
  HttpRequest request{http::verb::get, std::move(target), "", core->config().request_timeout, kind};
  Result<HttpResponse> outcome = Fail(ErrorCode::kUnavailable, core->config().url + ": no agent");
  for (std::size_t tries = 0; tries < core->agents(); ++tries) {
    const std::size_t agent = core->DiscoveryAgent();
    auto response = co_await core->client().Send(request, nullptr, agent);
    if (response && response->status == 200) co_return response;
    outcome = response ? Result<HttpResponse>(std::unexpected(StatusError(
                             core->client().What(agent), request, *response)))
                       : response;
    if (!AgentFailure(outcome.error())) break;
    core->DiscoveryFailed(agent);
  }
  co_return outcome;
}

// Asks each agent in turn; the first error is returned only if none answered.
asio::awaitable<Result<void>> DeregisterEverywhere(Core* core, std::string id) {
  Result<void> outcome;
  bool answered = false;
  for (std::size_t agent = 0; agent < core->agents(); ++agent) {
    auto done = co_await DeregisterOnAgent(core, id, agent);
    if (done) {
      answered = true;
    } else {
      if (!AgentFailure(done.error())) co_return done;
      log::Get().info("consul deregister {}: {}", id, done.error().ToString());
      if (outcome) outcome = std::move(done);
    }
  }
  if (answered) co_return Result<void>{};
  co_return outcome;
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
    return core_->Call(DeregisterEverywhere(core_.get(), std::string(id)),
                       AllAgentsBound(core_->config()));
  }

  Result<std::vector<InstanceStatus>> List(std::string_view service,
                                           bool include_unhealthy) override {
    if (auto ok = ValidateName("service name", service); !ok) return std::unexpected(ok.error());
    auto target = HealthTarget(core_->config(), std::string(service), !include_unhealthy);
    auto response = core_->Call(Get(core_.get(), std::move(target), RequestKind::kRead),
                                AllAgentsBound(core_->config()));
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
    char sep = '?';
    if (core_->config().stale) {
      target += "?stale";
      sep = '&';
    }
    if (!core_->config().dc.empty()) target += sep + std::string("dc=") + core_->config().dc;
    auto response = core_->Call(Get(core_.get(), std::move(target), RequestKind::kRead),
                                AllAgentsBound(core_->config()));
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
