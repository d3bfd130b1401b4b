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

}  // namespace
}  // namespace disco::service
