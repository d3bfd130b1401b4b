#include "disco/endpoint_ptr.h"

namespace disco::detail {
namespace {

std::atomic<std::uint64_t> g_next_thread{1};

// Initial-exec: one load at a fixed offset from the thread pointer, not a
// __tls_get_addr call per count (libdisco is loaded with the program; glibc
// keeps room for a few such variables even when a library is dlopen()ed).
[[gnu::tls_model("initial-exec")]] thread_local std::uint64_t t_thread = 0;

// A number per thread, never given to another thread, so that a thread
// created after an owner exited can never take its place.
std::uint64_t ThisThread() noexcept {
  if (t_thread == 0) [[unlikely]]
    t_thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);
  return t_thread;
}

}  // namespace

SnapshotPin::SnapshotPin(SnapshotConstPtr snapshot)
    : snapshot_(std::move(snapshot)), owner_(ThisThread()) {}

bool SnapshotPin::OwnedHere() const noexcept {
  // disowned_ is read only after owner_ matched: only the owner reads it.
  return owner_ == ThisThread() && !disowned_;
}

EndpointPtr SnapshotPin::Share(const Endpoint* endpoint) noexcept {
  Acquire();
  return EndpointPtr(this, endpoint);
}

void SnapshotPin::Acquire() noexcept {
  if (OwnedHere()) {
    ++owned_;
    return;
  }
  // Relaxed as shared_ptr's increment: the caller already holds a reference.
  shared_.fetch_add(1, std::memory_order_relaxed);
}

void SnapshotPin::Release() noexcept {
  if (OwnedHere()) {
    --owned_;  // never reaches zero here: the owner's own reference is in it
    return;
  }
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
