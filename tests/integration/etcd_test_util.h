// Helpers shared by the etcd integration tests: building registries and
// instances, and recording what a watch delivered.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "disco/registry.h"
#include "fixture/etcd_server.h"
#include "fixture/registry_backend.h"
#include "fixture/util.h"

namespace disco::testing {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

inline std::unique_ptr<Registry> OpenEtcd(const std::string& url,
                                          std::chrono::milliseconds timeout = 2000ms) {
  RegistryOptions options;
  options.request_timeout = timeout;
  auto registry = MakeRegistry(url, options);
  EXPECT_TRUE(registry) << registry.error().ToString();
  return registry ? std::move(*registry) : nullptr;
}

inline RegisterOptions Ttl(int seconds) {
  RegisterOptions options;
  options.ttl = std::chrono::seconds(seconds);
  return options;
}

inline std::vector<std::string> Ids(const std::vector<ServiceInstance>& instances) {
  std::vector<std::string> ids;
  for (const auto& instance : instances) ids.push_back(instance.id);
  return ids;
}

inline std::vector<std::string> ListedIds(Registry& registry, const std::string& service) {
  auto list = registry.List(service);
  if (!list) return {"<error: " + list.error().ToString() + ">"};
  std::vector<std::string> ids;
  for (const auto& status : *list) ids.push_back(status.instance.id);
  return ids;
}

// Records every update of one watch; thread-safe.
class WatchRecorder {
 public:
  WatchCallback Callback() {
    return [this](const WatchUpdate& update) { OnUpdate(update); };
  }

  void OnUpdate(const WatchUpdate& update) {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(std::is_sorted(update.instances.begin(), update.instances.end(),
                               [](const auto& a, const auto& b) { return a.id < b.id; }));
    if (update.ok) {
      ++oks_;
      last_ok_ = update.instances;
      last_ok_at_ = SteadyClock::now();
    } else {
      ++errors_;
      last_error_ = update.error;
    }
    last_was_ok_ = update.ok;
    ++updates_;
    cv_.notify_all();
  }

  // True once the latest update is ok and lists exactly `ids` (sorted).
  bool WaitIds(const std::vector<std::string>& ids, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return last_was_ok_ && Ids(last_ok_) == ids; });
  }

  bool WaitError(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return updates_ > 0 && !last_was_ok_; });
  }

  std::vector<std::string> ids() {
    std::lock_guard lock(mu_);
    return Ids(last_ok_);
  }
  std::vector<ServiceInstance> instances() {
    std::lock_guard lock(mu_);
    return last_ok_;
  }
  bool last_was_ok() {
    std::lock_guard lock(mu_);
    return last_was_ok_;
  }
  int errors() {
    std::lock_guard lock(mu_);
    return errors_;
  }
  int updates() {
    std::lock_guard lock(mu_);
    return updates_;
  }
  Error last_error() {
    std::lock_guard lock(mu_);
    return last_error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int updates_ = 0;
  int oks_ = 0;
  int errors_ = 0;
  bool last_was_ok_ = false;
  std::vector<ServiceInstance> last_ok_;
  SteadyClock::time_point last_ok_at_{};
  Error last_error_;
};

// Milliseconds since `start`.
inline long long MillisSince(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

}  // namespace disco::testing
