// mysql:// URLs (common/mysql.h): the parts, percent-decoding, options, and
// clear errors that never echo the password.
#include <gtest/gtest.h>

#include <fstream>

#include "common/mysql.h"
#include "fixture/util.h"

namespace disco::service {
namespace {

TEST(MysqlUrlTest, PartsAndDefaults) {
  auto url = ParseMysqlUrl("mysql://disco:s3cret@db.example:3307/orders");
  ASSERT_TRUE(url) << url.error().ToString();
  EXPECT_EQ(url->user, "disco");
  EXPECT_EQ(url->password, "s3cret");
  EXPECT_EQ(url->host, "db.example");
  EXPECT_EQ(url->port, 3307u);
  EXPECT_EQ(url->database, "orders");
  EXPECT_EQ(url->connect_timeout_s, 5u);
  EXPECT_EQ(url->read_timeout_s, 30u);

  auto bare = ParseMysqlUrl("mysql://u@/d");
  ASSERT_TRUE(bare) << bare.error().ToString();
  EXPECT_EQ(bare->host, "127.0.0.1");
  EXPECT_EQ(bare->port, 3306u);
  EXPECT_EQ(bare->password, "");
  auto v6 = ParseMysqlUrl("mysql://u:p@[::1]:3310/d");
  ASSERT_TRUE(v6) << v6.error().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 3310u);
}

TEST(MysqlUrlTest, PercentDecodingAndAtInPasswords) {
  auto url = ParseMysqlUrl("mysql://us%65r:p%40ss%2Fw%3Ard@h:1/d");
  ASSERT_TRUE(url) << url.error().ToString();
  EXPECT_EQ(url->user, "user");
  EXPECT_EQ(url->password, "p@ss/w:rd");
  auto raw_at = ParseMysqlUrl("mysql://u:p@ss@h/d");
  ASSERT_TRUE(raw_at);
  EXPECT_EQ(raw_at->password, "p@ss");
  EXPECT_EQ(raw_at->host, "h");
}

TEST(MysqlUrlTest, Options) {
  testing::TempDir dir("disco-mysql-url");
  std::ofstream(dir.Sub("pw")) << "from-a-file\n";
  auto url = ParseMysqlUrl("mysql://u@h/d?connect_timeout=2&read_timeout=7&write_timeout=9"
                           "&socket=/run/mysqld/mysqld.sock&password_file=" +
                           dir.Sub("pw"));
  ASSERT_TRUE(url) << url.error().ToString();
  EXPECT_EQ(url->connect_timeout_s, 2u);
  EXPECT_EQ(url->read_timeout_s, 7u);
  EXPECT_EQ(url->write_timeout_s, 9u);
  EXPECT_EQ(url->socket, "/run/mysqld/mysqld.sock");
  EXPECT_EQ(url->password, "from-a-file");
}

TEST(MysqlUrlTest, BadUrlsAreClearErrorsWithoutThePassword) {
  for (const char* bad :
       {"mysql://h/d", "mysql://u:topsecret@h", "mysql://u:topsecret@h/", "mysql://u:topsecret@h:0/d",
        "mysql://u:topsecret@h:99999/d", "mysql://u:topsecret@h:x/d", "mysql://u:top%zzsecret@h/d",
        "mysql://u:topsecret@h/d?connect_timeout=0", "mysql://u:topsecret@h/d?nope=1",
        "mysql://u:topsecret@h/d?password_file=/nonexistent/pw", "mysql://u:topsecret@h/a/b",
        "mysql://u:top%00secret@h/d"}) {
    auto url = ParseMysqlUrl(bad);
    ASSERT_FALSE(url) << bad;
    EXPECT_EQ(url.error().code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_EQ(url.error().message.find("topsecret"), std::string::npos) << url.error().message;
  }
}

}  // namespace
}  // namespace disco::service
