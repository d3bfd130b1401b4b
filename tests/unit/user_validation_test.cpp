// user-service input rules.
#include <gtest/gtest.h>

#include "user/validation.h"

namespace disco::user {
namespace {

TEST(UserValidationTest, Usernames) {
  for (const char* ok : {"abc", "alice_01", "a.b-c", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"}) {
    EXPECT_FALSE(CheckUsername(ok)) << ok;
  }
  for (const char* bad : {"", "ab", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "has space", "émile",
                          "a/b", "a@b", "x;--"}) {
    auto why = CheckUsername(bad);
    ASSERT_TRUE(why) << bad;
    EXPECT_NE(why->find("username"), std::string::npos);
  }
}

TEST(UserValidationTest, PasswordsCountCharactersNotBytes) {
  EXPECT_FALSE(CheckPassword("12345678"));
  EXPECT_TRUE(CheckPassword("1234567"));
  EXPECT_FALSE(CheckPassword(std::string(128, 'x')));
  EXPECT_TRUE(CheckPassword(std::string(129, 'x')));
  // 100 × "é" is 200 bytes but 100 characters.
  std::string accents;
  for (int i = 0; i < 100; ++i) accents += "\xc3\xa9";
  EXPECT_FALSE(CheckPassword(accents));
  EXPECT_TRUE(CheckPassword(std::string("abc\0defgh", 9)));
  EXPECT_NE(CheckPassword("short")->find("password"), std::string::npos);
}

TEST(UserValidationTest, Emails) {
  for (const char* ok : {"a@example.com", "first.last+tag@sub.example.co", "x_y@a-b.io"}) {
    EXPECT_FALSE(CheckEmail(ok)) << ok;
  }
  for (const char* bad :
       {"", "plain", "@example.com", "a@", "a@b", "a@b.c", "a@@b.com", "a b@c.com", "a@-b.com",
        "a@b-.com", "a@b..com", ".a@b.com", "a.@b.com", "a@b.c0m", "a<b>@c.com", "a@b_c.com"}) {
    auto why = CheckEmail(bad);
    ASSERT_TRUE(why) << bad;
    EXPECT_NE(why->find("email"), std::string::npos);
  }
  EXPECT_TRUE(CheckEmail(std::string(250, 'a') + "@b.com"));
}

}  // namespace
}  // namespace disco::user
