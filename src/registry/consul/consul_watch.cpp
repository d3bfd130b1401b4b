#include "registry/consul/consul_watch.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "registry/consul/consul_codec.h"
#include "util/backoff.h"
#include "util/log.h"

namespace disco::consul {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kMinLoopSpacing{100};

// What the delivery thread needs; shared by the handle and queued deliveries.
struct Delivery {
  explicit Delivery(WatchCallback cb) : callback(std::move(cb)) {}
  std::mutex mu;      // held while the callback runs: one at a time, and the handle waits on it
  bool alive = true;  // guarded by mu
  std::atomic<std::thread::id> in_callback{};
  WatchCallback callback;
};

// The loop's own state, I/O thread only.
struct Task {
  Task(asio::io_context& io, std::string name) : service(std::move(name)), slot(io) {}
  const std::string service;
  CancelSlot slot;
};

void Post(Core* core, const std::shared_ptr<Delivery>& delivery, WatchUpdate update) {
  core->Deliver([delivery, update = std::move(update)] {
    std::lock_guard lock(delivery->mu);
    if (!delivery->alive) return;
    delivery->in_callback.store(std::this_thread::get_id());
    try {
      delivery->callback(update);
    } catch (const std::exception& e) {
      log::Get().error("consul watch callback threw (ignored): {}", e.what());
    } catch (...) {
      log::Get().error("consul watch callback threw (ignored)");
    }
    delivery->in_callback.store(std::thread::id());
  });
}

// What the loop keeps from one blocking query to the next, and what it
// makes of each answer (the index and delivery rules in consul_watch.h). I/O
// thread only.
class WatchState {
 public:
  WatchState(Core* core, const Task& task, std::shared_ptr<Delivery> delivery)
      : core_(core),
        config_(core->config()),
        service_(task.service),
        what_("consul watch " + task.service),
        delivery_(std::move(delivery)),
        blocking_timeout_(
            std::chrono::duration_cast<milliseconds>(config_.wait + config_.wait / 16) +
            config_.request_timeout) {}

  // The next query: blocking on the last index seen, or a full resync.
  HttpRequest NextRequest() const {
    HttpRequest request;
    request.kind = RequestKind::kWatch;
    request.target = HealthTarget(config_, service_, /*passing_only=*/true);
    if (index_ > 0) {
      request.target += "&index=" + std::to_string(index_) +
                        "&wait=" + std::to_string(config_.wait.count()) + "s";
      request.timeout = blocking_timeout_;
    } else {
      request.timeout = config_.request_timeout;
    }
    return request;
  }

  // The error a query's outcome means, if it failed (no answer, or not 200).
  std::optional<Error> FailureOf(const HttpRequest& request, const Result<HttpResponse>& response,
                                 std::size_t agent) const {
    if (!response) return response.error();
    if (response->status != 200)
      return StatusError(core_->client().What(agent), request, *response);
    return std::nullopt;
  }

  // An agent failed and another one is asked next: no error delivered yet,
  // but the next query is a full resync (indexes of two agents need not
  // match).
  void OnFailover() { index_ = 0; }

  // A query failed: the next one resyncs, and the callback hears of it once
  // per distinct error. Returns how long to back off.
  milliseconds OnFailure(const Error& failure) {
    index_ = 0;  // whatever happened meanwhile, the next answer is a full resync
    if (!in_error_ || failure.message != last_error_) {
      // Info, not warn: the callback gets the error and its owner (a
      // resolver, the CLI) decides how loudly to report it.
      log::Get().info("{}: {}; keeping the last known list, retrying", what_, failure.ToString());
      WatchUpdate update;
      update.ok = false;
      update.error = failure;
      Post(core_, delivery_, std::move(update));
    }
    in_error_ = true;
    last_error_ = failure.message;
    return backoff_.Next();
  }

  // A 200 answer: the next index, and the list delivered if it changed.
  void OnAnswer(const HttpResponse& response) {
    backoff_.Reset();
    AdvanceIndex(response.index.value_or(0));
    auto decoded = DecodeHealth(response.body);
    if (!decoded) {
      OnMalformed(decoded.error());
    } else {
      OnHealth(std::move(*decoded));
    }
  }

 private:
  void AdvanceIndex(std::uint64_t fresh) {
    if (fresh == 0) {
      index_ = 1;  // blocking on 0 would return at once, every time
    } else if (fresh < index_) {
      index_ = 0;  // agent restarted or state restored: start over without blocking
    } else {
      index_ = fresh;
    }
  }

  void OnMalformed(const Error& error) {
    log::Get().warn("{}: malformed answer from the agent ({}); keeping the last good list", what_,
                    error.message);
    if (last_ || in_error_) return;
    // Nothing good seen yet: wake the waiters with an error instead.
    WatchUpdate update;
    update.ok = false;
    update.error = Error{ErrorCode::kMalformed, config_.url + ": " + error.message};
    in_error_ = true;
    last_error_ = update.error.message;
    Post(core_, delivery_, std::move(update));
  }

  void OnHealth(DecodedHealth decoded) {
    if (decoded.warnings != last_warnings_) {
      for (const auto& warning : decoded.warnings)
        log::Get().warn("{}: skipped {}", what_, warning);
      last_warnings_ = decoded.warnings;
    }
    std::vector<ServiceInstance> instances;
    instances.reserve(decoded.instances.size());
    for (auto& status : decoded.instances) instances.push_back(std::move(status.instance));
    if (!last_ || in_error_ || *last_ != instances) {
      WatchUpdate update;
      update.instances = instances;
      Post(core_, delivery_, std::move(update));
      last_ = std::move(instances);
    }
    in_error_ = false;
    last_error_.clear();
  }

  Core* const core_;
  const Config& config_;
  const std::string& service_;  // the Task's, which the loop keeps alive
  const std::string what_;
  const std::shared_ptr<Delivery> delivery_;
  const milliseconds blocking_timeout_;
  Backoff backoff_{milliseconds(200), milliseconds(5000)};
  std::uint64_t index_ = 0;
  std::optional<std::vector<ServiceInstance>> last_;  // last list delivered
  bool in_error_ = false;
  std::string last_error_;
  std::vector<std::string> last_warnings_;
};

asio::awaitable<void> WatchLoop(Core* core, std::shared_ptr<Task> task,
                                std::shared_ptr<Delivery> delivery) {
  WatchState state(core, *task, std::move(delivery));
  std::size_t failed_agents = 0;  // agents that failed in a row
  while (!task->slot.cancelled()) {
    const auto started = Clock::now();
    HttpRequest request = state.NextRequest();
    const std::size_t agent = core->DiscoveryAgent();
    auto response = co_await core->client().Send(request, &task->slot, agent);
    if (task->slot.cancelled()) break;
    const std::optional<Error> failure = state.FailureOf(request, response, agent);
    if (failure) {
      if (AgentFailure(*failure) && ++failed_agents < core->agents()) {
        log::Get().info("consul watch {}: {}; asking the next agent", task->service,
                        failure->ToString());
        core->DiscoveryFailed(agent);
        state.OnFailover();
        continue;
      }
      if (AgentFailure(*failure)) core->DiscoveryFailed(agent);
      failed_agents = 0;
      const milliseconds pause = state.OnFailure(*failure);
      co_await task->slot.Sleep(pause);
      continue;
    }
    failed_agents = 0;
    state.OnAnswer(*response);

    // Spaced out, so that wakeups which change nothing cannot make it spin.
    const auto elapsed = Clock::now() - started;
    if (elapsed < kMinLoopSpacing) {
      co_await task->slot.Sleep(
          std::chrono::duration_cast<milliseconds>(kMinLoopSpacing - elapsed));
    }
  }
}

class ConsulWatch final : public WatchHandle {
 public:
  ConsulWatch(std::shared_ptr<Core> core, std::shared_ptr<Task> task,
              std::shared_ptr<Delivery> delivery)
      : core_(std::move(core)), task_(std::move(task)), delivery_(std::move(delivery)) {}

  ~ConsulWatch() override {
    if (task_) asio::post(core_->io(), [task = task_] { task->slot.Cancel(); });
    if (delivery_->in_callback.load() == std::this_thread::get_id()) {
      // Destroyed from inside its own callback (against the contract, but
      // not worth a deadlock): this thread already holds the lock.
      delivery_->alive = false;
      return;
    }
    std::lock_guard lock(delivery_->mu);
    delivery_->alive = false;
  }

 private:
  std::shared_ptr<Core> core_;  // first member: released last
  std::shared_ptr<Task> task_;  // null when the watch never started
  std::shared_ptr<Delivery> delivery_;
};

}  // namespace

std::string HealthTarget(const Config& config, const std::string& service, bool passing_only) {
  std::string target = "/v1/health/service/" + service;
  char sep = '?';
  if (passing_only) {
    target += "?passing";
    sep = '&';
  }
  if (config.stale) {
    target += sep;
    target += "stale";
    sep = '&';
  }
  // ParseConfig admitted only characters that need no escaping here.
  if (!config.dc.empty()) {
    target += sep;
    target += "dc=" + config.dc;
    sep = '&';
  }
  for (const auto& tag : config.tags) {
    target += sep;
    target += "tag=" + tag;
    sep = '&';
  }
  return target;
}

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<Core> core, std::string service,
                                        WatchCallback callback) {
  auto delivery = std::make_shared<Delivery>(std::move(callback));
  if (auto ok = ValidateName("service name", service); !ok) {
    WatchUpdate update;
    update.ok = false;
    update.error = ok.error();
    Post(core.get(), delivery, std::move(update));
    return std::make_unique<ConsulWatch>(std::move(core), nullptr, std::move(delivery));
  }
  auto task = std::make_shared<Task>(core->io(), std::move(service));
  core->Spawn(WatchLoop(core.get(), task, delivery));
  return std::make_unique<ConsulWatch>(std::move(core), std::move(task), std::move(delivery));
}

}  // namespace disco::consul
