// W3C Trace Context (https://www.w3.org/TR/trace-context/), the `traceparent`
// header: "00-<trace-id: 32 hex>-<parent-id: 16 hex>-<flags: 2 hex>".
//
// Every request a disco server handles joins the caller's trace (or starts
// one) under a span id of its own; its outgoing calls carry that span id as
// their parent, so one request's log lines in the gateway, order-service and
// user-service share a trace id and form a tree (span_id → parent_id).
// The span is the handler's whole work: calls made from it are not given
// spans of their own (the log line of the call's server names the caller's
// span as its parent).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace disco::http::detail {

inline constexpr std::size_t kTraceparentSize = 55;

// Whether `value` is a traceparent this server joins: version 00 exactly 55
// characters, a later version (not ff) at least 55 with '-' after them; all
// hex digits lower case; neither trace id nor parent id all zeros.
bool IsValidTraceparent(std::string_view value);

// `digits` random lowercase hex digits at `out`, written in place two per
// random byte (a table lookup each). REQUIRES: digits % 16 == 0.
void PutRandomHex(char* out, std::size_t digits);

// The span this server handles a request in. From the caller's `incoming`
// traceparent (the header's value, maybe empty or invalid): `traceparent`
// becomes "00-<its trace id or a new one>-<a new span id>-<flags>" (the
// sampled bit kept; 01 for a new trace) and `parent_span_id` the caller's
// span id, or empty. Reuses the strings' storage.
void StartServerSpan(std::string_view incoming, std::string& traceparent,
                     std::string& parent_span_id);

}  // namespace disco::http::detail
