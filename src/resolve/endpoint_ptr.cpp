#include "disco/endpoint_ptr.h"

namespace disco::detail {

constinit thread_local std::uint64_t t_pin_thread = 0;

namespace {
std::atomic<std::uint64_t> g_next_thread{1};
}  // namespace

std::uint64_t NumberThisThread() noexcept {
  t_pin_thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);
  return t_pin_thread;
}

SnapshotPin::SnapshotPin(SnapshotConstPtr snapshot)
    : snapshot_(std::move(snapshot)), owner_(ThisThread()) {}

void SnapshotPin::AcquireShared() noexcept {
  // Relaxed as shared_ptr's increment: the caller already holds a reference.
  shared_.fetch_add(1, std::memory_order_relaxed);
}

void SnapshotPin::ReleaseShared() noexcept {
  // acq_rel as shared_ptr's decrement: what this thread did with the
  // snapshot happens before whoever frees it.
  if (shared_.fetch_sub(1, std::memory_order_acq_rel) == kMerged + 1) delete this;
}

void SnapshotPin::Disown() noexcept {
  const std::int64_t others = owned_ - 1;  // the owner's copies still out there
  owned_ = 0;
  disowned_ = true;
  const std::int64_t before = shared_.fetch_add(kMerged + others, std::memory_order_acq_rel);
  if (before + others == 0) delete this;
}

}  // namespace disco::detail

namespace disco {

EndpointPtr::EndpointPtr(SnapshotConstPtr snapshot, const Endpoint* endpoint) {
  if (endpoint == nullptr) return;
  auto* pin = new detail::SnapshotPin(std::move(snapshot));
  *this = pin->ShareOwned(endpoint);
  pin->Disown();
}

}  // namespace disco
