// A Registry decorator that counts what every backend does, so the metrics of
// registry traffic are written once instead of in each backend:
//   disco_registry_operations_total{backend,operation,result}
//     operation: register, deregister, list, services, watch_update;
//     result: ok or the error code's name (unavailable, timeout, ...)
//   disco_registrations{backend,service,state}  registrations of this process
//     by state (active, restoring, deregistered), read at scrape time
// Everything is forwarded unchanged; the decorator adds no locking of its own
// on the way (counters are relaxed atomics looked up once per result).
#include <mutex>
#include <set>

#include "disco/metrics.h"
#include "registry/backends.h"

namespace disco {
namespace {

class Counters {
 public:
  Counters(MetricsRegistry& metrics, std::string backend)
      : family_(metrics.CounterFamily(
            "disco_registry_operations_total",
            "Registry operations by backend, operation and result (ok or error code)",
            {"backend", "operation", "result"})),
        backend_(std::move(backend)) {}

  template <class T>
  void Count(std::string_view operation, const Result<T>& result) {
    family_
        .With({backend_, operation,
               result ? std::string_view("ok") : ErrorCodeName(result.error().code)})
        .Inc();
  }
  void CountWatch(const WatchUpdate& update) {
    family_
        .With({backend_, "watch_update",
               update.ok ? std::string_view("ok") : ErrorCodeName(update.error.code)})
        .Inc();
  }

 private:
  Family<Counter>& family_;
  const std::string backend_;
};

class InstrumentedRegistration;

// The registrations alive in one instrumented registry, for the state gauge.
struct LiveRegistrations {
  std::mutex mu;
  std::set<const Registration*> items;
};

class InstrumentedRegistration final : public Registration {
 public:
  InstrumentedRegistration(std::unique_ptr<Registration> inner, std::shared_ptr<Counters> counters,
                           std::shared_ptr<LiveRegistrations> live)
      : inner_(std::move(inner)), counters_(std::move(counters)), live_(std::move(live)) {
    std::lock_guard lock(live_->mu);
    live_->items.insert(inner_.get());
  }
  ~InstrumentedRegistration() override {
    {
      std::lock_guard lock(live_->mu);
      live_->items.erase(inner_.get());
    }
    inner_.reset();  // deregisters, as the backend's destructor does
  }

  Result<void> Deregister() override {
    auto result = inner_->Deregister();
    counters_->Count("deregister", result);
    return result;
  }
  const ServiceInstance& instance() const override { return inner_->instance(); }
  RegistrationState state() const override { return inner_->state(); }

 private:
  std::unique_ptr<Registration> inner_;
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<LiveRegistrations> live_;
};

class InstrumentedRegistry final : public Registry {
 public:
  InstrumentedRegistry(std::unique_ptr<Registry> inner, std::string backend,
                       MetricsRegistry& metrics)
      : inner_(std::move(inner)),
        counters_(std::make_shared<Counters>(metrics, backend)),
        live_(std::make_shared<LiveRegistrations>()) {
    registrations_ = metrics.AddCollector(
        "disco_registrations",
        "Registrations of this process by state (active, restoring, deregistered)",
        CollectedType::kGauge, {"backend", "service", "id", "state"},
        [live = live_, backend](std::vector<CollectedSample>& out) {
          std::lock_guard lock(live->mu);
          for (const Registration* r : live->items) {
            out.push_back({{backend, r->instance().service, r->instance().id,
                            std::string(RegistrationStateName(r->state()))},
                           1});
          }
        });
  }
  ~InstrumentedRegistry() override { registrations_.reset(); }

  const std::string& url() const override { return inner_->url(); }

  Result<std::unique_ptr<Registration>> Register(const ServiceInstance& instance,
                                                 const RegisterOptions& options) override {
    auto made = inner_->Register(instance, options);
    counters_->Count("register", made);
    if (!made) return made;
    return std::unique_ptr<Registration>(
        std::make_unique<InstrumentedRegistration>(std::move(*made), counters_, live_));
  }

  Result<void> Deregister(std::string_view service, std::string_view id) override {
    auto result = inner_->Deregister(service, id);
    counters_->Count("deregister", result);
    return result;
  }

  Result<std::vector<InstanceStatus>> List(std::string_view service,
                                           bool include_unhealthy) override {
    auto result = inner_->List(service, include_unhealthy);
    counters_->Count("list", result);
    return result;
  }

  Result<std::vector<std::string>> Services() override {
    auto result = inner_->Services();
    counters_->Count("services", result);
    return result;
  }

  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    return inner_->Watch(
        service, [counters = counters_, callback = std::move(callback)](const WatchUpdate& update) {
          counters->CountWatch(update);
          callback(update);
        });
  }

 private:
  std::unique_ptr<Registry> inner_;
  std::shared_ptr<Counters> counters_;
  std::shared_ptr<LiveRegistrations> live_;
  std::unique_ptr<CollectorHandle> registrations_;
};

}  // namespace

std::unique_ptr<Registry> InstrumentRegistry(std::unique_ptr<Registry> inner, std::string backend,
                                             MetricsRegistry& metrics) {
  return std::make_unique<InstrumentedRegistry>(std::move(inner), std::move(backend), metrics);
}

}  // namespace disco
