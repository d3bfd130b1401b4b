// Counts heap allocations made by the calling thread inside a scope, to test
// that a code path (the pick path) never allocates.
//
// How: allocation_counter_test.cpp replaces the global operator new family of
// the unit-test binary with malloc-based versions that bump a thread-local
// counter while an AllocationScope is alive on that thread; otherwise they
// only forward to malloc/free, so the other tests sharing the binary are not
// affected. Under AddressSanitizer the operators are left alone (ASan's own
// ones detect new/delete mismatches for every test) and the count comes from
// ASan's malloc hook instead, which sees every allocation, operator new or
// malloc.
//
// Thread safety: scopes are per thread; allocations by other threads are
// never counted.
#pragma once

#include <cstddef>

namespace disco::testing {

class AllocationScope {
 public:
  AllocationScope();
  ~AllocationScope();
  AllocationScope(const AllocationScope&) = delete;
  AllocationScope& operator=(const AllocationScope&) = delete;

  // Allocations by this thread since the scope began.
  std::size_t count() const;

 private:
  std::size_t start_;
  bool outer_;
};

}  // namespace disco::testing
