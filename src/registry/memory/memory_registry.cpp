#include "registry/memory/memory_registry.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "registry/backends.h"

namespace disco {
namespace {

struct Watcher {
  std::string service;
  WatchCallback callback;
  std::mutex delivery_mu;  // one delivery at a time; held while the callback runs
  bool alive = true;       // guarded by delivery_mu
};

struct Store {
  std::mutex mu;
  bool available = true;
  std::map<std::string, std::map<std::string, ServiceInstance>, std::less<>> services;
  std::vector<std::shared_ptr<Watcher>> watchers;

  // Delivers the current state of the watcher's service. Reading the state
  // inside the delivery lock means the last delivery always shows the latest
  // state, however concurrent changes interleave.
  void Deliver(const std::shared_ptr<Watcher>& watcher) {
    std::lock_guard delivery(watcher->delivery_mu);
    if (!watcher->alive) return;
    WatchUpdate update;
    {
      std::lock_guard lock(mu);
      if (!available) {
        update.ok = false;
        update.error = Error{ErrorCode::kUnavailable, "memory registry marked unavailable"};
      } else if (auto it = services.find(watcher->service); it != services.end()) {
        for (const auto& [id, instance] : it->second) update.instances.push_back(instance);
      }
    }
    watcher->callback(update);
  }

  void Notify(std::string_view service) {
    std::vector<std::shared_ptr<Watcher>> targets;
    {
      std::lock_guard lock(mu);
      for (const auto& w : watchers) {
        if (service.empty() || w->service == service) targets.push_back(w);
      }
    }
    for (const auto& w : targets) Deliver(w);
  }
};

std::mutex g_stores_mu;
std::map<std::string, std::weak_ptr<Store>, std::less<>> g_stores;

std::shared_ptr<Store> StoreFor(std::string_view name) {
  if (name.empty()) return std::make_shared<Store>();
  std::lock_guard lock(g_stores_mu);
  auto& weak = g_stores[std::string(name)];
  auto store = weak.lock();
  if (!store) {
    store = std::make_shared<Store>();
    weak = store;
  }
  return store;
}

Result<void> CheckAvailable(Store& store) {
  if (!store.available) return Fail(ErrorCode::kUnavailable, "memory registry marked unavailable");
  return {};
}

class MemoryWatch final : public WatchHandle {
 public:
  MemoryWatch(std::shared_ptr<Store> store, std::shared_ptr<Watcher> watcher)
      : store_(std::move(store)), watcher_(std::move(watcher)) {}
  ~MemoryWatch() override {
    {
      std::lock_guard lock(store_->mu);
      std::erase(store_->watchers, watcher_);
    }
    std::lock_guard delivery(watcher_->delivery_mu);
    watcher_->alive = false;
  }

 private:
  std::shared_ptr<Store> store_;
  std::shared_ptr<Watcher> watcher_;
};

class MemoryRegistration final : public Registration {
 public:
  MemoryRegistration(std::shared_ptr<Store> store, ServiceInstance instance)
      : store_(std::move(store)), instance_(std::move(instance)) {}
  ~MemoryRegistration() override { (void)Deregister(); }

  Result<void> Deregister() override {
    {
      std::lock_guard lock(store_->mu);
      if (deregistered_) return {};
      deregistered_ = true;
      auto it = store_->services.find(instance_.service);
      if (it != store_->services.end()) {
        it->second.erase(instance_.id);
        if (it->second.empty()) store_->services.erase(it);
      }
    }
    store_->Notify(instance_.service);
    return {};
  }

  const ServiceInstance& instance() const override { return instance_; }
  RegistrationState state() const override {
    std::lock_guard lock(store_->mu);
    if (deregistered_) return RegistrationState::kDeregistered;
    return store_->available ? RegistrationState::kActive : RegistrationState::kRestoring;
  }

 private:
  std::shared_ptr<Store> store_;
  ServiceInstance instance_;
  bool deregistered_ = false;  // guarded by store_->mu
};

class MemoryRegistry final : public Registry {
 public:
  MemoryRegistry(std::string url, std::shared_ptr<Store> store) : url_(std::move(url)), store_(std::move(store)) {}

  const std::string& url() const override { return url_; }

  Result<std::unique_ptr<Registration>> Register(const ServiceInstance& instance,
                                                 const RegisterOptions&) override {
    if (auto ok = Validate(instance); !ok) return std::unexpected(ok.error());
    {
      std::lock_guard lock(store_->mu);
      if (auto ok = CheckAvailable(*store_); !ok) return std::unexpected(ok.error());
      store_->services[instance.service][instance.id] = instance;
    }
    store_->Notify(instance.service);
    return std::make_unique<MemoryRegistration>(store_, instance);
  }

  Result<void> Deregister(std::string_view service, std::string_view id) override {
    {
      std::lock_guard lock(store_->mu);
      if (auto ok = CheckAvailable(*store_); !ok) return ok;
      auto it = store_->services.find(service);
      if (it == store_->services.end()) return {};
      it->second.erase(std::string(id));
      if (it->second.empty()) store_->services.erase(it);
    }
    store_->Notify(service);
    return {};
  }

  Result<std::vector<InstanceStatus>> List(std::string_view service, bool) override {
    std::lock_guard lock(store_->mu);
    if (auto ok = CheckAvailable(*store_); !ok) return std::unexpected(ok.error());
    std::vector<InstanceStatus> out;
    if (auto it = store_->services.find(service); it != store_->services.end()) {
      for (const auto& [id, instance] : it->second) out.push_back({instance, HealthState::kPassing, {}});
    }
    return out;
  }

  Result<std::vector<std::string>> Services() override {
    std::lock_guard lock(store_->mu);
    if (auto ok = CheckAvailable(*store_); !ok) return std::unexpected(ok.error());
    std::vector<std::string> out;
    for (const auto& [name, instances] : store_->services) out.push_back(name);
    return out;
  }

  std::unique_ptr<WatchHandle> Watch(std::string_view service, WatchCallback callback) override {
    auto watcher = std::make_shared<Watcher>();
    watcher->service = std::string(service);
    watcher->callback = std::move(callback);
    {
      std::lock_guard lock(store_->mu);
      store_->watchers.push_back(watcher);
    }
    store_->Deliver(watcher);
    return std::make_unique<MemoryWatch>(store_, watcher);
  }

 private:
  std::string url_;
  std::shared_ptr<Store> store_;
};

}  // namespace

namespace memory {

void SetAvailable(std::string_view name, bool available) {
  auto store = StoreFor(name);
  {
    std::lock_guard lock(store->mu);
    store->available = available;
  }
  store->Notify({});
}

}  // namespace memory

Result<std::unique_ptr<Registry>> MakeMemoryRegistry(const RegistryUrl& url, const RegistryOptions&) {
  return std::make_unique<MemoryRegistry>(url.Redacted(), StoreFor(url.name));
}

}  // namespace disco
