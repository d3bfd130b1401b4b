#include "registry/dns/dns_watch.h"

#include <algorithm>
#include <optional>
#include <random>

#include "registry/dns/dns_lookup.h"

namespace disco::dns {
namespace {

using std::chrono::milliseconds;

struct WatchState : std::enable_shared_from_this<WatchState> {
  // Raw: both live as long as the c-ares thread, the only one using them
  // (Threads joins it before the delivery thread goes).
  AresLoop* loop = nullptr;
  DeliveryThread* delivery = nullptr;
  std::shared_ptr<const DnsConfig> config;
  std::string service;
  std::shared_ptr<Mailbox> mailbox;

  // Loop thread only.
  std::optional<std::vector<ServiceInstance>> last;  // nullopt: nothing delivered, or an error was
  milliseconds backoff{0};
  std::minstd_rand random{std::random_device{}()};

  bool Alive() const { return !mailbox->closed(); }
  void Deliver(WatchUpdate update) { delivery->Send(mailbox, std::move(update)); }

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
  DnsWatchHandle(std::shared_ptr<Threads> threads, std::shared_ptr<WatchState> state)
      : threads_(std::move(threads)), state_(std::move(state)) {}

  ~DnsWatchHandle() override {
    state_->mailbox->Close();  // returns at once from inside its own callback
    state_.reset();            // the c-ares thread's timers hold it weakly: they stop
    threads_.reset();          // last: may join both threads
  }

 private:
  std::shared_ptr<Threads> threads_;
  std::shared_ptr<WatchState> state_;
};

}  // namespace

std::unique_ptr<WatchHandle> StartWatch(std::shared_ptr<Threads> threads,
                                        std::shared_ptr<const DnsConfig> config, std::string service,
                                        WatchCallback callback) {
  auto state = std::make_shared<WatchState>();
  state->loop = threads->loop.get();
  state->delivery = &threads->delivery;
  state->config = std::move(config);
  state->service = std::move(service);
  state->mailbox = std::make_shared<Mailbox>(std::move(callback));
  if (!threads->loop->Post([weak = std::weak_ptr<WatchState>(state)] {
        if (auto self = weak.lock()) self->Resolve();
      })) {
    state->Deliver(WatchUpdate{
        false, {}, {ErrorCode::kUnavailable, "dns:// resolver queue is full; watch not started"}});
  }
  return std::make_unique<DnsWatchHandle>(std::move(threads), std::move(state));
}

}  // namespace disco::dns
