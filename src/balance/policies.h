// Factories of the built-in balancing policies, one per file in this folder.
// MakeBalancer() (balancer_registry.cpp) maps names to them.
#pragma once

#include <memory>

#include "disco/balancer.h"

namespace disco::balance {

std::unique_ptr<Balancer> MakeRoundRobin();
std::unique_ptr<Balancer> MakeRandom();
std::unique_ptr<Balancer> MakeWeightedRoundRobin();
std::unique_ptr<Balancer> MakeLeastRequest();
std::unique_ptr<Balancer> MakeRingHash();

}  // namespace disco::balance
