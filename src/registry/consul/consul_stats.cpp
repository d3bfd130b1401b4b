#include "registry/consul/consul_stats.h"

namespace disco::consul {
namespace {

std::array<std::atomic<std::uint64_t>, static_cast<int>(RequestKind::kCount)> g_requests{};

}  // namespace

std::string_view RequestKindName(RequestKind kind) {
  switch (kind) {
    case RequestKind::kRegister:
      return "register";
    case RequestKind::kHeartbeat:
      return "heartbeat";
    case RequestKind::kDeregister:
      return "deregister";
    case RequestKind::kWatch:
      return "watch";
    case RequestKind::kRead:
      return "read";
    case RequestKind::kOther:
      return "other";
    case RequestKind::kCount:
      break;
  }
  return "unknown";
}

void CountRequest(RequestKind kind) {
  g_requests[static_cast<int>(kind)].fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t RequestsSent(RequestKind kind) {
  return g_requests[static_cast<int>(kind)].load(std::memory_order_relaxed);
}

}  // namespace disco::consul
