// JSON codec for the Consul agent, health and catalog payloads.
//
// Encoding is for our own registration bodies. Decoding is defensive: the
// agent's answers are treated as untrusted input; a wrong type anywhere
// skips that entry (with a warning) or fails the whole answer with
// kMalformed, and never throws or crashes.
//
// How a ServiceInstance maps onto a Consul service:
//   service → Name (Service in answers), id → ID, host → Address, port → Port,
//   tags → Tags, metadata → Meta, zone → Meta["disco-zone"],
//   weight → Weights {Passing: weight, Warning: 1}.
// In answers an empty Service.Address means "the node's address" (Node.Address).
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/registry.h"
#include "disco/service_instance.h"

namespace disco::consul {

// Metadata key that carries ServiceInstance::zone (Consul has no zone field).
inline constexpr std::string_view kZoneMetaKey = "disco-zone";

// The check ID we give the one check of our registrations.
std::string CheckId(std::string_view instance_id);

// A Go duration string ("10s"); Consul reads a bare JSON number as nanoseconds.
std::string GoDuration(std::chrono::milliseconds duration);

// Body of PUT /v1/agent/service/register. With options.http_check_url empty
// the check is a TTL check (TTL = options.ttl), else an HTTP check polled
// every `http_interval`. Either starts "passing", so the instance is visible
// at once rather than after the first heartbeat or poll.
std::string EncodeRegistration(const ServiceInstance& instance, const RegisterOptions& options,
                               std::chrono::milliseconds http_interval);

struct DecodedHealth {
  std::vector<InstanceStatus> instances;  // sorted by id
  std::vector<std::string> warnings;      // one per skipped entry, saying why
};

// Decodes the array answered by GET /v1/health/service/<name>. Health is the
// worst status among the entry's checks (node checks included, as ?passing
// does); detail is the output of that check when it is not passing.
// Errors: kMalformed when the answer is not a JSON array.
Result<DecodedHealth> DecodeHealth(std::string_view body);

// Decodes GET /v1/catalog/services: the service names, sorted, without
// Consul's own "consul" service. Errors: kMalformed.
Result<std::vector<std::string>> DecodeServices(std::string_view body);

}  // namespace disco::consul
