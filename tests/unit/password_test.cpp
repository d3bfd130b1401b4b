// bcrypt through libxcrypt, compatible with Python's bcrypt.
#include "common/password.h"

#include <gtest/gtest.h>

namespace disco::service {
namespace {

TEST(PasswordTest, HashesAre2bAndVerify) {
  auto hash = HashPassword("correct horse battery", 4);
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->substr(0, 7), "$2b$04$");
  EXPECT_EQ(hash->size(), 60u);
  EXPECT_TRUE(VerifyPassword("correct horse battery", *hash));
  EXPECT_FALSE(VerifyPassword("correct horse batterY", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
  EXPECT_NE(*hash, *HashPassword("correct horse battery", 4)) << "a fresh salt every time";
}

TEST(PasswordTest, VerifiesHashesMadeByPythonBcrypt) {
  // Made with Debian's python3-bcrypt 3.2.2:
  //   bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(rounds=4))  (and rounds=5, 12)
  EXPECT_TRUE(VerifyPassword("correct horse battery",
                             "$2b$04$6Nkg43u.eE3RQRxO.U6uVeFAJw5NM/qB.hjaIXmZr3vFhDNuNmtRC"));
  EXPECT_TRUE(VerifyPassword("S3cret!pass",
                             "$2b$05$kSJbS1Q19GYmCdxZojPk4eIi8RwLKav9RQOhSgACIWulx9malS6pu"));
  EXPECT_TRUE(VerifyPassword("correct horse battery",
                             "$2b$12$khkd2a.DyfpbYAol25cyhum/0CT5S2fqDNVvjLammJe8jZoJ2FPTy"));
  EXPECT_FALSE(
      VerifyPassword("wrong", "$2b$04$6Nkg43u.eE3RQRxO.U6uVeFAJw5NM/qB.hjaIXmZr3vFhDNuNmtRC"));
  // OpenBSD / Openwall published $2a$ vector.
  EXPECT_TRUE(
      VerifyPassword("U*U", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
}

TEST(PasswordTest, CostIsHonouredAndChecked) {
  auto hash = HashPassword("password123", 5);
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->substr(0, 7), "$2b$05$");
  EXPECT_FALSE(HashPassword("password123", 3));
  EXPECT_FALSE(HashPassword("password123", 32));
}

TEST(PasswordTest, LongPasswordsUseEveryByte) {
  // bcrypt alone would ignore everything after byte 72.
  std::string a(100, 'x'), b(100, 'x');
  b.back() = 'y';
  auto hash = HashPassword(a, 4);
  ASSERT_TRUE(hash);
  EXPECT_TRUE(VerifyPassword(a, *hash));
  EXPECT_FALSE(VerifyPassword(b, *hash));
}

TEST(PasswordTest, MalformedHashesAndNulBytesNeverVerify) {
  for (const char* bad :
       {"", "*0", "$1$abc$def", "$2b$04$short", "plaintext-password-stored-by-mistake"}) {
    EXPECT_FALSE(VerifyPassword("password", bad)) << bad;
  }
  EXPECT_FALSE(HashPassword(std::string("abc\0def", 7), 4));
  auto hash = *HashPassword("abc", 4);
  EXPECT_FALSE(VerifyPassword(std::string("abc\0def", 7), hash)) << "no truncation at NUL";
}

// 87 bytes: over bcrypt's 72, so pre-hashed.
const std::string kLongPassword = [] {
  std::string s;
  for (int i = 0; i < 3; ++i) s += "correct horse battery staple ";
  return s;
}();
// base64(SHA-256(kLongPassword)), the unsalted pre-hash of old releases:
//   base64.b64encode(hashlib.sha256(pw.encode()).digest())
const std::string kLongPasswordSha256 = "njf04XfV/EbLjclRhMTaT+xTAt23HDyL/UNWl/7bdeQ=";

TEST(PasswordTest, TheUnsaltedDigestOfALongPasswordDoesNotLogIn) {
  ASSERT_EQ(kLongPassword.size(), 87u);
  auto hash = HashPassword(kLongPassword, 4);
  ASSERT_TRUE(hash);
  EXPECT_TRUE(VerifyPassword(kLongPassword, *hash));
  // The digest may have leaked from any site that pre-hashes the same way.
  EXPECT_FALSE(VerifyPassword(kLongPasswordSha256, *hash)) << *hash;
  // Marked, and the salt-keyed pre-hash differs per hash.
  EXPECT_TRUE(hash->starts_with("$disco-hmac$2b$04$")) << *hash;
  EXPECT_EQ(hash->size(), 71u);
  auto again = HashPassword(kLongPassword, 4);
  ASSERT_TRUE(again);
  EXPECT_NE(*hash, *again);
  EXPECT_TRUE(VerifyPassword(kLongPassword, *again));
  // The bcrypt part without its marker is not a hash of either.
  std::string bare = hash->substr(std::string_view("$disco-hmac").size());
  EXPECT_FALSE(VerifyPassword(kLongPassword, bare));
  EXPECT_FALSE(VerifyPassword(kLongPasswordSha256, bare));
}

TEST(PasswordTest, UpTo72BytesStaysPlainBcryptAndLongerIsMarked) {
  std::string at_limit(72, 'p'), over(73, 'p');
  auto plain = HashPassword(at_limit, 4);
  auto marked = HashPassword(over, 4);
  ASSERT_TRUE(plain && marked);
  EXPECT_TRUE(plain->starts_with("$2b$04$")) << *plain;
  EXPECT_TRUE(marked->starts_with("$disco-hmac$2b$04$")) << *marked;
  EXPECT_TRUE(VerifyPassword(at_limit, *plain));
  EXPECT_TRUE(VerifyPassword(over, *marked));
  EXPECT_FALSE(VerifyPassword(at_limit, *marked));
  EXPECT_FALSE(VerifyPassword(over, *plain));
}

TEST(PasswordTest, LegacyLongPasswordHashesVerifyAndAskToBeReplaced) {
  // Made by the old recipe, bcrypt(base64(SHA-256(password))), with Python:
  //   crypt.crypt(kLongPasswordSha256, "$2b$04$LegacyUnsaltedSha256Pr")
  const std::string legacy = "$2b$04$LegacyUnsaltedSha256PeLRshqkstmCiLYs5eH6TniR/YZg4rRli";
  EXPECT_TRUE(VerifyPassword(kLongPassword, legacy));
  EXPECT_FALSE(VerifyPassword(kLongPassword + "!", legacy));
  EXPECT_TRUE(NeedsRehash(kLongPassword, legacy));
  auto fresh = HashPassword(kLongPassword, 4);
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(VerifyPassword(kLongPassword, *fresh));
  EXPECT_FALSE(NeedsRehash(kLongPassword, *fresh));
  EXPECT_FALSE(VerifyPassword(kLongPasswordSha256, *fresh)) << "the upgrade closes the replay";
  // Plain bcrypt of a short password is current: nothing to replace.
  EXPECT_FALSE(NeedsRehash("correct horse battery",
                           "$2b$04$6Nkg43u.eE3RQRxO.U6uVeFAJw5NM/qB.hjaIXmZr3vFhDNuNmtRC"));
}

TEST(PasswordTest, MalformedMarkedHashesNeverVerify) {
  auto hash = *HashPassword(kLongPassword, 4);
  for (const std::string& bad :
       {std::string("$disco-hmac"), std::string("$disco-hmac$"),
        std::string("$disco-hmac$2b$04$short"), hash.substr(0, hash.size() - 1), hash + "x",
        "$disco-hmac$1$" + hash.substr(15), "$disco-hmac" + hash}) {
    EXPECT_FALSE(VerifyPassword(kLongPassword, bad)) << bad;
  }
  // A plain hash given the marker: the marker changes what bcrypt is fed.
  EXPECT_FALSE(
      VerifyPassword("correct horse battery",
                     "$disco-hmac$2b$04$6Nkg43u.eE3RQRxO.U6uVeFAJw5NM/qB.hjaIXmZr3vFhDNuNmtRC"));
}

}  // namespace
}  // namespace disco::service
