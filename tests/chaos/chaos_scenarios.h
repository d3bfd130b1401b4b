// The chaos scenarios and bars shared by chaos_test.cpp (every scenario on
// etcd and Consul) and chaos_variants_test.cpp (one scenario each on MariaDB
// and over mutual TLS): the same steps, the same report line, the same bars.
#pragma once

#include <chrono>
#include <string>

#include "chaos/chaos_stack.h"

namespace disco::testing {

// Load before the fault, so that the figures have a baseline.
inline constexpr std::chrono::seconds kChaosWarmup{2};

// A count as a report value.
std::string N(std::size_t n);
std::string N(double n);

std::chrono::milliseconds Since(std::chrono::steady_clock::time_point start);

// Figures common to every scenario's report line (the scenario adds its own).
ChaosStack::Fields CommonFields(ChaosStack& stack, const LoadFigures& all,
                                const LoadFigures& fault);

// What every scenario demands of the whole run: no failed request, at least
// 200 creates/s through order-service → user-service, and every acknowledged
// create in the database exactly once.
void ExpectNoFailures(ChaosStack& stack, const LoadFigures& all);

// kill -9 of one of the two user-services under load; it leaves every
// resolver within the registry's detection bound, is restarted and comes
// back. Reports "kill9_user_service".
void KillNineOfAUserService(ChaosStack& stack);

// Rolling restart (SIGTERM, start again, one at a time) of all four
// instances under load. Reports "rolling_restart".
void RollingRestart(ChaosStack& stack);

}  // namespace disco::testing
