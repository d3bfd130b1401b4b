#include "registry/consul/consul_registration.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "registry/consul/consul_codec.h"
#include "util/backoff.h"
#include "util/log.h"

namespace disco::consul {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using std::chrono::milliseconds;

// State of one registration's keep-alive loop. Everything but `state` is
// touched on the I/O thread only.
struct Task {
  Task(asio::io_context& io, ServiceInstance instance_in, RegisterOptions options_in,
       std::size_t agents)
      : instance(std::move(instance_in)),
        options(std::move(options_in)),
        slot(io),
        clean_slot(io),
        stale(agents, false) {}

  const ServiceInstance instance;
  const RegisterOptions options;
  std::string body;       // the registration request body
  milliseconds interval;  // between heartbeats (TTL/3) or existence checks
  bool ttl_mode = true;
  CancelSlot slot;
  CancelSlot clean_slot;    // the stale-registration cleaner's
  std::size_t agent = 0;    // the agent holding the live registration
  std::vector<bool> stale;  // agents that may still hold an old registration
  bool cleaner_running = false;
  std::atomic<RegistrationState> state{RegistrationState::kActive};
};

constexpr milliseconds kCleanInterval{1000};

enum class Refresh { kOk, kForgotten, kFailed };

milliseconds Bound(const Config& config) {
  return config.connect_timeout + config.request_timeout + milliseconds(500);
}

asio::awaitable<Result<void>> PutRegistration(Core* core, std::shared_ptr<Task> task) {
  HttpRequest request{http::verb::put, "/v1/agent/service/register?replace-existing-checks=true",
                      task->body, core->config().request_timeout, RequestKind::kRegister};
  auto response = co_await core->client().Send(request, &task->slot, task->agent);
  if (!response) co_return std::unexpected(response.error());
  if (response->status != 200)
    co_return std::unexpected(StatusError(core->client().What(task->agent), request, *response));
  co_return Result<void>{};
}

// One heartbeat (TTL mode) or existence check (HTTP mode).
asio::awaitable<Refresh> RefreshOnce(Core* core, Task& task, Error* error) {
  HttpRequest request;
  request.timeout = core->config().request_timeout;
  request.kind = RequestKind::kHeartbeat;
  if (task.ttl_mode) {
    request.method = http::verb::put;
    request.target = "/v1/agent/check/pass/" + CheckId(task.instance.id);
  } else {
    request.method = http::verb::get;
    request.target = "/v1/agent/service/" + task.instance.id;
  }
  auto response = co_await core->client().Send(request, &task.slot, task.agent);
  if (!response) {
    *error = response.error();
    co_return Refresh::kFailed;
  }
  if (response->status == 200) co_return Refresh::kOk;
  // 1.8.7 answers a pass for an unknown check with 500 "CheckID ... does not
  // have associated TTL"; newer agents answer 404.
  if (response->status == 404 ||
      (response->status == 500 &&
       response->body.find("does not have associated TTL") != std::string::npos)) {
    co_return Refresh::kForgotten;
  }
  *error = StatusError(core->client().What(task.agent), request, *response);
  co_return Refresh::kFailed;
}

std::string Describe(const Task& task) {
  return "consul registration " + task.instance.service + "/" + task.instance.id;
}

// Asks every agent marked stale to drop its old copy of the registration,
// about once a second, until none is left or the registration ends.
asio::awaitable<void> CleanStale(Core* core, std::shared_ptr<Task> task) {
  while (!task->clean_slot.cancelled()) {
    bool left = false;
    for (std::size_t agent = 0; agent < task->stale.size(); ++agent) {
      if (!task->stale[agent] || agent == task->agent) continue;
      auto done = co_await DeregisterOnAgent(core, task->instance.id, agent, &task->clean_slot);
      if (task->clean_slot.cancelled()) break;
      // The live registration may have moved there meanwhile: then it stays.
      if (done && task->stale[agent] && agent != task->agent) {
        task->stale[agent] = false;
        log::Get().info("{}: removed the old registration held by agent {}", Describe(*task),
                        core->config().agents[agent].ToString());
      } else if (!done) {
        left = true;
      }
    }
    if (!left) break;
    co_await task->clean_slot.Sleep(kCleanInterval);
  }
  task->cleaner_running = false;
}

// The live registration's agent failed: registers the instance through the
// other agents in turn (those holding no old copy first), and marks the
// failed one stale for CleanStale. On failure everywhere, stays where it was.
asio::awaitable<Result<void>> MoveToNextAgent(Core* core, std::shared_ptr<Task> task) {
  const std::size_t from = task->agent;
  const std::size_t agents = core->agents();
  Result<void> outcome = Fail(ErrorCode::kUnavailable, "no other agent");
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t step = 1; step < agents; ++step) {
      const std::size_t next = (from + step) % agents;
      if (task->stale[next] != (pass == 1)) continue;
      task->agent = next;
      outcome = co_await PutRegistration(core, task);
      if (task->slot.cancelled()) co_return outcome;
      if (outcome) {
        task->stale[next] = false;
        task->stale[from] = true;
        log::Get().warn("{}: agent {} failed; registered through agent {}", Describe(*task),
                        core->config().agents[from].ToString(),
                        core->config().agents[next].ToString());
        if (!task->cleaner_running) {
          task->cleaner_running = true;
          core->Spawn(CleanStale(core, task));
        }
        co_return outcome;
      }
      if (!AgentFailure(outcome.error())) break;
    }
  }
  task->agent = from;
  co_return outcome;
}

asio::awaitable<void> KeepAlive(Core* core, std::shared_ptr<Task> task) {
  const auto& instance = task->instance;
  const std::string what = "consul registration " + instance.service + "/" + instance.id;
  Backoff backoff(milliseconds(200),
                  std::clamp(task->interval, milliseconds(1000), milliseconds(5000)));
  // TTL mode: the first heartbeat goes out at once. Registering an ID the
  // agent still has keeps its check's old status (backend-api.md, gotcha 4),
  // so an instance restarted after a crash, whose check went critical, would
  // otherwise stay invisible to ?passing until its first heartbeat.
  milliseconds next = task->ttl_mode ? milliseconds(0) : task->interval;
  while (!task->slot.cancelled()) {
    co_await task->slot.Sleep(next);
    if (task->slot.cancelled()) break;
    Error error;
    Refresh refresh = co_await RefreshOnce(core, *task, &error);
    if (task->slot.cancelled()) break;
    if (refresh == Refresh::kForgotten) {
      auto registered = co_await PutRegistration(core, task);
      if (task->slot.cancelled()) break;
      if (registered) {
        log::Get().warn(
            "{}: the agent had forgotten it (agent restart or reap); registered it again", what);
        refresh = Refresh::kOk;
      } else {
        error = registered.error();
        refresh = Refresh::kFailed;
      }
    }
    if (refresh == Refresh::kFailed && core->agents() > 1 && AgentFailure(error)) {
      auto moved = co_await MoveToNextAgent(core, task);
      if (task->slot.cancelled()) break;
      if (moved) {
        refresh = Refresh::kOk;
      } else {
        error = moved.error();
      }
    }
    if (refresh == Refresh::kOk) {
      if (task->state.exchange(RegistrationState::kActive) == RegistrationState::kRestoring) {
        log::Get().info("{}: active again", what);
      }
      backoff.Reset();
      next = task->interval;
    } else {
      if (task->state.exchange(RegistrationState::kRestoring) == RegistrationState::kActive) {
        log::Get().warn("{}: refresh failed, retrying with backoff: {}", what, error.ToString());
      }
      next = backoff.Next();
    }
  }
}

// Through the first agent, in URL order, that accepts it.
asio::awaitable<Result<void>> RegisterFirst(Core* core, std::shared_ptr<Task> task) {
  Result<void> registered;
  for (std::size_t agent = 0; agent < core->agents(); ++agent) {
    task->agent = agent;
    registered = co_await PutRegistration(core, task);
    if (registered || task->slot.cancelled() || !AgentFailure(registered.error())) break;
  }
  if (registered && !task->slot.cancelled()) core->Spawn(KeepAlive(core, task));
  co_return registered;
}

// Best effort, in the background: each try is bounded by its own timeouts.
asio::awaitable<void> DeregisterQuietly(Core* core, std::string id, std::size_t agent) {
  auto done = co_await DeregisterOnAgent(core, id, agent);
  if (!done) log::Get().info("consul deregister {}: {}", id, done.error().ToString());
}

asio::awaitable<Result<void>> StopAndDeregister(Core* core, std::shared_ptr<Task> task) {
  // Stops the loops and aborts their requests in flight before the
  // deregister goes out, so that no heartbeat or re-registration can follow.
  task->slot.Cancel();
  task->clean_slot.Cancel();
  for (std::size_t agent = 0; agent < task->stale.size(); ++agent) {
    if (task->stale[agent] && agent != task->agent)
      core->Spawn(DeregisterQuietly(core, task->instance.id, agent));
  }
  co_return co_await DeregisterOnAgent(core, task->instance.id, task->agent);
}

class ConsulRegistration final : public Registration {
 public:
  ConsulRegistration(std::shared_ptr<Core> core, std::shared_ptr<Task> task)
      : core_(std::move(core)), task_(std::move(task)) {}

  ~ConsulRegistration() override {
    if (auto done = Deregister(); !done) {
      log::Get().warn("consul registration {}/{}: deregister on destruction failed: {}",
                      task_->instance.service, task_->instance.id, done.error().ToString());
    }
  }

  Result<void> Deregister() override {
    std::lock_guard lock(mu_);
    if (deregistered_) return {};
    deregistered_ = true;
    auto result = core_->Call(StopAndDeregister(core_.get(), task_), Bound(core_->config()));
    if (!result) {
      // The loops may not have seen the cancellation if the Call timed out.
      asio::post(core_->io(), [task = task_] {
        task->slot.Cancel();
        task->clean_slot.Cancel();
      });
    }
    task_->state.store(RegistrationState::kDeregistered);
    return result;
  }

  const ServiceInstance& instance() const override { return task_->instance; }
  RegistrationState state() const override { return task_->state.load(); }

 private:
  std::shared_ptr<Core> core_;  // first member: released last
  std::shared_ptr<Task> task_;
  std::mutex mu_;
  bool deregistered_ = false;  // guarded by mu_
};

}  // namespace

asio::awaitable<Result<void>> DeregisterOnAgent(Core* core, std::string id, std::size_t agent,
                                               CancelSlot* slot) {
  HttpRequest request{http::verb::put, "/v1/agent/service/deregister/" + id, "",
                      core->config().request_timeout, RequestKind::kDeregister};
  auto response = co_await core->client().Send(request, slot, agent);
  if (!response) co_return std::unexpected(response.error());
  // 1.8.7 answers 200 for an unknown ID, newer agents 404: both mean gone.
  if (response->status == 200 || response->status == 404) co_return Result<void>{};
  co_return std::unexpected(StatusError(core->client().What(agent), request, *response));
}

Result<std::unique_ptr<Registration>> StartRegistration(std::shared_ptr<Core> core,
                                                        const ServiceInstance& instance,
                                                        const RegisterOptions& options) {
  if (auto ok = Validate(instance); !ok) return std::unexpected(ok.error());
  if (instance.metadata.contains(std::string(kZoneMetaKey))) {
    return Fail(ErrorCode::kInvalidArgument, "metadata key '" + std::string(kZoneMetaKey) +
                                                 "' is reserved (it carries the zone in Consul)");
  }
  if (options.ttl < std::chrono::seconds(1)) {
    return Fail(ErrorCode::kInvalidArgument, "ttl must be at least 1 s");
  }
  if (!options.http_check_url.empty() && !options.http_check_url.starts_with("http://") &&
      !options.http_check_url.starts_with("https://")) {
    return Fail(ErrorCode::kInvalidArgument, "http_check_url '" + options.http_check_url +
                                                 "' must start with http:// or https://");
  }
  auto task = std::make_shared<Task>(core->io(), instance, options, core->agents());
  task->ttl_mode = options.http_check_url.empty();
  // TTL mode: three heartbeats per TTL, so one lost heartbeat never lets the
  // check expire. HTTP mode: Consul polls at that interval (at least 1 s).
  task->interval = std::chrono::duration_cast<milliseconds>(options.ttl) / 3;
  milliseconds http_interval = std::max(milliseconds(1000), task->interval);
  if (!task->ttl_mode) task->interval = http_interval;
  task->body = EncodeRegistration(instance, options, http_interval);

  auto registered =
      core->Call(RegisterFirst(core.get(), task), Bound(core->config()) * core->agents());
  if (!registered) {
    asio::post(core->io(), [task] { task->slot.Cancel(); });
    return std::unexpected(registered.error());
  }
  return std::make_unique<ConsulRegistration>(std::move(core), std::move(task));
}

}  // namespace disco::consul
