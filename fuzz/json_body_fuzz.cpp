// The services' JSON request readers (services/common/json_body.h) on any
// body, followed by what the handlers read from it: user-service's register
// and login fields and their checks (services/user/validation.h),
// order-service's product, quantity and price (services/order/money.h).
// Every refusal must be a 4xx with the JSON error body
// {"error":...,"message":...}; nothing may throw or crash.
#include <nlohmann/json.hpp>
#include <string>

#include "common/json_body.h"
#include "fuzz_check.h"
#include "order/money.h"
#include "user/validation.h"

namespace disco::fuzz {
namespace {

// A refusal the services would send: a 4xx, JSON, with error and message strings.
void CheckRefusal(const http::Response& response) {
  Check(response.status >= 400 && response.status <= 499, "a refusal that is not a 4xx");
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  Check(body.is_object() && body.contains("error") && body["error"].is_string() &&
            body.contains("message") && body["message"].is_string(),
        "a refusal whose body is not {\"error\":...,\"message\":...}");
}

void ReadLikeTheHandlers(const service::JsonBody& body) {
  // user-service: POST /api/users and /api/login.
  for (const char* field : {"username", "password", "email"}) {
    std::string value;
    if (auto refused = service::ReadString(body, field, value)) {
      CheckRefusal(*refused);
      continue;
    }
    (void)user::CheckUsername(value);
    (void)user::CheckPassword(value);
    (void)user::CheckEmail(value);
  }
  // order-service: POST /api/orders.
  std::int64_t quantity = 0;
  if (auto refused = service::ReadInteger(body, "quantity", quantity)) CheckRefusal(*refused);
  auto price = body.value.find("price");
  if (price == body.value.end()) return;
  Result<std::int64_t> cents;
  if (price->is_string()) {
    cents = order::ParsePrice(price->get_ref<const std::string&>());
  } else if (price->is_number()) {
    auto raw = body.raw_numbers.find("price");
    Check(raw != body.raw_numbers.end(), "a top-level number without its source text");
    cents = order::ParsePrice(raw->second);
  } else {
    return;
  }
  if (!cents) {
    CheckRefusal(service::FieldError("price", cents.error().message));
    return;
  }
  Check(*cents > 0 && *cents <= order::kMaxPriceCents, "a price out of range was taken");
  if (auto total = order::Total(*cents, quantity)) {
    (void)order::FormatCents(*total);
  }
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  http::Request request;
  request.headers.emplace_back("Content-Type", "application/json");
  request.body.assign(fuzz::AsText(data, size));
  service::JsonBody body;
  if (auto refused = service::ParseJsonObject(request, body)) {
    fuzz::CheckRefusal(*refused);
    return 0;
  }
  fuzz::Check(body.value.is_object(), "an accepted body that is not an object");
  fuzz::ReadLikeTheHandlers(body);
  return 0;
}
