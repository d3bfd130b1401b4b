// ConnectionLimits: how many client connections a server holds, in all and
// per client address, so that one client cannot take every descriptor.
// Private to src/http (the server admits each accepted socket here).
//
// Three bands, by the number of connections open when one is accepted:
//   below max - reserved     kNormal: served as usual;
//   up to max                kReserve: served for GET /health and GET /metrics
//                            only (others get 503), so that health checks and
//                            scrapes still get in while the server is full;
//   at max                   kFull: refused.
// An address already holding per_address connections gets kPerAddress
// (refused), whatever the band. In either of the last two bands the server
// also closes its oldest idle keep-alive connection, so that idle ones
// (the cheapest to hold open, and what a descriptor-exhaustion attack is made
// of) make room for new ones.
//
// Thread safety: all members may be called from any thread (one short-held
// mutex; one Open and one Close per connection).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "disco/detail/asio.h"

namespace disco::http::detail {

struct ConnectionLimitOptions {
  std::size_t max = 0;          // 0: DefaultMaxConnections()
  std::size_t per_address = 0;  // 0: max / 4
  std::size_t reserved = 16;    // of max, for /health and /metrics; at most max / 2
};

// Half the process's descriptor limit (RLIMIT_NOFILE's soft value), at
// least 64: the other half stays for upstream, database and registry
// connections, log files and the like. At most kMaxDefaultConnections:
// where the limit is huge (containers often allow 2^20), each connection's
// buffers would otherwise bound memory at nothing useful.
inline constexpr std::size_t kMaxDefaultConnections = 16384;
std::size_t DefaultMaxConnections();

class ConnectionLimits {
 public:
  using Key = std::array<unsigned char, 16>;  // the address as IPv6 (IPv4 mapped)
  enum class Admit { kNormal, kReserve, kFull, kPerAddress };

  explicit ConnectionLimits(ConnectionLimitOptions options);

  static Key KeyOf(const boost::asio::ip::address& address);

  // Counts a connection from `key` unless refused (kFull, kPerAddress).
  Admit Open(const Key& key);
  // Uncounts a connection Open() admitted.
  void Close(const Key& key);

  std::size_t open() const;
  const ConnectionLimitOptions& options() const { return options_; }

 private:
  struct KeyHash {
    std::size_t operator()(const Key& key) const;
  };

  ConnectionLimitOptions options_;
  mutable std::mutex mu_;
  std::size_t open_ = 0;
  std::unordered_map<Key, std::uint32_t, KeyHash> per_address_;
};

}  // namespace disco::http::detail
