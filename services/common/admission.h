// How a demo service puts a request's expensive work (bcrypt) behind an
// http::AdmissionQueue: whose it is, by when it must start, and the answer
// when it was refused or dropped.
//
// The gateway tells the service two things in request headers it sets
// itself (a client's own are replaced):
//   X-Client-Address: <address>   the client as the gateway identified it
//                                 (the key it rate-limits by): the fair-share key
//   X-Request-Timeout-Ms: <ms>    how long the gateway waits for this answer;
//                                 work that cannot start in time is dropped
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <string_view>

#include "disco/http/admission_queue.h"
#include "disco/http/message.h"

namespace disco::service {

inline constexpr std::string_view kClientAddressHeader = "X-Client-Address";
inline constexpr std::string_view kRequestTimeoutHeader = "X-Request-Timeout-Ms";

// The request's fair-share key: X-Client-Address when `trust_client_address`
// and present (at most 64 bytes), else the peer address.
std::string_view ClientKey(const http::Request& request, bool trust_client_address);

// When the work must start for its answer to reach the caller in time:
// `arrived` + X-Request-Timeout-Ms − 2 × `expected_run` (run times vary under
// load), but at least half the timeout after `arrived` (the estimate may be
// too high, and only work that runs corrects it); TimePoint::max() when the
// header is absent or not a number of milliseconds in [1, 600000].
http::AdmissionQueue::TimePoint StartBy(const http::Request& request,
                                        http::AdmissionQueue::TimePoint arrived,
                                        std::chrono::microseconds expected_run);

// 503 {"error":"overloaded","message":...} with Retry-After, for work that
// was refused or dropped; `what` names it ("login").
// REQUIRES: !admission.ran().
http::Response Overloaded(const http::Admission& admission, std::string_view what);

}  // namespace disco::service
