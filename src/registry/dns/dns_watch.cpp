#include "registry/dns/dns_watch.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "registry/dns/dns_lookup.h"

namespace disco::dns {
namespace {

using std::chrono::milliseconds;

struct WatchState : std::enable_shared_from_this<WatchState> {
  // Raw: the handle owns the loop and outlives every use from the loop thread
  // (its destructor joins that thread when it drops the last owner).
  AresLoop* loop = nullptr;
  std::shared_ptr<const DnsConfig> config;
  std::string service;

  std::mutex callback_mu;  // held while the callback runs
  WatchCallback callback;  // guarded by callback_mu
  bool alive = true;       // guarded by callback_mu
  // The thread running the callback, while it runs: a handle destroyed from
  // inside its own callback must not wait for callback_mu (its own thread
  // holds it).
  std::atomic<std::thread::id> delivering{};

  // Loop thread only.
  std::optional<std::vector<ServiceInstance>> last;  // nullopt: nothing delivered, or an error was
  milliseconds backoff{0};
  std::minstd_rand random{std::random_device{}()};

  bool Alive() {
    std::lock_guard lock(callback_mu);
    return alive;
  }

  void Deliver(const WatchUpdate& update) {
    std::lock_guard lock(callback_mu);
    if (!alive) return;
    struct Delivering {
      std::atomic<std::thread::id>& id;
      explicit Delivering(std::atomic<std::thread::id>& i) : id(i) {
        id.store(std::this_thread::get_id());
      }
      ~Delivering() { id.store(std::thread::id()); }
    } delivering_now(delivering);
    callback(update);
  }

  milliseconds Jittered(milliseconds base) {
    if (config->jitter <= 0) return base;
    std::uniform_real_distribution<double> early(0.0, config->jitter);
    return milliseconds(static_cast<long long>(static_cast<double>(base.count()) * (1.0 - early(random))));
  }

  void Resolve() {
    if (!Alive()) return;
    Lookup(*loop, config, service, [weak = weak_from_this()](Result<LookupResult> result) {
      if (auto self = weak.lock()) self->OnResult(std::move(result));
    });
  }

  void OnResult(Result<LookupResult> result) {
    if (!Alive()) return;
    if (!result && result.error().code == ErrorCode::kCancelled) return;  // the loop is stopping
    milliseconds next;
    if (result) {
      backoff = milliseconds(0);
      if (!last || *last != result->active) {
        Deliver(WatchUpdate{true, result->active, {}});
        last = std::move(result->active);
      }
      next = Jittered(std::clamp<milliseconds>(result->ttl, config->min_refresh, config->max_refresh));
    } else {
      last.reset();  // the next good answer is delivered even if unchanged: a resync
      Deliver(WatchUpdate{false, {}, result.error()});
      backoff = std::clamp(backoff * 2, config->min_refresh, config->max_refresh);
      next = Jittered(backoff);
    }
    loop->After(next, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Resolve();
    });
  }
};

class DnsWatchHandle : public WatchHandle {
 public:
  DnsWatchHandle(std::shared_ptr<AresLoop> loop, std::shared_ptr<WatchState> state)
      : loop_(std::move(loop)), state_(std::move(state)) {}

  ~DnsWatchHandle() override {
    if (state_->delivering.load() == std::this_thread::get_id()) {
      // Destroyed from inside its own callback: this thread holds
      // callback_mu, and the callback cannot be destroyed while it runs (it
      // goes with the state). No callback runs after this one.
      state_->alive = false;
    } else {
      std::lock_guard lock(state_->callback_mu);  // waits out a running callback
      state_->alive = false;
      state_->callback = nullptr;  // what it captured goes now, not at the next timer
    }
    state_.reset();
    loop_.reset();  // last: may join the loop thread
  }

 private:
  std::shared_ptr<AresLoop> loop_;
  std::shared_ptr<WatchState> state_;
};

}  // namespace

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<AresLoop> loop,
                                        std::shared_ptr<const DnsConfig> config, std::string service,
                                        WatchCallback callback) {
  auto state = std::make_shared<WatchState>();
  state->loop = loop.get();
  state->config = std::move(config);
  state->service = std::move(service);
  state->callback = std::move(callback);
  if (!loop->Post([weak = std::weak_ptr<WatchState>(state)] {
        if (auto self = weak.lock()) self->Resolve();
      })) {
    state->Deliver(WatchUpdate{false, {}, {ErrorCode::kUnavailable, "dns:// resolver queue is full; watch not started"}});
  }
  return std::make_unique<DnsWatchHandle>(std::move(loop), std::move(state));
}

}  // namespace disco::dns
