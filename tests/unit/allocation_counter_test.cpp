// The allocation counter of allocation_counter.h (replacement operator new,
// or ASan's malloc hook under AddressSanitizer) and a check that it counts.
#include "unit/allocation_counter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "disco/balancer.h"

namespace {

// Trivial thread_locals: no constructor runs, so touching them inside
// operator new is safe at any point of a thread's life.
thread_local bool t_counting = false;
thread_local std::size_t t_allocations = 0;

inline void CountAllocation() {
  if (t_counting) ++t_allocations;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)

extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             std::size_t),
                                                         void (*free_hook)(const volatile void*));

namespace {

void OnMalloc(const volatile void*, std::size_t) { CountAllocation(); }
void OnFree(const volatile void*) {}

[[maybe_unused]] const int g_hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(&OnMalloc, &OnFree);

}  // namespace

#else

namespace {

void* Allocate(std::size_t size) {
  CountAllocation();
  return std::malloc(size == 0 ? 1 : size);
}

void* AllocateAligned(std::size_t size, std::align_val_t alignment) {
  CountAllocation();
  void* p = nullptr;
  const auto align = std::max(static_cast<std::size_t>(alignment), sizeof(void*));
  return posix_memalign(&p, align, size == 0 ? 1 : size) == 0 ? p : nullptr;
}

}  // namespace

[[gnu::noinline]] void* operator new(std::size_t size) {
  if (void* p = Allocate(size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size) {
  if (void* p = Allocate(size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size);
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size);
}
[[gnu::noinline]] void* operator new(std::size_t size, std::align_val_t alignment) {
  if (void* p = AllocateAligned(size, alignment)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size, std::align_val_t alignment) {
  if (void* p = AllocateAligned(size, alignment)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t size, std::align_val_t alignment,
                                     const std::nothrow_t&) noexcept {
  return AllocateAligned(size, alignment);
}
[[gnu::noinline]] void* operator new[](std::size_t size, std::align_val_t alignment,
                                       const std::nothrow_t&) noexcept {
  return AllocateAligned(size, alignment);
}

[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::align_val_t,
                                         const std::nothrow_t&) noexcept {
  std::free(p);
}

#endif

namespace disco::testing {

AllocationScope::AllocationScope() : start_(t_allocations), outer_(!t_counting) {
  t_counting = true;
}

AllocationScope::~AllocationScope() {
  if (outer_) t_counting = false;
}

std::size_t AllocationScope::count() const { return t_allocations - start_; }

namespace {

struct alignas(128) OverAligned {
  char bytes[128];
};

TEST(AllocationCounterTest, CountsEveryKindOfNewOnThisThread) {
  AllocationScope scope;
  EXPECT_EQ(scope.count(), 0u);
  auto one = std::make_unique<int>(1);
  EXPECT_EQ(scope.count(), 1u);
  auto many = std::make_unique<int[]>(100);
  EXPECT_EQ(scope.count(), 2u);
  auto aligned = std::make_unique<OverAligned>();
  EXPECT_EQ(scope.count(), 3u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(aligned.get()) % alignof(OverAligned), 0u);
  std::string text(100, 'x');  // past the small-string buffer
  EXPECT_EQ(scope.count(), 4u);
}

// The pick-path tests rely on this: code inside libdisco.so is counted too.
TEST(AllocationCounterTest, CountsAllocationsInsideTheLibrary) {
  AllocationScope scope;
  auto balancer = MakeBalancer("round_robin");
  ASSERT_TRUE(balancer);
  EXPECT_GE(scope.count(), 1u);
}

TEST(AllocationCounterTest, IgnoresOtherThreadsAndCodeOutsideScopes) {
  auto before = std::make_unique<int>(0);  // not in a scope: not counted anywhere
  AllocationScope scope;
  std::thread other([] { std::vector<int> v(1000); });
  other.join();
  // std::thread's own start-up state is allocated by this thread; everything
  // the other thread did is not counted.
  const std::size_t after_thread = scope.count();
  EXPECT_LE(after_thread, 2u);
  {
    AllocationScope nested;
    auto one = std::make_unique<int>(1);
    EXPECT_EQ(nested.count(), 1u);
  }
  auto two = std::make_unique<int>(2);  // the outer scope still counts
  EXPECT_EQ(scope.count(), after_thread + 2);
}

}  // namespace
}  // namespace disco::testing
