// JWT issue/verify and the attacks the algorithm pin must stop.
#include "common/jwt.h"

#include <gtest/gtest.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>

#include "fixture/util.h"

namespace disco::service {
namespace {

using testing::B64Url;

const std::string kSecret = "unit-test-secret-0123456789abcdefghijklmnop";

// A token signed by libjwt with any algorithm and claims.
std::string Sign(jwt_alg_t alg, const std::string& key, bool with_exp = true,
                 long exp_offset = 3600, const char* sub = "7") {
  jwt_t* jwt = nullptr;
  jwt_new(&jwt);
  long now = static_cast<long>(std::time(nullptr));
  if (sub) jwt_add_grant(jwt, "sub", sub);
  jwt_add_grant(jwt, "username", "alice");
  jwt_add_grant_int(jwt, "iat", now);
  if (with_exp) jwt_add_grant_int(jwt, "exp", now + exp_offset);
  jwt_set_alg(jwt, alg,
              alg == JWT_ALG_NONE ? nullptr : reinterpret_cast<const unsigned char*>(key.data()),
              alg == JWT_ALG_NONE ? 0 : static_cast<int>(key.size()));
  char* s = jwt_encode_str(jwt);
  std::string token = s ? s : "";
  free(s);
  jwt_free(jwt);
  return token;
}

// An HS256 token with our secret over exactly this payload text, signed here
// (jansson, under libjwt, refuses integers beyond 64 bits before signing).
std::string SignClaims(const std::string& claims) {
  std::string signing_input = B64Url(R"({"alg":"HS256","typ":"JWT"})") + "." + B64Url(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), mac,
       &mac_size);
  return signing_input + "." + B64Url(std::string(reinterpret_cast<char*>(mac), mac_size));
}

// Claims valid at `now` (seconds) plus `extra` (",\"nbf\":…").
std::string ClaimsAt(std::int64_t now, const std::string& extra) {
  return R"({"sub":"7","username":"alice","iat":)" + std::to_string(now) + R"(,"exp":)" +
         std::to_string(now + 7200) + extra + "}";
}

std::chrono::system_clock::time_point At(std::int64_t seconds) {
  return std::chrono::system_clock::time_point(std::chrono::seconds(seconds));
}

TEST(JwtTest, IssuesAndVerifiesHs256) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  auto token = codec.Issue(42, "alice");
  ASSERT_TRUE(token);
  auto claims = codec.Verify(*token);
  ASSERT_TRUE(claims) << claims.error().message;
  EXPECT_EQ(claims->user_id, 42);
  EXPECT_EQ(claims->username, "alice");
  EXPECT_EQ(claims->expires_at - claims->issued_at, 3600);
  // The header names HS256.
  EXPECT_EQ(token->substr(0, token->find('.')), B64Url(R"({"alg":"HS256","typ":"JWT"})"));
}

TEST(JwtTest, EveryTokenHasItsOwnJtiAndABadJtiIsRefused) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  auto a = codec.Verify(*codec.Issue(42, "alice"));
  auto b = codec.Verify(*codec.Issue(42, "alice"));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->jti.size(), 22u);  // 128 bits, base64url
  EXPECT_NE(a->jti, b->jti);
  const auto now = std::time(nullptr);
  auto without = codec.Verify(SignClaims(ClaimsAt(now, "")));
  ASSERT_TRUE(without);
  EXPECT_TRUE(without->jti.empty());  // older tokens: valid, not revocable
  const std::string long_jti = R"(,"jti":")" + std::string(65, 'x') + R"(")";
  for (const std::string& bad : {std::string(R"(,"jti":7)"), std::string(R"(,"jti":"")"), long_jti}) {
    EXPECT_FALSE(codec.Verify(SignClaims(ClaimsAt(now, bad)))) << bad;
  }
}

TEST(JwtTest, RejectsExpiredTokens) {
  JwtCodec codec(kSecret, std::chrono::seconds(60));
  auto token = codec.Issue(1, "bob", std::chrono::system_clock::now() - std::chrono::seconds(61));
  auto claims = codec.Verify(*token);
  ASSERT_FALSE(claims);
  EXPECT_EQ(claims.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(claims.error().message.find("expired"), std::string::npos);
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, kSecret, true, -1)));
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, kSecret, /*with_exp=*/false))) << "exp is required";
}

TEST(JwtTest, RejectsAlgNone) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  std::string payload = B64Url(R"({"sub":"7","username":"alice","iat":1,"exp":99999999999})");
  for (const char* header :
       {R"({"alg":"none","typ":"JWT"})", R"({"alg":"None"})", R"({"alg":"NONE"})"}) {
    EXPECT_FALSE(codec.Verify(B64Url(header) + "." + payload + ".")) << header;
  }
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_NONE, "")));
}

TEST(JwtTest, RejectsOtherAlgorithmsEvenWithTheRightKey) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  auto hs512 = codec.Verify(Sign(JWT_ALG_HS512, kSecret));
  ASSERT_FALSE(hs512);
  EXPECT_NE(hs512.error().message.find("algorithm"), std::string::npos);
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS384, kSecret)));
  // RS256 header with an HMAC signature (the key-confusion attack).
  std::string payload = B64Url(R"({"sub":"7","username":"alice","iat":1,"exp":99999999999})");
  EXPECT_FALSE(codec.Verify(B64Url(R"({"alg":"RS256","typ":"JWT"})") + "." + payload + ".c2ln"));
  EXPECT_FALSE(codec.Verify(B64Url(R"({"alg":"hs256"})") + "." + payload + ".c2ln"));
  EXPECT_FALSE(codec.Verify(B64Url(R"({"typ":"JWT"})") + "." + payload + ".c2ln"))
      << "no alg at all";
}

TEST(JwtTest, RejectsBadSignaturesAndTampering) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, "another-secret-0123456789abcdefghijklmn")));
  auto token = *codec.Issue(7, "alice");
  // Swap the payload for one claiming another user, keep the signature.
  auto dot1 = token.find('.'), dot2 = token.rfind('.');
  std::string forged = token.substr(0, dot1) + "." +
                       B64Url(R"({"sub":"1","username":"admin","iat":1,"exp":99999999999})") +
                       token.substr(dot2);
  EXPECT_FALSE(codec.Verify(forged));
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(codec.Verify(flipped));
  EXPECT_FALSE(codec.Verify(token.substr(0, dot2))) << "no signature part";
}

TEST(JwtTest, RejectsMalformedTokensAndBadClaims) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600));
  for (const char* bad : {"", "abc", "a.b", "a.b.c.d", "!!!.###.$$$", "..."}) {
    EXPECT_FALSE(codec.Verify(bad)) << bad;
  }
  EXPECT_FALSE(codec.Verify(std::string(5000, 'a'))) << "oversized";
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, kSecret, true, 3600, "not-a-number")));
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, kSecret, true, 3600, "-3")));
  EXPECT_FALSE(codec.Verify(Sign(JWT_ALG_HS256, kSecret, true, 3600, nullptr))) << "no sub";
  EXPECT_TRUE(codec.Verify(Sign(JWT_ALG_HS256, kSecret))) << "the helper makes good tokens";
}

// RFC 7519 §4.1.5: not to be accepted before nbf.
TEST(JwtTest, RejectsATokenWhoseNbfIsAnHourAhead) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600), /*cache_entries=*/0);
  const std::int64_t now = 1'900'000'000;
  auto claims =
      codec.Verify(SignClaims(ClaimsAt(now, R"(,"nbf":)" + std::to_string(now + 3600))), At(now));
  ASSERT_FALSE(claims) << "a token not valid for another hour was accepted";
  EXPECT_EQ(claims.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(claims.error().message.find("nbf"), std::string::npos) << claims.error().message;
  // An hour later it is good.
  EXPECT_TRUE(codec.Verify(SignClaims(ClaimsAt(now, R"(,"nbf":)" + std::to_string(now + 3600))),
                           At(now + 3600)));
}

TEST(JwtTest, NbfAndIatWithinTheLeewayAreAcceptedAndJustBeyondAreNot) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600), /*cache_entries=*/0);
  const std::int64_t now = 1'900'000'000, skew = JwtCodec::kMaxSkewSeconds;
  ASSERT_EQ(skew, 60);
  auto nbf = [&](std::int64_t at) {
    return codec.Verify(SignClaims(ClaimsAt(now, R"(,"nbf":)" + std::to_string(at))), At(now));
  };
  EXPECT_TRUE(nbf(now - 10)) << "in the past";
  EXPECT_TRUE(nbf(now));
  EXPECT_TRUE(nbf(now + 30)) << "a clock 30 s ahead";
  EXPECT_TRUE(nbf(now + skew)) << "at the edge of the leeway";
  EXPECT_FALSE(nbf(now + skew + 1)) << "just beyond the leeway";
  // The same leeway for iat.
  EXPECT_TRUE(codec.Verify(SignClaims(ClaimsAt(now + skew, "")), At(now)));
  EXPECT_FALSE(codec.Verify(SignClaims(ClaimsAt(now + skew + 1, "")), At(now)));
}

TEST(JwtTest, RejectsMalformedNbfAndOtherTimes) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600), /*cache_entries=*/0);
  const std::int64_t now = 1'900'000'000;
  for (const char* nbf : {R"("1800000000")", "1800000000.5", "1.8e9", "true", "null", "[]", "{}"}) {
    auto claims = codec.Verify(SignClaims(ClaimsAt(now, std::string(R"(,"nbf":)") + nbf)), At(now));
    ASSERT_FALSE(claims) << "nbf " << nbf;
    EXPECT_NE(claims.error().message.find("nbf"), std::string::npos) << claims.error().message;
  }
  // Beyond 64 bits (libjwt's JSON parser already refuses these).
  for (const char* nbf : {"9223372036854775808", "18446744073709551615", "99999999999999999999"}) {
    EXPECT_FALSE(codec.Verify(SignClaims(ClaimsAt(now, std::string(R"(,"nbf":)") + nbf)), At(now)))
        << "nbf " << nbf;
  }
  // Times system_clock cannot hold, or before 1970, are no times of ours; an
  // exp of 1767225667229200 overflowed a chrono conversion (found by fuzz_jwt).
  EXPECT_FALSE(codec.Verify(
      SignClaims(R"({"sub":"7","username":"a","iat":1,"exp":1767225667229200})"), At(now)));
  EXPECT_TRUE(codec.Verify(
      SignClaims(R"({"sub":"7","username":"a","iat":1,"exp":9223372036})"), At(now)))
      << "the last second system_clock holds is a time";
  EXPECT_FALSE(codec.Verify(
      SignClaims(R"({"sub":"7","username":"a","iat":1,"exp":9223372037})"), At(now)));
  EXPECT_FALSE(codec.Verify(SignClaims(ClaimsAt(now, R"(,"nbf":-1)")), At(now)));
  // libjwt would read a string iat as 0 and a string exp as "expired"; both are malformed.
  std::string exp = std::to_string(now + 7200);
  EXPECT_FALSE(codec.Verify(SignClaims(R"({"sub":"7","username":"a","iat":"1","exp":)" + exp + "}"),
                            At(now)));
  EXPECT_FALSE(codec.Verify(
      SignClaims(R"({"sub":"7","username":"a","iat":1,"exp":")" + exp + "\"}"), At(now)));
  EXPECT_FALSE(
      codec.Verify(SignClaims(R"({"sub":7,"username":"a","iat":1,"exp":)" + exp + "}"), At(now)))
      << "sub must be a string";
}

TEST(JwtTest, RandomSecretsAreLongAndDifferent) {
  auto a = RandomSecret(), b = RandomSecret();
  EXPECT_GE(a.size(), JwtCodec::kMinSecretBytes);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace disco::service

namespace disco::service {
namespace {

TEST(JwtCacheTest, CachedTokensStillExpireAndOthersStillFail) {
  JwtCodec codec(kSecret, std::chrono::seconds(60), /*cache_entries=*/4);
  auto now = std::chrono::system_clock::now();
  auto token = *codec.Issue(5, "eve", now);
  ASSERT_TRUE(codec.Verify(token, now));
  ASSERT_TRUE(codec.Verify(token, now)) << "from the cache";
  auto later = codec.Verify(token, now + std::chrono::seconds(61));
  ASSERT_FALSE(later) << "exp is checked on a cache hit";
  EXPECT_NE(later.error().message.find("expired"), std::string::npos);
  // A different token (one flipped character) never hits the entry.
  std::string flipped = *codec.Issue(5, "eve", now);
  flipped[flipped.size() - 2] = flipped[flipped.size() - 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(codec.Verify(flipped, now));
  // Many tokens: the cache stays bounded and every token still verifies.
  for (int i = 1; i <= 20; ++i) {
    auto t = *codec.Issue(i, "user" + std::to_string(i), now);
    auto claims = codec.Verify(t, now);
    ASSERT_TRUE(claims);
    EXPECT_EQ(claims->user_id, i);
  }
}

TEST(JwtCacheTest, ACachedTokenIsNotAcceptedBeforeItsNbf) {
  JwtCodec codec(kSecret, std::chrono::seconds(3600), /*cache_entries=*/4);
  const std::int64_t now = 1'900'000'000;
  auto token = SignClaims(ClaimsAt(now - 3600, R"(,"nbf":)" + std::to_string(now)));
  ASSERT_TRUE(codec.Verify(token, At(now)));
  ASSERT_TRUE(codec.Verify(token, At(now))) << "from the cache";
  // The clock set back two minutes: the cached token is not valid yet.
  auto early = codec.Verify(token, At(now - 120));
  ASSERT_FALSE(early) << "a cache hit skipped the nbf check";
  EXPECT_NE(early.error().message.find("nbf"), std::string::npos);
  EXPECT_TRUE(codec.Verify(token, At(now))) << "and valid again at nbf";
}

}  // namespace
}  // namespace disco::service
