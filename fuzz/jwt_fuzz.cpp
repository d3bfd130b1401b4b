// JWT parsing and verification (services/common/jwt.h, JwtCodec::Verify)
// with a fixed secret and a fixed clock. A random token almost never carries
// a valid signature, so the target also signs what the input names and
// verifies that, which takes the fuzzer past the signature into the claims:
//   - input with a newline: "<header JSON>\n<payload JSON>", both encoded
//     and signed here;
//   - otherwise the input itself as a token, and again with its first two
//     parts ("header.payload") signed here.
// A token that verifies must carry sane claims, verify again from the
// cache with the same claims, and be refused once it has expired.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <string>

#include "common/jwt.h"
#include "fuzz_check.h"

namespace disco::fuzz {
namespace {

constexpr std::string_view kSecret = "fuzz-secret-0123456789abcdef0123456789";
// 2026-01-01T00:00:00Z; the seed tokens are valid around it.
const auto kNow = std::chrono::system_clock::time_point(std::chrono::seconds(1767225600));

std::string Base64Url(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

// "<signing input>.<HS256 signature with kSecret>"
std::string Signed(std::string_view signing_input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac, &n);
  return std::string(signing_input) + "." +
         Base64Url(std::string_view(reinterpret_cast<const char*>(mac), n));
}

void VerifyAndCheck(std::string_view token) {
  service::JwtCodec codec(std::string(kSecret), std::chrono::hours(1), 8);
  auto claims = codec.Verify(token, kNow);
  if (!claims) {
    Check(claims.error().code == ErrorCode::kPermissionDenied,
          "a refusal that is not kPermissionDenied");
    return;
  }
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(kNow.time_since_epoch()).count();
  Check(claims->user_id > 0, "a verified token with sub <= 0");
  Check(claims->expires_at > now, "a verified token that has expired");
  Check(claims->issued_at <= now + 60, "a verified token issued in the future");
  auto again = codec.Verify(token, kNow);  // from the cache
  Check(again && again->user_id == claims->user_id && again->username == claims->username &&
            again->expires_at == claims->expires_at,
        "the cache answers differently");
  const auto after =
      std::chrono::system_clock::time_point(std::chrono::seconds(claims->expires_at));
  Check(!codec.Verify(token, after), "an expired token verified from the cache");
  service::JwtCodec fresh(std::string(kSecret), std::chrono::hours(1), 0);
  Check(!fresh.Verify(token, after), "an expired token verified");
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco::fuzz;
  const std::string_view text = AsText(data, size);
  if (auto newline = text.find('\n'); newline != std::string_view::npos) {
    VerifyAndCheck(
        Signed(Base64Url(text.substr(0, newline)) + "." + Base64Url(text.substr(newline + 1))));
    return 0;
  }
  VerifyAndCheck(text);
  if (auto dot = text.find('.'); dot != std::string_view::npos)
    VerifyAndCheck(Signed(text.substr(0, text.find('.', dot + 1))));
  return 0;
}
