#include "gateway/catalog.h"

#include "common/logging.h"

namespace disco::gateway {

Catalog::Catalog(Registry& registry, Proxy& proxy, std::chrono::milliseconds refresh)
    : registry_(registry), refresh_(refresh) {
  for (const auto& route : proxy.routes()) {
    auto& entry = entries_[route->config.service];
    entry.service = route->config.service;
    entry.routes.push_back(route->config.prefix);
    if (entry.resolver == nullptr) {
      entry.resolver = &route->channel->resolver();
      entry.policy = route->config.policy;
    }
  }
  thread_ = std::thread([this] { Run(); });
}

Catalog::~Catalog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Catalog::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Refresh();
    lock.lock();
    cv_.wait_for(lock, refresh_, [&] { return stopping_; });
  }
}

void Catalog::Refresh() {
  auto names = registry_.Services();
  if (!names) {
    std::lock_guard lock(mu_);
    if (last_error_.empty()) {
      service::Log().warn("catalog: cannot list services ({}); showing the last known ones",
                          names.error().ToString());
    }
    last_error_ = names.error().ToString();
    return;
  }
  std::vector<std::string> fresh;
  {
    std::lock_guard lock(mu_);
    last_error_.clear();
    for (const auto& name : *names) {
      if (!entries_.contains(name)) fresh.push_back(name);
    }
  }
  for (const auto& name : fresh) {
    // Made outside the lock: Resolver::Make starts a watch.
    auto made = Resolver::Make(registry_, name);
    if (!made) {
      service::Log().warn("catalog: cannot watch service {}: {}", name, made.error().ToString());
      continue;
    }
    std::lock_guard lock(mu_);
    Entry entry;
    entry.service = name;
    entry.resolver = made->get();
    entry.policy = "round_robin";
    own_.push_back(std::move(*made));
    entries_.emplace(name, std::move(entry));
  }
}

std::vector<Catalog::Entry> Catalog::Entries() const {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(entry);
  return out;
}

std::string Catalog::LastError() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

}  // namespace disco::gateway
