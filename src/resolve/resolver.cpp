#include "disco/resolver.h"

#include <array>
#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>

#include "util/log.h"

namespace disco {
namespace {

using Clock = std::chrono::steady_clock;

// What Pick() reads: a snapshot and the picker built from it. `generation` is
// unique across every resolver of the process, so a per-thread cache keyed by
// (resolver address, generation) can never confuse two resolvers.
struct Published {
  SnapshotConstPtr snapshot;
  std::unique_ptr<Picker> picker;
  std::uint64_t generation = 0;
};

std::atomic<std::uint64_t> g_generation{0};

class WatchedResolver;

class SubscriptionImpl final : public Resolver::Subscription {
 public:
  SubscriptionImpl(WatchedResolver* owner, std::uint64_t id) : owner_(owner), id_(id) {}
  ~SubscriptionImpl() override;

 private:
  WatchedResolver* owner_;
  std::uint64_t id_;
};

class WatchedResolver final : public Resolver {
 public:
  WatchedResolver(std::string service, std::unique_ptr<Balancer> balancer,
                  std::shared_ptr<OutlierDetector> detector)
      : service_(std::move(service)), detector_(std::move(detector)) {
    balancer_ = detector_ ? WithOutlierDetection(std::move(balancer), detector_) : std::move(balancer);
    auto empty = std::make_shared<Snapshot>();
    empty->service = service_;
    Publish(std::move(empty));
  }

  ~WatchedResolver() override {
    watch_.reset();  // no watch callback runs after this
  }

  void Start(Registry& registry) {
    watch_ = registry.Watch(service_, [this](const WatchUpdate& update) { OnUpdate(update); });
  }

  const std::string& service() const override { return service_; }

  SnapshotConstPtr snapshot() const override { return current_.load(std::memory_order_acquire)->snapshot; }

  EndpointPtr Pick(const PickContext& context) override {
    const std::shared_ptr<Published>& published = Current();
    const Endpoint* endpoint = published->picker->Pick(context);
    if (endpoint == nullptr) return nullptr;
    endpoint->stats->picks.fetch_add(1, std::memory_order_relaxed);
    // Aliasing constructor: shares ownership of the snapshot, no allocation.
    return EndpointPtr(published->snapshot, endpoint);
  }

  void Report(const Endpoint& endpoint, CallOutcome outcome) override {
    if (detector_) {
      detector_->Record(endpoint, outcome);
      return;
    }
    if (outcome == CallOutcome::kSuccess) {
      endpoint.stats->successes.fetch_add(1, std::memory_order_relaxed);
      endpoint.stats->consecutive_failures.store(0, std::memory_order_relaxed);
    } else {
      endpoint.stats->failures.fetch_add(1, std::memory_order_relaxed);
      endpoint.stats->consecutive_failures.fetch_add(1, std::memory_order_relaxed);
    }
  }

  OutlierDetector* outlier_detector() override { return detector_.get(); }

  bool WaitReady(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    ready_cv_.wait_for(lock, timeout, [&] { return got_update_; });
    return got_snapshot_;
  }

  std::chrono::milliseconds Staleness() const override {
    std::lock_guard lock(mu_);
    if (!stale_since_) return std::chrono::milliseconds(0);
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - *stale_since_);
  }

  std::string LastError() const override {
    std::lock_guard lock(mu_);
    return last_error_;
  }

  std::unique_ptr<Subscription> Subscribe(std::function<void(const SnapshotConstPtr&)> callback) override {
    std::lock_guard lock(subscribers_mu_);
    auto id = ++next_subscriber_id_;
    subscribers_.emplace_back(id, std::move(callback));
    return std::make_unique<SubscriptionImpl>(this, id);
  }

  void Unsubscribe(std::uint64_t id) {
    // Taking the mutex also waits for a callback in progress to finish.
    std::lock_guard lock(subscribers_mu_);
    subscribers_.remove_if([id](const auto& entry) { return entry.first == id; });
  }

 private:
  // The calling thread's cached pointer to the current Published; refreshed
  // only when the generation moved. The fast path is two loads and a compare.
  const std::shared_ptr<Published>& Current() {
    struct Slot {
      const WatchedResolver* owner = nullptr;
      std::uint64_t generation = 0;
      std::shared_ptr<Published> published;
    };
    thread_local std::array<Slot, 8> slots;
    auto& slot = slots[(reinterpret_cast<std::uintptr_t>(this) >> 6) % slots.size()];
    std::uint64_t generation = generation_.load(std::memory_order_acquire);
    if (slot.owner != this || slot.generation != generation) [[unlikely]] {
      slot.published = current_.load(std::memory_order_acquire);
      slot.owner = this;
      slot.generation = slot.published->generation;
    }
    return slot.published;
  }

  void Publish(SnapshotConstPtr snapshot) {
    auto published = std::make_shared<Published>();
    published->picker = balancer_->Build(snapshot);
    published->snapshot = std::move(snapshot);
    published->generation = g_generation.fetch_add(1, std::memory_order_relaxed) + 1;
    auto generation = published->generation;
    current_.store(std::move(published), std::memory_order_release);
    generation_.store(generation, std::memory_order_release);
  }

  void OnUpdate(const WatchUpdate& update) {
    if (!update.ok) {
      {
        std::lock_guard lock(mu_);
        if (!stale_since_) {
          stale_since_ = Clock::now();
          log::Get().warn("resolver {}: registry unreachable, serving the last known {} endpoint(s): {}",
                          service_, snapshot()->endpoints.size(), update.error.ToString());
        }
        last_error_ = update.error.ToString();
        got_update_ = true;
      }
      ready_cv_.notify_all();
      return;
    }
    auto previous = snapshot();
    bool changed = previous->version == 0 || previous->endpoints.size() != update.instances.size();
    if (!changed) {
      for (std::size_t i = 0; i < update.instances.size(); ++i) {
        if (!(previous->endpoints[i].instance == update.instances[i])) {
          changed = true;
          break;
        }
      }
    }
    SnapshotConstPtr fresh;
    if (changed) {
      fresh = MakeSnapshot(service_, update.instances, previous.get(), previous->version + 1);
      Publish(fresh);
    }
    {
      std::lock_guard lock(mu_);
      if (stale_since_) {
        log::Get().info("resolver {}: registry reachable again, {} endpoint(s)", service_,
                        update.instances.size());
      }
      stale_since_.reset();
      last_error_.clear();
      got_update_ = true;
      got_snapshot_ = true;
    }
    ready_cv_.notify_all();
    if (fresh) {
      std::lock_guard lock(subscribers_mu_);
      for (auto& [id, callback] : subscribers_) callback(fresh);
    }
  }

  const std::string service_;
  std::shared_ptr<OutlierDetector> detector_;
  std::unique_ptr<Balancer> balancer_;
  std::atomic<std::shared_ptr<Published>> current_;
  std::atomic<std::uint64_t> generation_{0};

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;
  bool got_update_ = false;
  bool got_snapshot_ = false;
  std::optional<Clock::time_point> stale_since_;
  std::string last_error_;

  std::mutex subscribers_mu_;
  std::uint64_t next_subscriber_id_ = 0;
  std::list<std::pair<std::uint64_t, std::function<void(const SnapshotConstPtr&)>>> subscribers_;

  std::unique_ptr<WatchHandle> watch_;  // last member: destroyed first
};

SubscriptionImpl::~SubscriptionImpl() { owner_->Unsubscribe(id_); }

}  // namespace

Result<std::unique_ptr<Resolver>> Resolver::Make(Registry& registry, std::string service,
                                                 ResolverOptions options) {
  if (auto ok = ValidateName("service name", service); !ok) return std::unexpected(ok.error());
  auto balancer = MakeBalancer(options.policy);
  if (!balancer) return std::unexpected(balancer.error());
  std::shared_ptr<OutlierDetector> detector;
  if (options.outlier_detection) {
    detector = std::make_shared<OutlierDetector>(service, *options.outlier_detection);
  }
  auto resolver = std::make_unique<WatchedResolver>(std::move(service), std::move(*balancer), std::move(detector));
  resolver->Start(registry);
  return resolver;
}

}  // namespace disco
