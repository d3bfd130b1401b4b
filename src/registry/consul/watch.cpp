#include "registry/consul/watch.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "registry/consul/codec.h"
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

asio::awaitable<void> WatchLoop(Core* core, std::shared_ptr<Task> task,
                                std::shared_ptr<Delivery> delivery) {
  const Config& config = core->config();
  const std::string what = "consul watch " + task->service;
  std::uint64_t index = 0;
  std::optional<std::vector<ServiceInstance>> last;  // last list delivered
  bool in_error = false;
  std::string last_error;
  std::vector<std::string> last_warnings;
  Backoff backoff(milliseconds(200), milliseconds(5000));
  const milliseconds blocking_timeout =
      std::chrono::duration_cast<milliseconds>(config.wait + config.wait / 16) +
      config.request_timeout;

  while (!task->slot.cancelled()) {
    const auto started = Clock::now();
    HttpRequest request;
    request.kind = RequestKind::kWatch;
    request.target = HealthTarget(config, task->service, /*passing_only=*/true);
    if (index > 0) {
      request.target +=
          "&index=" + std::to_string(index) + "&wait=" + std::to_string(config.wait.count()) + "s";
      request.timeout = blocking_timeout;
    } else {
      request.timeout = config.request_timeout;
    }
    auto response = co_await core->client().Send(request, &task->slot);
    if (task->slot.cancelled()) break;

    std::optional<Error> failure;
    if (!response) {
      failure = response.error();
    } else if (response->status != 200) {
      failure = StatusError(config.url, request, *response);
    }
    if (failure) {
      index = 0;  // whatever happened meanwhile, the next answer is a full resync
      if (!in_error || failure->message != last_error) {
        // Info, not warn: the callback gets the error and its owner (a
        // resolver, the CLI) decides how loudly to report it.
        log::Get().info("{}: {}; keeping the last known list, retrying", what, failure->ToString());
        WatchUpdate update;
        update.ok = false;
        update.error = *failure;
        Post(core, delivery, std::move(update));
      }
      in_error = true;
      last_error = failure->message;
      co_await task->slot.Sleep(backoff.Next());
      continue;
    }
    backoff.Reset();

    const std::uint64_t fresh = response->index.value_or(0);
    if (fresh == 0) {
      index = 1;  // blocking on 0 would return at once, every time
    } else if (fresh < index) {
      index = 0;  // agent restarted or state restored: start over without blocking
    } else {
      index = fresh;
    }

    auto decoded = DecodeHealth(response->body);
    if (!decoded) {
      log::Get().warn("{}: malformed answer from the agent ({}); keeping the last good list", what,
                      decoded.error().message);
      if (!last && !in_error) {
        // Nothing good seen yet: wake the waiters with an error instead.
        WatchUpdate update;
        update.ok = false;
        update.error = Error{ErrorCode::kMalformed, config.url + ": " + decoded.error().message};
        in_error = true;
        last_error = update.error.message;
        Post(core, delivery, std::move(update));
      }
    } else {
      if (decoded->warnings != last_warnings) {
        for (const auto& warning : decoded->warnings)
          log::Get().warn("{}: skipped {}", what, warning);
        last_warnings = decoded->warnings;
      }
      std::vector<ServiceInstance> instances;
      instances.reserve(decoded->instances.size());
      for (auto& status : decoded->instances) instances.push_back(std::move(status.instance));
      if (!last || in_error || *last != instances) {
        WatchUpdate update;
        update.instances = instances;
        Post(core, delivery, std::move(update));
        last = std::move(instances);
      }
      in_error = false;
      last_error.clear();
    }

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
