// The RESP2 reader and writer and the --redis URL (services/common/redis_*).
#include "common/redis_resp.h"

#include <gtest/gtest.h>

#include "common/redis_url.h"

namespace disco::service::redis {
namespace {

using Status = ParseOutcome::Status;

TEST(RedisRespTest, ReadsEveryReplyType) {
  Reply r;
  auto o = ParseReply("+OK\r\n", r);
  ASSERT_EQ(o.status, Status::kComplete);
  EXPECT_EQ(o.consumed, 5u);
  EXPECT_EQ(r.type, Reply::Type::kStatus);
  EXPECT_EQ(r.text, "OK");

  ASSERT_EQ(ParseReply("-NOSCRIPT No matching script\r\n", r).status, Status::kComplete);
  EXPECT_TRUE(r.is_error());
  EXPECT_EQ(r.text, "NOSCRIPT No matching script");

  ASSERT_EQ(ParseReply(":-42\r\n", r).status, Status::kComplete);
  EXPECT_EQ(r.integer, -42);

  ASSERT_EQ(ParseReply("$5\r\na\r\nbc\r\n", r).status, Status::kComplete);
  EXPECT_EQ(r.text, "a\r\nbc");  // binary-safe

  ASSERT_EQ(ParseReply("$-1\r\n", r).status, Status::kComplete);
  EXPECT_EQ(r.type, Reply::Type::kNil);

  o = ParseReply("*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n:9\r\n", r);
  ASSERT_EQ(o.status, Status::kComplete);
  EXPECT_EQ(o.consumed, 21u);  // the trailing ":9" is the next reply
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[0].integer, 1);
  EXPECT_EQ(r.elements[1].type, Reply::Type::kNil);
  EXPECT_EQ(r.elements[2].elements.at(0).text, "x");
}

TEST(RedisRespTest, EveryPrefixOfAReplyIsIncomplete) {
  const std::string whole = "*2\r\n$3\r\nfoo\r\n:12\r\n";
  for (std::size_t n = 0; n < whole.size(); ++n) {
    Reply r;
    EXPECT_EQ(ParseReply(whole.substr(0, n), r).status, Status::kIncomplete) << n;
  }
  Reply r;
  EXPECT_EQ(ParseReply(whole, r).status, Status::kComplete);
}

TEST(RedisRespTest, MalformedAndOversizedRepliesAreErrors) {
  for (std::string bad : {"?x\r\n", ":12a\r\n", ":\r\n", "$-2\r\n", "$3\r\nabcd\r\n", "*-5\r\n",
                          "$99999999999999999999\r\n", "$2000000\r\n", "*5000\r\n",
                          "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"}) {
    Reply r;
    EXPECT_EQ(ParseReply(bad, r).status, Status::kMalformed) << bad;
  }
  Reply r;
  EXPECT_EQ(ParseReply("+" + std::string(kMaxLineBytes + 10, 'x'), r).status, Status::kMalformed);
}

TEST(RedisRespTest, EncodesCommandsAsBulkStringArrays) {
  std::string out;
  EncodeCommand(out, {"SET", "k", ""});
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
}

TEST(RedisUrlTest, ParsesHostPortDbAndCredentials) {
  auto url = ParseRedisUrl("redis://127.0.0.1:6390/2");
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 6390);
  EXPECT_EQ(url->db, 2);
  EXPECT_TRUE(url->password.empty());

  url = ParseRedisUrl("redis://:s%40cret@localhost");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->port, 6379);
  EXPECT_EQ(url->password, "s@cret");
  EXPECT_EQ(url->Redacted(), "redis://***@localhost:6379/0");

  url = ParseRedisUrl("redis://app:pw@[::1]:7000");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->user, "app");
  EXPECT_EQ(url->Redacted(), "redis://app:***@[::1]:7000/0");
}

TEST(RedisUrlTest, RefusesWhatItWouldHalfUnderstandWithoutShowingThePassword) {
  for (std::string bad :
       {"", "127.0.0.1:6379", "http://x", "rediss://x", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:70000", "redis://h:x", "redis://h/-1", "redis://h/db", "redis://h?timeout=1",
        "redis://nocolon@h", "redis://:@h", "redis://h h", "redis://:hunter2@h:notaport",
        "redis://:hunter%zz@h"}) {
    auto url = ParseRedisUrl(bad);
    ASSERT_FALSE(url) << bad;
    EXPECT_NE(url.error().message.find("--redis"), std::string::npos);
    EXPECT_EQ(url.error().message.find("hunter"), std::string::npos) << url.error().message;
  }
}

}  // namespace
}  // namespace disco::service::redis
