// Input rules of user-service; each returns an error message naming the
// field, or nothing when the value is fine.
//
// Thread safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace disco::user {

// 3–32 characters of [A-Za-z0-9_.-].
std::optional<std::string> CheckUsername(std::string_view username);
// 8–128 characters (Unicode code points of valid UTF-8), no NUL.
std::optional<std::string> CheckPassword(std::string_view password);
// A plausible address: local@domain.tld, at most 254 bytes, no spaces.
std::optional<std::string> CheckEmail(std::string_view email);

}  // namespace disco::user
