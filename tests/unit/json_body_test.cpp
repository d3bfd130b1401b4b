// Reading JSON request bodies: status codes, field errors, exact numbers.
#include "common/json_body.h"

#include <gtest/gtest.h>

namespace disco::service {
namespace {

http::Request JsonRequest(std::string body, std::string_view type = "application/json") {
  http::Request r;
  r.headers = {{"Content-Type", type}};
  r.body = std::move(body);
  return r;
}

TEST(JsonBodyTest, StatusForEachKindOfBadBody) {
  JsonBody body;
  EXPECT_EQ(ParseJsonObject(JsonRequest("{}", "text/plain"), body)->status, 415);
  http::Request no_type;
  no_type.body = "{}";
  EXPECT_EQ(ParseJsonObject(no_type, body)->status, 415);
  EXPECT_EQ(ParseJsonObject(JsonRequest(""), body)->status, 400);
  EXPECT_EQ(ParseJsonObject(JsonRequest("{\"a\":"), body)->status, 400);
  EXPECT_EQ(ParseJsonObject(JsonRequest("{} trailing"), body)->status, 400);
  EXPECT_EQ(ParseJsonObject(JsonRequest("{\"a\":\"\xff\"}"), body)->status, 400) << "invalid UTF-8";
  EXPECT_EQ(
      ParseJsonObject(JsonRequest(std::string(100, '[') + std::string(100, ']')), body)->status,
      400);
  EXPECT_EQ(ParseJsonObject(JsonRequest("[1,2]"), body)->status, 422);
  EXPECT_EQ(ParseJsonObject(JsonRequest("\"text\""), body)->status, 422);
  JsonBody ok;
  EXPECT_FALSE(ParseJsonObject(JsonRequest("{\"a\":1}", "application/json; charset=utf-8"), ok));
}

TEST(JsonBodyTest, KeepsTheTextOfTopLevelNumbers) {
  JsonBody body;
  ASSERT_FALSE(
      ParseJsonObject(JsonRequest(R"({"price":12.30,"q":7,"n":{"price":1.5},"big":1e300})"), body));
  EXPECT_EQ(body.raw_numbers["price"], "12.30");
  EXPECT_EQ(body.raw_numbers["q"], "7");
  EXPECT_EQ(body.raw_numbers["big"], "1e300");
  JsonBody overflow;
  EXPECT_EQ(ParseJsonObject(JsonRequest(R"({"price":1e400})"), overflow)->status, 400)
      << "out of double range";
  EXPECT_EQ(body.raw_numbers.count("n"), 0u);
}

TEST(JsonBodyTest, FieldReadersNameTheField) {
  JsonBody body;
  ASSERT_FALSE(ParseJsonObject(
      JsonRequest(R"({"s":"x","i":5,"f":1.5,"b":true,"n":null,"u":18446744073709551615})"), body));
  std::string s;
  std::int64_t i = 0;
  EXPECT_FALSE(ReadString(body, "s", s));
  EXPECT_EQ(s, "x");
  EXPECT_FALSE(ReadInteger(body, "i", i));
  EXPECT_EQ(i, 5);
  for (auto [field, expect] :
       {std::pair{"missing", "is required"}, {"n", "is required"}, {"i", "must be a string"}}) {
    auto error = ReadString(body, field, s);
    ASSERT_TRUE(error);
    EXPECT_EQ(error->status, 422);
    EXPECT_NE(error->body.find(std::string("\"field\":\"") + field + "\""), std::string::npos)
        << error->body;
    EXPECT_NE(error->body.find(expect), std::string::npos) << error->body;
  }
  EXPECT_EQ(ReadInteger(body, "f", i)->status, 422);
  EXPECT_EQ(ReadInteger(body, "b", i)->status, 422);
  EXPECT_EQ(ReadInteger(body, "s", i)->status, 422);
  EXPECT_EQ(ReadInteger(body, "u", i)->status, 422) << "beyond int64";
}

}  // namespace
}  // namespace disco::service
