// EndpointPtr: what Resolver::Pick() returns, an endpoint and a hold on the
// snapshot it belongs to, so the endpoint stays valid while the caller uses
// it even if the resolver publishes a new snapshot meanwhile.
//
// Why not std::shared_ptr: every pick would pay an atomic increment and, when
// the caller is done, an atomic decrement of a shared count (two locked
// instructions, ≈ 11 of a pick's 25-30 ns here; docs/benchmarks.md, "Picks
// across cores"). This is biased reference counting (Choi, Shull and
// Torrellas, PACT 2018; CPython's free-threaded build counts objects the same
// way): the snapshot is pinned per thread, and the thread that pinned it
// counts its own copies with plain integer arithmetic; copies made or dropped
// on other threads count in a separate atomic field. When the owner lets go
// of the pin (its resolver published a newer snapshot, or the thread exits),
// it moves its count into the atomic field once, and from then on every
// thread counts there; the pin is freed when that count reaches zero.
//
// Thread safety: as std::shared_ptr: distinct EndpointPtrs, even copies of
// one another, may be used, copied and destroyed on any threads at once; one
// EndpointPtr object must not be written by two threads at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "disco/snapshot.h"

namespace disco {

class EndpointPtr;

namespace detail {

// The calling thread's number, never given to another thread, so that a
// thread created after a pin's owner exited can never pass for it; 0 until
// the thread first asks. Initial-exec TLS: one load at a fixed offset from
// the thread pointer (libdisco is loaded with the program; glibc keeps room
// for a few such variables even when a library is dlopen()ed).
[[gnu::tls_model("initial-exec")]] extern thread_local constinit std::uint64_t t_pin_thread;
std::uint64_t NumberThisThread() noexcept;
inline std::uint64_t ThisThread() noexcept {
  const std::uint64_t number = t_pin_thread;
  return number != 0 ? number : NumberThisThread();
}

// One thread's hold on one snapshot. Made by Resolver::Pick's per-thread
// cache, which keeps one reference until it lets go with Disown().
class SnapshotPin {
 public:
  // Owned by the calling thread, with one reference (the caller's).
  explicit SnapshotPin(SnapshotConstPtr snapshot);
  SnapshotPin(const SnapshotPin&) = delete;
  SnapshotPin& operator=(const SnapshotPin&) = delete;

  // A new reference to `endpoint`, which must belong to the pinned snapshot.
  // REQUIRES: called by the owner before Disown().
  EndpointPtr ShareOwned(const Endpoint* endpoint) noexcept;
  // The owner gives up its own reference and its ownership: every later
  // count is atomic. Call once, on the owning thread. May free the pin.
  void Disown() noexcept;

  void Acquire() noexcept {
    if (OwnedHere()) {
      ++owned_;
      return;
    }
    AcquireShared();
  }
  void Release() noexcept {  // may free the pin
    if (OwnedHere()) {
      // May reach zero or below: a copy made on another thread (counted in
      // shared_) and dropped here. Only owned_ + shared_ is the count.
      --owned_;
      return;
    }
    ReleaseShared();
  }

 private:
  ~SnapshotPin() = default;
  // disowned_ is read only after owner_ matched: only the owner reads it.
  bool OwnedHere() const noexcept { return owner_ == ThisThread() && !disowned_; }
  void AcquireShared() noexcept;
  void ReleaseShared() noexcept;

  // Added when the owner merges: shared_ - kMerged is then the number of
  // references. Before, shared_ is copies made minus copies dropped on other
  // threads, which drifts without bound when copies made elsewhere are
  // dropped on the owner (and owned_ the other way); it must not reach
  // kMerged first. At 2^62 that takes 4.6e18 such round trips on one pin
  // (146 years at 1e9 a second); the sum stays below 2^63.
  static constexpr std::int64_t kMerged = std::int64_t{1} << 62;

  // Read by every thread that copies or drops (OwnedHere): never written.
  SnapshotConstPtr snapshot_;
  const std::uint64_t owner_;  // the owning thread's number
  // The owner's references; only the owner thread reads or writes these
  // two. A line of their own, so that the owner's writes on every pick do
  // not evict owner_ from other threads' caches.
  alignas(64) std::int64_t owned_ = 1;
  bool disowned_ = false;
  // Other threads' counts, on a line of its own so that they never slow the
  // owner's plain arithmetic down.
  alignas(64) std::atomic<std::int64_t> shared_{0};
};

}  // namespace detail

class EndpointPtr {
 public:
  EndpointPtr() noexcept = default;
  EndpointPtr(std::nullptr_t) noexcept {}  // NOLINT: converts like a pointer
  // `endpoint` (which must belong to `snapshot`), keeping `snapshot` alive:
  // for Resolver implementations and decorators outside the library, as
  // shared_ptr's aliasing constructor was. Counted atomically on every
  // thread (the fast per-thread path is Resolver::Pick's own).
  EndpointPtr(SnapshotConstPtr snapshot, const Endpoint* endpoint);
  EndpointPtr(const EndpointPtr& other) noexcept : pin_(other.pin_), endpoint_(other.endpoint_) {
    if (pin_ != nullptr) pin_->Acquire();
  }
  EndpointPtr(EndpointPtr&& other) noexcept
      : pin_(std::exchange(other.pin_, nullptr)),
        endpoint_(std::exchange(other.endpoint_, nullptr)) {}
  EndpointPtr& operator=(EndpointPtr other) noexcept {
    std::swap(pin_, other.pin_);
    std::swap(endpoint_, other.endpoint_);
    return *this;
  }
  ~EndpointPtr() {
    if (pin_ != nullptr) pin_->Release();
  }

  void reset() noexcept { *this = nullptr; }

  const Endpoint* get() const noexcept { return endpoint_; }
  const Endpoint* operator->() const noexcept { return endpoint_; }
  const Endpoint& operator*() const noexcept { return *endpoint_; }
  explicit operator bool() const noexcept { return endpoint_ != nullptr; }
  friend bool operator==(const EndpointPtr& ptr, std::nullptr_t) noexcept {
    return ptr.endpoint_ == nullptr;
  }
  friend bool operator==(const EndpointPtr& a, const EndpointPtr& b) noexcept {
    return a.endpoint_ == b.endpoint_;  // the same endpoint of the same snapshot
  }

 private:
  friend class detail::SnapshotPin;
  EndpointPtr(detail::SnapshotPin* pin, const Endpoint* endpoint) noexcept  // adopts a reference
      : pin_(pin), endpoint_(endpoint) {}

  detail::SnapshotPin* pin_ = nullptr;
  const Endpoint* endpoint_ = nullptr;
};

inline EndpointPtr detail::SnapshotPin::ShareOwned(const Endpoint* endpoint) noexcept {
  ++owned_;
  return EndpointPtr(this, endpoint);
}

}  // namespace disco
