#include "password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstring>
#include <memory>

namespace disco::service {
namespace {

constexpr std::size_t kBcryptMaxBytes = 72;
// "$2b$12$" and 22 salt characters: the part of a bcrypt hash crypt_r reads as its setting.
constexpr std::size_t kBcryptSettingBytes = 29;
// Put before a bcrypt hash whose input was HMAC-pre-hashed: "$disco-hmac$2b$12$…".
constexpr std::string_view kHmacMarker = "$disco-hmac";

crypt_data& Scratch() {
  // ~32 KiB: allocate once per thread, zeroed as crypt_r requires before first use.
  thread_local auto data = std::make_unique<crypt_data>();
  return *data;
}

std::string Base64(const unsigned char* data, std::size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < n; i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(data[i]) << 16;
    if (i + 1 < n) v |= static_cast<std::uint32_t>(data[i + 1]) << 8;
    if (i + 2 < n) v |= data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[v & 63] : '=');
  }
  return out;
}

// The pre-hash of hashes made before the marker existed: base64(SHA-256), the
// same for every site that uses it, so that value is as good as the password.
// Only verified, never made any more.
std::string LegacyPrehash(std::string_view password) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(password.data()), password.size(), digest);
  return Base64(digest, sizeof digest);
}

// base64(HMAC-SHA256(key = the hash's bcrypt setting, password)): 44 bytes
// without NUL. Keyed by the salt, so it differs for every stored hash, and an
// unsalted digest of the password (leaked from anywhere) is not the input
// bcrypt saw and cannot be tested against our hashes.
std::string HmacPrehash(std::string_view password, std::string_view setting) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  if (HMAC(EVP_sha256(), setting.data(), static_cast<int>(setting.size()),
           reinterpret_cast<const unsigned char*>(password.data()), password.size(), mac,
           &mac_size) == nullptr) {
    return {};
  }
  return Base64(mac, mac_size);
}

bool IsBcrypt(std::string_view hash) {
  return hash.size() == 60 &&
         (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"));
}

// crypt_r(input, bcrypt) == bcrypt, compared in constant time.
bool BcryptMatches(const std::string& input, std::string_view bcrypt) {
  std::string setting(bcrypt);
  const char* hashed = crypt_r(input.c_str(), setting.c_str(), &Scratch());
  if (hashed == nullptr || std::strlen(hashed) != bcrypt.size()) return false;
  return CRYPTO_memcmp(hashed, bcrypt.data(), bcrypt.size()) == 0;
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
                       sizeof setting) == nullptr ||
      std::strlen(setting) != kBcryptSettingBytes) {
    return Fail(ErrorCode::kInternal, "crypt_gensalt_rn failed");
  }
  const bool prehash = password.size() > kBcryptMaxBytes;
  std::string input = prehash ? HmacPrehash(password, setting) : std::string(password);
  if (prehash && input.empty()) return Fail(ErrorCode::kInternal, "HMAC failed");
  const char* hashed = crypt_r(input.c_str(), setting, &Scratch());
  // Verification keys the HMAC with the stored hash's setting: it must be the one used here.
  if (hashed == nullptr || hashed[0] == '*' || !IsBcrypt(hashed) ||
      std::string_view(hashed).substr(0, kBcryptSettingBytes) != setting) {
    return Fail(ErrorCode::kInternal, "crypt_r failed");
  }
  return prehash ? std::string(kHmacMarker) + hashed : std::string(hashed);
}

bool VerifyPassword(std::string_view password, std::string_view hash) {
  if (password.find('\0') != std::string_view::npos) return false;
  if (hash.starts_with(kHmacMarker)) {
    // The marker decides, whatever the length of what was sent.
    std::string_view bcrypt = hash.substr(kHmacMarker.size());
    if (!IsBcrypt(bcrypt)) return false;
    std::string input = HmacPrehash(password, bcrypt.substr(0, kBcryptSettingBytes));
    return !input.empty() && BcryptMatches(input, bcrypt);
  }
  if (!IsBcrypt(hash)) return false;
  if (password.size() <= kBcryptMaxBytes) return BcryptMatches(std::string(password), hash);
  return BcryptMatches(LegacyPrehash(password), hash);
}

bool NeedsRehash(std::string_view password, std::string_view hash) {
  return password.size() > kBcryptMaxBytes && !hash.starts_with(kHmacMarker);
}

}  // namespace disco::service
