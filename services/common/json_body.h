// Reading JSON request bodies with errors a client can act on.
//
// ParseJsonObject checks the content type (415), that there is a body (400),
// that it is JSON (400, with the parser's position) and an object (422); it
// also keeps the source text of top-level numbers, so that money can be read
// exactly ("12.30" stays 1230 cents, 12.345 is refused) instead of through a
// double. The field readers answer 422 naming the field.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "disco/http/message.h"

namespace disco::service {

struct JsonBody {
  nlohmann::json value;                            // an object
  std::map<std::string, std::string> raw_numbers;  // top-level key -> number as written
};

// {"error":"validation_failed","message":...,"field":field} with 422.
http::Response FieldError(std::string_view field, std::string_view message);

// On failure returns the error response to send.
std::optional<http::Response> ParseJsonObject(const http::Request& request, JsonBody& out);

// Each returns the error response when the field is missing or has the wrong type.
std::optional<http::Response> ReadString(const JsonBody& body, std::string_view field,
                                         std::string& out);
std::optional<http::Response> ReadInteger(const JsonBody& body, std::string_view field,
                                          std::int64_t& out);

}  // namespace disco::service
