#include "disco/resolver.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>

#include "disco/metrics.h"
#include "resolve/pin_slots.h"
#include "resolve/resolver_metrics.h"
#include "util/log.h"

namespace disco {
namespace detail {

// What Pick() reads: a snapshot and the picker built from it. `generation` is
// unique across every resolver of the process, so a per-thread cache keyed by
// (resolver address, generation) can never confuse two resolvers.
struct Published {
  SnapshotConstPtr snapshot;
  std::unique_ptr<Picker> picker;
  std::uint64_t generation = 0;
};

}  // namespace detail

namespace {

using detail::Pinned;
using detail::Published;

using Clock = std::chrono::steady_clock;

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
                  std::shared_ptr<OutlierDetector> detector,
                  std::chrono::milliseconds recovery_grace)
      : service_(std::move(service)),
        recovery_grace_(recovery_grace),
        detector_(std::move(detector)) {
    balancer_ =
        detector_ ? WithOutlierDetection(std::move(balancer), detector_) : std::move(balancer);
    auto empty = std::make_shared<Snapshot>();
    empty->service = service_;
    Publish(std::move(empty));
  }

  ~WatchedResolver() override {
    collectors_.clear();  // no scrape reads this resolver after this
    watch_.reset();       // no watch callback runs after this
    {
      std::lock_guard lock(update_mu_);
      stopping_ = true;
    }
    grace_cv_.notify_all();
    if (grace_thread_.joinable()) grace_thread_.join();
  }

  void AddMetrics(MetricsRegistry& metrics) {
    collectors_ = AddResolverMetrics(metrics, *this, detector_.get(), held_count_);
  }

  void Start(Registry& registry) {
    watch_ = registry.Watch(service_, [this](const WatchUpdate& update) { OnUpdate(update); });
  }

  const std::string& service() const override { return service_; }

  SnapshotConstPtr snapshot() const override {
    return current_.load(std::memory_order_acquire)->snapshot;
  }

  EndpointPtr Pick(const PickContext& context) override {
    Pinned* pinned = Current();
    if (pinned == nullptr) [[unlikely]]
      return PickUnpinned(context);
    PickContext mine = context;
    mine.thread_position = &pinned->position;
    const Endpoint* endpoint = pinned->published->picker->Pick(mine);
    if (endpoint == nullptr) return nullptr;
    endpoint->stats->Count(EndpointStats::kPicks);
    // Counted on this thread's pin with plain arithmetic (endpoint_ptr.h).
    return pinned->pin->ShareOwned(endpoint);
  }

  void Report(const Endpoint& endpoint, CallOutcome outcome) override {
    if (detector_) {
      detector_->Record(endpoint, outcome);
      return;
    }
    CountOutcome(*endpoint.stats, outcome);
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

  std::unique_ptr<Subscription> Subscribe(
      std::function<void(const SnapshotConstPtr&)> callback) override {
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
  // A pick without a slot (a thread-local destructor at thread exit, after
  // the thread's slots went; a resolver numbered kMaxPinSlots or more): a
  // pin of its own, let go at once, so counted atomically.
  EndpointPtr PickUnpinned(const PickContext& context) {
    auto published = current_.load(std::memory_order_acquire);
    const Endpoint* endpoint = published->picker->Pick(context);
    if (endpoint == nullptr) return nullptr;
    endpoint->stats->Count(EndpointStats::kPicks);
    return EndpointPtr(published->snapshot, endpoint);
  }

  // The calling thread's Pinned for this resolver (resolve/pin_slots.h),
  // refreshed only when the generation moved. The fast path is five loads
  // and three compares; nullptr in a thread-local destructor after the
  // thread's slots were let go, or beyond kMaxPinSlots live resolvers.
  Pinned* Current() {
    detail::PinSlot* slot = detail::ThreadPinSlot(number_.value());
    if (slot == nullptr) [[unlikely]]
      return nullptr;
    const std::uint64_t generation = generation_.load(std::memory_order_acquire);
    if (slot->owner != this || slot->generation != generation) [[unlikely]] {
      auto published = current_.load(std::memory_order_acquire);
      // Allocate before touching the slot: if this throws, the slot still
      // holds a whole Pinned for its owner and generation.
      auto* pin = new detail::SnapshotPin(published->snapshot);
      const std::uint64_t filled = published->generation;
      detail::FillPinSlot(*slot, number_.value(), this, std::move(published), pin, filled);
    }
    return &slot->pinned;
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
    std::unique_lock serial(update_mu_);
    if (!update.ok) {
      {
        std::lock_guard lock(mu_);
        if (!stale_since_) {
          stale_since_ = Clock::now();
          log::Get().warn(
              "resolver {}: registry unreachable, serving the last known {} endpoint(s): {}",
              service_, snapshot()->endpoints.size(), update.error.ToString());
        }
        last_error_ = update.error.ToString();
        got_update_ = true;
      }
      ready_cv_.notify_all();
      return;
    }
    // The registry answered: no longer stale, and so before the snapshot it
    // gave is published. Whoever sees that snapshot must not see it called
    // stale (a test that waited for the snapshot saw 2 s of staleness).
    bool recovering = false, was_stale = false;
    {
      std::lock_guard lock(mu_);
      was_stale = stale_since_.has_value();
      recovering = was_stale && got_snapshot_;
      stale_since_.reset();
      last_error_.clear();
    }
    registry_view_ = update.instances;
    if (recovering && recovery_grace_.count() > 0) {
      // Everything we served before the outage may be alive and about to
      // register again: hold it until the registry lists it or the grace ends.
      held_.clear();
      for (const auto& endpoint : snapshot()->endpoints) held_.push_back(endpoint.instance);
      hold_until_ = Clock::now() + recovery_grace_;
    }
    std::size_t held = ApplyLocked();
    {
      std::lock_guard lock(mu_);
      if (was_stale) {
        if (held > 0) {
          log::Get().info(
              "resolver {}: registry reachable again, {} endpoint(s); keeping {} it does not "
              "list yet for up to {} ms",
              service_, update.instances.size(), held, recovery_grace_.count());
        } else {
          log::Get().info("resolver {}: registry reachable again, {} endpoint(s)", service_,
                          update.instances.size());
        }
      }
      got_update_ = true;
      got_snapshot_ = true;
    }
    ready_cv_.notify_all();
    if (held > 0) ArmGraceTimerLocked();
  }

  // Publishes the registry's view plus the endpoints still held after an
  // outage (if any, and if the grace is not over), when that differs from the
  // current snapshot. Returns how many endpoints are held.
  // REQUIRES: update_mu_ held.
  std::size_t ApplyLocked() {
    if (!held_.empty()) {
      std::unordered_set<std::string_view> listed;
      for (const auto& instance : registry_view_) listed.insert(instance.id);
      // Listed once: confirmed, from now on the registry decides about it.
      std::erase_if(held_, [&](const ServiceInstance& i) { return listed.contains(i.id); });
      if (!held_.empty() && Clock::now() >= hold_until_) {
        for (const auto& instance : held_) {
          log::Get().warn(
              "resolver {}: {} ({}) was not registered again within {} ms of the registry's "
              "return; dropping it",
              service_, instance.id, instance.Address(), recovery_grace_.count());
        }
        held_.clear();
      }
    }
    held_count_.store(held_.size());
    std::vector<ServiceInstance> wanted = registry_view_;
    wanted.insert(wanted.end(), held_.begin(), held_.end());
    // Sorted by id like a snapshot's endpoints, to compare with the current
    // one; MakeSnapshot then finds it sorted and does not sort again.
    std::sort(wanted.begin(), wanted.end(),
              [](const ServiceInstance& a, const ServiceInstance& b) { return a.id < b.id; });

    auto previous = snapshot();
    bool changed = previous->version == 0 || previous->endpoints.size() != wanted.size();
    if (!changed) {
      for (std::size_t i = 0; i < wanted.size(); ++i) {
        if (!(previous->endpoints[i].instance == wanted[i])) {
          changed = true;
          break;
        }
      }
    }
    if (changed) {
      auto fresh = MakeSnapshot(service_, std::move(wanted), previous.get(), previous->version + 1);
      Publish(fresh);
      std::lock_guard lock(subscribers_mu_);
      for (auto& [id, callback] : subscribers_) callback(fresh);
    }
    return held_.size();
  }

  // Makes sure a thread will re-apply the registry's view when the grace
  // ends. The thread exits once nothing is held, and is made again on the
  // next outage (rare), so an idle resolver owns no thread. It publishes, and
  // so calls subscribers, itself (resolver.h says so): no update may come
  // from the watch to do it.
  // REQUIRES: update_mu_ held.
  void ArmGraceTimerLocked() {
    if (grace_running_) {
      grace_cv_.notify_all();
      return;
    }
    // A finished thread released update_mu_ for good before we got it.
    if (grace_thread_.joinable()) grace_thread_.join();
    grace_running_ = true;
    grace_thread_ = std::thread([this] {
      std::unique_lock lock(update_mu_);
      while (!stopping_ && !held_.empty()) {
        if (Clock::now() >= hold_until_) {
          ApplyLocked();
          break;
        }
        grace_cv_.wait_until(lock, hold_until_);
      }
      grace_running_ = false;
    });
  }

  const std::string service_;
  const std::chrono::milliseconds recovery_grace_;
  std::shared_ptr<OutlierDetector> detector_;
  std::unique_ptr<Balancer> balancer_;
  std::atomic<std::shared_ptr<Published>> current_;
  std::atomic<std::uint64_t> generation_{0};
  const detail::PinNumber number_;  // this resolver's slot in each thread's array

  mutable std::mutex mu_;
  std::condition_variable ready_cv_;
  bool got_update_ = false;
  bool got_snapshot_ = false;
  std::optional<Clock::time_point> stale_since_;
  std::string last_error_;

  std::mutex subscribers_mu_;
  std::uint64_t next_subscriber_id_ = 0;
  std::list<std::pair<std::uint64_t, std::function<void(const SnapshotConstPtr&)>>> subscribers_;

  // Serialises watch updates and the end of a recovery grace (both publish).
  std::mutex update_mu_;
  std::vector<ServiceInstance> registry_view_;  // the registry's last list
  std::vector<ServiceInstance> held_;           // kept after an outage, not listed yet
  Clock::time_point hold_until_{};
  std::atomic<std::size_t> held_count_{0};  // held_.size(), for scrapes
  std::condition_variable grace_cv_;
  std::thread grace_thread_;
  bool grace_running_ = false;
  bool stopping_ = false;

  std::vector<std::unique_ptr<CollectorHandle>> collectors_;
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
  auto resolver = std::make_unique<WatchedResolver>(std::move(service), std::move(*balancer),
                                                    std::move(detector), options.recovery_grace);
  resolver->AddMetrics(options.metrics ? *options.metrics : MetricsRegistry::Default());
  resolver->Start(registry);
  return resolver;
}

}  // namespace disco
