// What every chaos scenario reports and demands, shared by the scenario
// files (chaos_test.cpp, etcd_cluster_chaos_test.cpp).
#pragma once

#include <cstddef>
#include <string>

#include "chaos/chaos_stack.h"

namespace disco::testing {

inline std::string N(std::size_t n) { return std::to_string(n); }
inline std::string N(double n) { return std::to_string(static_cast<long long>(n)); }

// Figures common to every scenario's report line (requests, failures,
// retries, ejections, latencies), before the scenario's own.
ChaosStack::Fields CommonFields(ChaosStack& stack, const LoadFigures& all,
                                const LoadFigures& fault);

// What every scenario demands of the whole run, as gtest expectations: no
// failed request, at least 200 creates/s through order-service →
// user-service, and every acknowledged create stored exactly once.
void ExpectNoFailures(ChaosStack& stack, const LoadFigures& all);

}  // namespace disco::testing
