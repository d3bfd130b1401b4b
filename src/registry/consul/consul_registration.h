// One Consul registration: the agent-API registration of an instance with a
// TTL check (or an HTTP check), kept alive by a coroutine on the backend's
// I/O thread.
//
// TTL mode: the check is passed every TTL/3 (PUT /v1/agent/check/pass/...).
// HTTP mode: Consul polls the service; we only ask every interval whether the
// agent still knows the service (GET /v1/agent/service/<id>).
// Either way, if the agent has forgotten the service (404, or 1.8.7's 500
// "does not have associated TTL" after an agent restart or a reap) the loop
// registers it again at once; while requests fail it is kRestoring and
// retries with jittered backoff.
//
// Several agents: the registration goes to the first agent that accepts it,
// in URL order. When its agent fails (AgentFailure: refused, hung past the
// request timeout, 5xx) the loop registers the same instance (same ID)
// through the next agent at once, and keeps its check passing there; it
// stays there (no fail-back). The failed agent still holds the old
// registration in its data dir and re-syncs it to the catalog when it comes
// back (its check restored as it was, possibly passing until one TTL runs
// out): a second loop asks that agent to deregister the instance every
// second or so until it answers. Consul's own deregister_critical_service_after
// would only remove it after TTL + that delay (default 60 s) + the agent's
// 30 s reap period, and only once the agent runs again.
//
// Thread safety: every method may be called from any thread except the
// backend's I/O thread (user code never runs there). Deregister() and the
// destructor wait for the agent's answer, bounded by the request timeout.
#pragma once

#include <memory>

#include "disco/registry.h"
#include "registry/consul/consul_core.h"

namespace disco::consul {

// Registers `instance` and returns once the agent acknowledged it.
// Errors: kInvalidArgument (bad instance or options), kUnavailable/kTimeout
// (agent unreachable), kPermissionDenied (ACL).
Result<std::unique_ptr<Registration>> StartRegistration(std::shared_ptr<Core> core,
                                                        const ServiceInstance& instance,
                                                        const RegisterOptions& options);

// PUT /v1/agent/service/deregister/<id> to agent number `agent`; 200 and 404
// both mean "not there now". `slot` may be null.
boost::asio::awaitable<Result<void>> DeregisterOnAgent(Core* core, std::string id,
                                                       std::size_t agent,
                                                       CancelSlot* slot = nullptr);

}  // namespace disco::consul
