#include "money.h"

namespace disco::order {

Result<std::int64_t> ParseCents(std::string_view text) {
  auto bad = [] {
    return Fail(ErrorCode::kInvalidArgument,
                "price must be a decimal amount with at most 2 decimals, like 12.50");
  };
  if (text.empty()) return bad();
  auto dot = text.find('.');
  std::string_view whole = text.substr(0, dot);
  std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : text.substr(dot + 1);
  if (whole.empty() || whole.size() > 12) return bad();
  if (dot != std::string_view::npos && (fraction.empty() || fraction.size() > 2)) return bad();
  std::int64_t cents = 0;
  for (char c : whole) {
    if (c < '0' || c > '9') return bad();
    cents = cents * 10 + (c - '0');
  }
  cents *= 100;
  std::int64_t scale = 10;
  for (char c : fraction) {
    if (c < '0' || c > '9') return bad();
    cents += (c - '0') * scale;
    scale /= 10;
  }
  return cents;
}

Result<std::int64_t> ParsePrice(std::string_view text) {
  auto cents = ParseCents(text);
  if (!cents) return cents;
  if (*cents <= 0) return Fail(ErrorCode::kInvalidArgument, "price must be greater than 0");
  if (*cents > kMaxPriceCents)
    return Fail(ErrorCode::kInvalidArgument, "price must be at most 1000000.00");
  return cents;
}

Result<std::int64_t> Total(std::int64_t cents, std::int64_t quantity) {
  std::int64_t total = 0;
  if (__builtin_mul_overflow(cents, quantity, &total)) {
    return Fail(ErrorCode::kInvalidArgument, "total is too large");
  }
  return total;
}

std::string FormatCents(std::int64_t cents) {
  bool negative = cents < 0;
  // Negating INT64_MIN overflows; go through unsigned.
  std::uint64_t magnitude =
      negative ? 0 - static_cast<std::uint64_t>(cents) : static_cast<std::uint64_t>(cents);
  std::string out = std::to_string(magnitude / 100);
  out += '.';
  out += static_cast<char>('0' + (magnitude % 100) / 10);
  out += static_cast<char>('0' + magnitude % 10);
  return negative ? "-" + out : out;
}

}  // namespace disco::order
