// Money as integer cents: parsing prices exactly and computing totals
// without floating point.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "disco/error.h"

namespace disco::order {

constexpr std::int64_t kMaxPriceCents = 100'000'000;  // 1,000,000.00
constexpr std::int64_t kMinQuantity = 1;
constexpr std::int64_t kMaxQuantity = 10'000;

// Parses a plain decimal with at most 2 decimals ("12", "12.3", "12.30",
// "0.99"): no sign, no exponent, no spaces, no thousands separators. The same
// rule applies to a JSON number's source text and to a decimal string.
// Errors: kInvalidArgument with a message naming "price".
Result<std::int64_t> ParseCents(std::string_view text);

// Also enforces 0 < price <= kMaxPriceCents.
Result<std::int64_t> ParsePrice(std::string_view text);

// cents * quantity, or kInvalidArgument on overflow.
Result<std::int64_t> Total(std::int64_t cents, std::int64_t quantity);

// 1230 → "12.30"; -5 → "-0.05".
std::string FormatCents(std::int64_t cents);

}  // namespace disco::order
