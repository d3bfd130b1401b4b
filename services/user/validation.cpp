#include "validation.h"

namespace disco::user {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

std::optional<std::string> CheckUsername(std::string_view username) {
  if (username.size() < 3 || username.size() > 32) return "username must be 3-32 characters";
  for (char c : username) {
    if (!IsAlnum(c) && c != '_' && c != '.' && c != '-') {
      return "username may only contain letters, digits, '_', '.' and '-'";
    }
  }
  return std::nullopt;
}

std::optional<std::string> CheckPassword(std::string_view password) {
  // The JSON parser already rejected invalid UTF-8; count code points by
  // skipping continuation bytes.
  std::size_t chars = 0;
  for (char c : password) {
    if (c == '\0') return "password must not contain NUL characters";
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++chars;
  }
  if (chars < 8 || chars > 128) return "password must be 8-128 characters";
  return std::nullopt;
}

std::optional<std::string> CheckEmail(std::string_view email) {
  const std::string bad = "email must be a valid address like name@example.com";
  if (email.empty() || email.size() > 254) return bad;
  auto at = email.find('@');
  if (at == std::string_view::npos || email.find('@', at + 1) != std::string_view::npos) return bad;
  auto local = email.substr(0, at);
  auto domain = email.substr(at + 1);
  if (local.empty() || local.size() > 64 || local.front() == '.' || local.back() == '.') return bad;
  for (char c : local) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' ||
        c == '<' || c == '>' || c == '[' || c == ']' || c == '\\' || c == '"') {
      return bad;
    }
  }
  // Domain: dot-separated labels of [A-Za-z0-9-], not starting or ending in
  // '-', at least two labels, the last alphabetic and 2+ long.
  if (domain.empty() || domain.size() > 253) return bad;
  std::size_t labels = 0;
  std::string_view last;
  while (true) {
    auto dot = domain.find('.');
    auto label = domain.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return bad;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return bad;
    }
    ++labels;
    last = label;
    if (dot == std::string_view::npos) break;
    domain.remove_prefix(dot + 1);
  }
  if (labels < 2 || last.size() < 2) return bad;
  for (char c : last) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return bad;
  }
  return std::nullopt;
}

}  // namespace disco::user
