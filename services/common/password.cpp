#include "password.h"

#include <crypt.h>
#include <openssl/sha.h>

#include <cstring>
#include <memory>

namespace disco::service {
namespace {

constexpr std::size_t kBcryptMaxBytes = 72;

crypt_data& Scratch() {
  // ~32 KiB: allocate once per thread, zeroed as crypt_r requires before first use.
  thread_local auto data = std::make_unique<crypt_data>();
  return *data;
}

std::string Prepare(std::string_view password) {
  if (password.size() <= kBcryptMaxBytes) return std::string(password);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(password.data()), password.size(), digest);
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < sizeof digest; i += 3) {
    std::uint32_t n = static_cast<std::uint32_t>(digest[i]) << 16;
    if (i + 1 < sizeof digest) n |= static_cast<std::uint32_t>(digest[i + 1]) << 8;
    if (i + 2 < sizeof digest) n |= digest[i + 2];
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(i + 1 < sizeof digest ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < sizeof digest ? kAlphabet[n & 63] : '=');
  }
  return out;
}

bool IsBcrypt(std::string_view hash) {
  return hash.size() == 60 &&
         (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"));
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, int cost) {
  if (cost < kMinBcryptCost || cost > kMaxBcryptCost) {
    return Fail(ErrorCode::kInvalidArgument, "bcrypt cost must be 4-31");
  }
  if (password.find('\0') != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, "password contains a NUL byte");
  }
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // nullptr random bytes: libxcrypt draws the salt from the OS.
  if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), nullptr, 0, setting,
                       sizeof setting) == nullptr) {
    return Fail(ErrorCode::kInternal, "crypt_gensalt_rn failed");
  }
  std::string prepared = Prepare(password);
  const char* hashed = crypt_r(prepared.c_str(), setting, &Scratch());
  if (hashed == nullptr || hashed[0] == '*') return Fail(ErrorCode::kInternal, "crypt_r failed");
  return std::string(hashed);
}

bool VerifyPassword(std::string_view password, std::string_view hash) {
  if (!IsBcrypt(hash) || password.find('\0') != std::string_view::npos) return false;
  std::string prepared = Prepare(password);
  std::string setting(hash);
  const char* hashed = crypt_r(prepared.c_str(), setting.c_str(), &Scratch());
  if (hashed == nullptr || std::strlen(hashed) != hash.size()) return false;
  // Constant time: do not leak how many leading characters matched.
  unsigned char diff = 0;
  for (std::size_t i = 0; i < hash.size(); ++i)
    diff |= static_cast<unsigned char>(hashed[i] ^ hash[i]);
  return diff == 0;
}

}  // namespace disco::service
