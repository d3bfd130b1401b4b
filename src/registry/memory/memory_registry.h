// memory:// — an in-process registry for unit tests of resolver and balancer
// logic, and for single-process embedding. Not a stand-in for a real registry
// in integration tests.
//
// Registries made from the same "memory://<name>" share one store within the
// process; "memory://" alone gets a private store. Instances never expire.
// Watch callbacks run on the thread that made the change (and on the caller
// of Watch for the first one), one at a time per watch.
#pragma once

#include <string_view>

namespace disco::memory {

// Test hook: makes every registry on the named store behave as if the
// registry were unreachable (calls fail with kUnavailable, watches report an
// error) until set available again, when watches resync.
void SetAvailable(std::string_view name, bool available);

}  // namespace disco::memory
