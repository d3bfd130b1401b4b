#include "jwt.h"

#include <jwt.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

namespace disco::service {
namespace {

constexpr std::size_t kMaxTokenBytes = 4096;
constexpr std::int64_t kMaxSkewSeconds = JwtCodec::kMaxSkewSeconds;

struct JwtDeleter {
  void operator()(jwt_t* jwt) const { jwt_free(jwt); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtDeleter>;

Result<std::string> Base64UrlDecode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) return Fail(ErrorCode::kPermissionDenied, "malformed token");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string Base64UrlEncode(const unsigned char* data, std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    acc = (acc << 8) | data[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

// A time claim as integer seconds. libjwt's jwt_get_grant_int answers 0,
// without an error, for a string, a fraction or a boolean, so the claims are
// read from the payload here. nullopt: the claim is absent.
Result<std::optional<std::int64_t>> TimeClaim(const nlohmann::json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::nullopt;
  // The last second system_clock can hold (in 2262 with GCC's nanoseconds): a
  // later time is none a token of ours carries, and converting it to a
  // time_point would overflow.
  constexpr std::int64_t kLastSecond =
      std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::system_clock::time_point::max().time_since_epoch())
          .count();
  if (!it->is_number_integer() ||
      (it->is_number_unsigned() &&
       it->get<std::uint64_t>() > static_cast<std::uint64_t>(kLastSecond)) ||
      it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > kLastSecond) {
    return Fail(ErrorCode::kPermissionDenied,
                std::string("token has a bad ") + name + " claim (integer seconds expected)");
  }
  return it->get<std::int64_t>();
}

// Checked on every use, also of a cached token.
Result<void> CheckTimes(const JwtClaims& claims, std::int64_t now_s) {
  if (claims.expires_at <= now_s) return Fail(ErrorCode::kPermissionDenied, "token expired");
  if (claims.issued_at > now_s + kMaxSkewSeconds)
    return Fail(ErrorCode::kPermissionDenied, "token issued in the future");
  if (claims.not_before > now_s + kMaxSkewSeconds)
    return Fail(ErrorCode::kPermissionDenied, "token not valid yet (nbf)");
  return {};
}

}  // namespace

JwtCodec::JwtCodec(std::string secret, std::chrono::seconds ttl, std::size_t cache_entries)
    : secret_(std::move(secret)), ttl_(ttl), cache_entries_(cache_entries) {
  if (secret_.size() < kMinSecretBytes) throw std::invalid_argument("JWT secret too short");
}

Result<std::string> JwtCodec::Issue(std::int64_t user_id, std::string_view username,
                                    std::chrono::system_clock::time_point now) const {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return Fail(ErrorCode::kInternal, "jwt_new failed");
  JwtPtr jwt(raw);
  auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  std::string sub = std::to_string(user_id);
  std::string name(username);
  std::string jti = RandomToken(16);
  if (jwt_add_grant(jwt.get(), "sub", sub.c_str()) != 0 ||
      jwt_add_grant(jwt.get(), "jti", jti.c_str()) != 0 ||
      jwt_add_grant(jwt.get(), "username", name.c_str()) != 0 ||
      jwt_add_grant_int(jwt.get(), "iat", static_cast<long>(iat)) != 0 ||
      jwt_add_grant_int(jwt.get(), "exp", static_cast<long>(iat + ttl_.count())) != 0 ||
      jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret_.data()),
                  static_cast<int>(secret_.size())) != 0) {
    return Fail(ErrorCode::kInternal, "building the token failed");
  }
  char* encoded = jwt_encode_str(jwt.get());
  if (encoded == nullptr) return Fail(ErrorCode::kInternal, "signing the token failed");
  std::string token(encoded);
  free(encoded);
  return token;
}

Result<JwtClaims> JwtCodec::Verify(std::string_view token,
                                   std::chrono::system_clock::time_point now) const {
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (cache_entries_ > 0 && !token.empty() && token.size() <= kMaxTokenBytes) {
    std::lock_guard lock(cache_mu_);
    if (auto it = cache_.find(token); it != cache_.end()) {  // no allocation
      auto times = CheckTimes(it->second, now_s);
      if (times) return it->second;
      // Expired for good; a token not valid yet stays (the clock was set back).
      if (it->second.expires_at <= now_s) cache_.erase(it);
      return std::unexpected(times.error());
    }
  }
  auto claims = VerifyUncached(token, now_s);
  if (claims && cache_entries_ > 0) {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= cache_entries_) {
      // Drop an arbitrary quarter: cheap, and a dropped token just verifies again.
      for (std::size_t n = cache_entries_ / 4 + 1; n > 0 && !cache_.empty(); --n) {
        cache_.erase(cache_.begin());
      }
    }
    cache_.emplace(std::string(token), *claims);
  }
  return claims;
}

Result<JwtClaims> JwtCodec::VerifyUncached(std::string_view token, std::int64_t now_s) const {
  if (token.empty()) return Fail(ErrorCode::kPermissionDenied, "missing token");
  if (token.size() > kMaxTokenBytes) return Fail(ErrorCode::kPermissionDenied, "token too long");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos ||
      dot2 + 1 == token.size()) {
    return Fail(ErrorCode::kPermissionDenied, "malformed token");
  }
  // Pin the algorithm ourselves, before libjwt: it would otherwise verify
  // with whatever algorithm the token names.
  auto header_text = Base64UrlDecode(token.substr(0, dot1));
  if (!header_text) return std::unexpected(header_text.error());
  auto header = nlohmann::json::parse(*header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return Fail(ErrorCode::kPermissionDenied, "malformed token");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || alg->get<std::string>() != "HS256") {
    return Fail(ErrorCode::kPermissionDenied, "token algorithm not accepted (HS256 only)");
  }
  std::string copy(token);
  jwt_t* raw = nullptr;
  int rc = jwt_decode(&raw, copy.c_str(), reinterpret_cast<const unsigned char*>(secret_.data()),
                      static_cast<int>(secret_.size()));
  JwtPtr jwt(raw);
  if (rc != 0 || !jwt) return Fail(ErrorCode::kPermissionDenied, "invalid token signature");
  if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) {
    return Fail(ErrorCode::kPermissionDenied, "token algorithm not accepted (HS256 only)");
  }
  // The claims, from the payload whose signature libjwt has just verified.
  auto payload_text = Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload_text) return std::unexpected(payload_text.error());
  auto payload = nlohmann::json::parse(*payload_text, nullptr, false);
  if (payload.is_discarded() || !payload.is_object())
    return Fail(ErrorCode::kPermissionDenied, "malformed token");
  JwtClaims claims;
  auto exp = TimeClaim(payload, "exp");
  if (!exp) return std::unexpected(exp.error());
  if (!*exp) return Fail(ErrorCode::kPermissionDenied, "token has no valid exp claim");
  auto iat = TimeClaim(payload, "iat");
  if (!iat) return std::unexpected(iat.error());
  if (!*iat) return Fail(ErrorCode::kPermissionDenied, "token has no valid iat claim");
  auto nbf = TimeClaim(payload, "nbf");
  if (!nbf) return std::unexpected(nbf.error());
  claims.expires_at = **exp;
  claims.issued_at = **iat;
  claims.not_before = nbf->value_or(0);
  if (auto times = CheckTimes(claims, now_s); !times) return std::unexpected(times.error());
  auto sub = payload.find("sub");
  auto username = payload.find("username");
  if (sub == payload.end() || !sub->is_string() || username == payload.end() ||
      !username->is_string()) {
    return Fail(ErrorCode::kPermissionDenied, "token lacks sub or username");
  }
  const auto& sub_text = sub->get_ref<const std::string&>();
  auto [end, ec] =
      std::from_chars(sub_text.data(), sub_text.data() + sub_text.size(), claims.user_id);
  if (ec != std::errc() || end != sub_text.data() + sub_text.size() || claims.user_id <= 0) {
    return Fail(ErrorCode::kPermissionDenied, "token has a bad sub claim");
  }
  claims.username = username->get<std::string>();
  if (auto jti = payload.find("jti"); jti != payload.end()) {
    if (!jti->is_string() || jti->get_ref<const std::string&>().empty() ||
        jti->get_ref<const std::string&>().size() > 64) {
      return Fail(ErrorCode::kPermissionDenied, "token has a bad jti claim");
    }
    claims.jti = jti->get<std::string>();
  }
  return claims;
}

std::string RandomToken(std::size_t size) {
  unsigned char bytes[64];
  size = std::min(size, sizeof bytes);
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = getrandom(bytes + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");
    }
    got += static_cast<std::size_t>(n);
  }
  return Base64UrlEncode(bytes, size);
}

std::string RandomSecret() { return RandomToken(48); }

}  // namespace disco::service
