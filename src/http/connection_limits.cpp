#include "http/connection_limits.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>

namespace disco::http::detail {

std::size_t DefaultMaxConnections() {
  rlimit limit{};
  std::size_t descriptors = 1024;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
    descriptors = static_cast<std::size_t>(limit.rlim_cur);
  else if (limit.rlim_cur == RLIM_INFINITY)
    descriptors = 1 << 20;
  return std::clamp<std::size_t>(descriptors / 2, 64, kMaxDefaultConnections);
}

ConnectionLimits::ConnectionLimits(ConnectionLimitOptions options) : options_(options) {
  if (options_.max == 0) options_.max = DefaultMaxConnections();
  if (options_.per_address == 0) options_.per_address = std::max<std::size_t>(1, options_.max / 4);
  options_.reserved = std::min(options_.reserved, options_.max / 2);
}

ConnectionLimits::Key ConnectionLimits::KeyOf(const boost::asio::ip::address& address) {
  if (address.is_v4())
    return boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, address.to_v4()).to_bytes();
  return address.to_v6().to_bytes();
}

std::size_t ConnectionLimits::KeyHash::operator()(const Key& key) const {
  std::uint64_t a, b;
  std::memcpy(&a, key.data(), 8);
  std::memcpy(&b, key.data() + 8, 8);
  return static_cast<std::size_t>((a ^ (b * 0x9e3779b97f4a7c15ULL)) * 0xbf58476d1ce4e5b9ULL);
}

ConnectionLimits::Admit ConnectionLimits::Open(const Key& key) {
  std::lock_guard lock(mu_);
  if (open_ >= options_.max) return Admit::kFull;
  auto& count = per_address_[key];  // not 0 once made: per_address >= 1
  if (count >= options_.per_address) return Admit::kPerAddress;
  ++count;
  ++open_;
  return open_ > options_.max - options_.reserved ? Admit::kReserve : Admit::kNormal;
}

void ConnectionLimits::Close(const Key& key) {
  std::lock_guard lock(mu_);
  auto it = per_address_.find(key);
  if (it == per_address_.end()) return;
  if (--it->second == 0) per_address_.erase(it);
  --open_;
}

std::size_t ConnectionLimits::open() const {
  std::lock_guard lock(mu_);
  return open_;
}

}  // namespace disco::http::detail
