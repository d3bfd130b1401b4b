// Router matching and the HTTP message helpers (request ids, JSON errors).
#include <gtest/gtest.h>

#include <cctype>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "disco/http/message.h"
#include "disco/http/router.h"
#include "http/connection.h"
#include "http/transport.h"

namespace disco::http {
namespace {

Handler Dummy() {
  return [](Request&) -> Awaitable<Response> { co_return Response::Text(200, "x"); };
}

using Params = std::vector<std::pair<std::string_view, std::string_view>>;

TEST(RouterTest, MatchesLiteralsAndCaptures) {
  Router router;
  router.Add("GET", "/api/users/{id}", Dummy())
      .Add("GET", "/api/users/me", Dummy())
      .Add("POST", "/api/users/register", Dummy());
  Params params;
  auto m = router.Match("GET", "/api/users/42", params);
  ASSERT_EQ(m.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(m.pattern, "/api/users/{id}");
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "id");
  EXPECT_EQ(params[0].second, "42");

  params.clear();
  m = router.Match("GET", "/api/users/me", params);
  ASSERT_EQ(m.kind, RouteMatch::Kind::kFound);
  EXPECT_EQ(m.pattern, "/api/users/me") << "a literal segment beats a capture";
  EXPECT_TRUE(params.empty());
}

TEST(RouterTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Router router;
  router.Add("GET", "/api/orders", Dummy())
      .Add("POST", "/api/orders", Dummy())
      .Add("GET", "/api/orders/{id}", Dummy());
  Params params;
  EXPECT_EQ(router.Match("GET", "/api/nothing", params).kind, RouteMatch::Kind::kNotFound);
  EXPECT_EQ(router.Match("GET", "/api/orders/1/extra", params).kind, RouteMatch::Kind::kNotFound);
  EXPECT_EQ(router.Match("GET", "/api/orders/", params).kind, RouteMatch::Kind::kNotFound)
      << "an empty segment does not fill a capture";
  auto m = router.Match("DELETE", "/api/orders", params);
  ASSERT_EQ(m.kind, RouteMatch::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allow, "GET, POST");
  m = router.Match("PUT", "/api/orders/7", params);
  ASSERT_EQ(m.kind, RouteMatch::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allow, "GET");
}

TEST(RouterTest, RootAndLongPaths) {
  Router router;
  router.Add("GET", "/", Dummy()).Add("GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/{n}", Dummy());
  Params params;
  EXPECT_EQ(router.Match("GET", "/", params).kind, RouteMatch::Kind::kFound);
  params.clear();
  auto m = router.Match("GET", "/a/b/c/d/e/f/g/h/i/j/k/l/m/zz", params);
  ASSERT_EQ(m.kind, RouteMatch::Kind::kFound) << "more segments than the inline buffer";
  EXPECT_EQ(params.at(0).second, "zz");
}

TEST(RouterTest, AddingTheSameRouteReplacesIt) {
  Router router;
  router.Add("GET", "/x", Dummy()).Add("GET", "/x", Dummy());
  EXPECT_EQ(router.size(), 1u);
  EXPECT_TRUE(router.Has("GET", "/x"));
  EXPECT_FALSE(router.Has("POST", "/x"));
}

TEST(HttpMessageTest, RequestIdRules) {
  EXPECT_TRUE(IsValidRequestId("abc-123_x.y:z"));
  EXPECT_TRUE(IsValidRequestId(std::string(128, 'a')));
  EXPECT_FALSE(IsValidRequestId(""));
  EXPECT_FALSE(IsValidRequestId(std::string(129, 'a')));
  EXPECT_FALSE(IsValidRequestId("has space"));
  EXPECT_FALSE(IsValidRequestId("quote\""));
  EXPECT_FALSE(IsValidRequestId("new\nline"));
  auto a = NewRequestId(), b = NewRequestId();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_TRUE(IsValidRequestId(a));
  EXPECT_NE(a, b);
}

TEST(HttpMessageTest, JsonErrorsAreEscaped) {
  auto r = Response::Error(422, "validation_failed", "bad \"name\"\n\x01");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, R"({"error":"validation_failed","message":"bad \"name\"\n\u0001"})");
}

// Whatever bytes a client sends, what we quote is JSON a strict parser takes:
// well-formed UTF-8 passes, anything else is U+FFFD, one per bad byte.
TEST(HttpMessageTest, JsonQuoteKeepsUtf8AndReplacesTheRest) {
  EXPECT_EQ(JsonQuote("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\"");
  EXPECT_EQ(JsonQuote("\xff"), "\"\\ufffd\"");
  EXPECT_EQ(JsonQuote("a\xc3"), "\"a\\ufffd\"") << "cut short at the end";
  EXPECT_EQ(JsonQuote("\xc3(x"), "\"\\ufffd(x\"") << "a continuation byte missing";
  EXPECT_EQ(JsonQuote("\xc0\xaf"), "\"\\ufffd\\ufffd\"") << "overlong '/'";
  EXPECT_EQ(JsonQuote("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"") << "overlong, 3 bytes";
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"") << "a surrogate";
  EXPECT_EQ(JsonQuote("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"") << "past U+10FFFF";
  EXPECT_EQ(JsonQuote("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"") << "U+10FFFF itself";
  auto parsed = nlohmann::json::parse(Response::Error(404, "not_found", "/users/\xff\xfe").body);
  EXPECT_EQ(parsed["message"], "/users/\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(HttpMessageTest, HeadersAreCaseInsensitiveAndBearerIsParsed) {
  Request r;
  r.headers = {{"content-type", "Application/JSON; charset=utf-8"},
               {"AUTHORIZATION", "bearer  abc.def.ghi "}};
  EXPECT_TRUE(r.IsJson());
  EXPECT_EQ(r.Header("Content-Type"), "Application/JSON; charset=utf-8");
  EXPECT_EQ(r.BearerToken(), "abc.def.ghi");
  r.headers = {{"Content-Type", "text/plain"}, {"Authorization", "Basic dXNlcjpwYXNz"}};
  EXPECT_FALSE(r.IsJson());
  EXPECT_EQ(r.BearerToken(), "");
}

// Names of every length around the 8-byte words HeaderNameEquals compares.
TEST(HttpMessageTest, HeaderNamesCompareIgnoringCaseOnly) {
  const std::string name = "X-Forwarded-Proto-And-More";
  for (std::size_t n = 0; n <= name.size(); ++n) {
    std::string a = name.substr(0, n);
    std::string upper = a;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(HeaderNameEquals(a, upper)) << a;
    for (std::size_t i = 0; i < n; ++i) {
      std::string other = a;
      other[i] = other[i] == '-' ? '_' : static_cast<char>(other[i] ^ 0x01);
      EXPECT_FALSE(HeaderNameEquals(a, other)) << a << " vs " << other;
      // The case bit alone makes a difference for anything but letters.
      std::string flipped = a;
      flipped[i] = static_cast<char>(flipped[i] ^ 0x20);
      const bool letter = std::isalpha(static_cast<unsigned char>(a[i])) != 0;
      EXPECT_EQ(HeaderNameEquals(a, flipped), letter) << a << " vs " << flipped;
    }
  }
  EXPECT_FALSE(HeaderNameEquals("Content-Type", "Content-Typ"));
}

// A CR or LF anywhere, for lengths around the 8-byte words HasLineBreak scans.
TEST(HttpMessageTest, LineBreaksAreFoundAnywhere) {
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string clean(n, 'a');
    EXPECT_FALSE(detail::HasLineBreak(clean)) << n;
    for (std::size_t i = 0; i < n; ++i) {
      for (char c : {'\r', '\n'}) {
        std::string dirty = clean;
        dirty[i] = c;
        EXPECT_TRUE(detail::HasLineBreak(dirty)) << n << " at " << i;
      }
      std::string near = clean;  // neighbours of CR and LF are no line break
      near[i] = static_cast<char>(i % 2 == 0 ? '\r' + 1 : '\n' - 1);
      EXPECT_FALSE(detail::HasLineBreak(near)) << n << " at " << i;
    }
  }
}

// Counted in one pass, sixteen bytes at a time: every length around the
// blocks, every position.
TEST(HttpMessageTest, LineBreakBytesAreCountedAnywhere) {
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string clean(n, 'a');
    EXPECT_EQ(detail::CountLineBreakBytes(clean), 0u) << n;
    std::string all = clean;
    for (std::size_t i = 0; i < n; ++i) {
      std::string one = clean;
      one[i] = i % 2 == 0 ? '\r' : '\n';
      EXPECT_EQ(detail::CountLineBreakBytes(one), 1u) << n << " at " << i;
      all[i] = one[i];
      EXPECT_EQ(detail::CountLineBreakBytes(all), i + 1) << n << " at " << i;
    }
  }
  // Past the 255 blocks a byte's counter holds before it is summed.
  const std::string breaks(16 * 600 + 7, '\n');
  EXPECT_EQ(detail::CountLineBreakBytes(breaks), breaks.size());
}

// A request head is written unchecked and counted once; a line break in any
// name or value drops that field (and only it), wherever it comes from.
TEST(HttpMessageTest, RequestHeadsDropEveryFieldWithALineBreak) {
  detail::Transport transport(detail::TransportOptions{});
  ClientRequest clean;
  clean.method = "POST";
  clean.body = "{}";
  clean.content_type = "application/json";
  clean.request_id = "rid";
  clean.authorization = "Bearer t";
  clean.headers = {{"X-Own", "1"}};
  clean.borrowed_headers = {{"X-Borrowed", "2"}};
  const std::string expected =
      "POST /p HTTP/1.1\r\nHost: svc\r\nUser-Agent: disco-http\r\n"
      "Content-Type: application/json\r\nX-Request-Id: rid\r\nAuthorization: Bearer t\r\n"
      "X-Own: 1\r\nX-Borrowed: 2\r\nContent-Length: 2\r\n\r\n";
  EXPECT_EQ(transport.SerializeHead(clean, "svc", "/p"), expected);

  // Each way in for a line break, and the field it must take out.
  const std::vector<std::pair<std::function<void(ClientRequest&)>, std::string>> cases = {
      {[](ClientRequest& r) { r.content_type = "a\r\nX-Evil: 1"; },
       "Content-Type: application/json\r\n"},
      {[](ClientRequest& r) { r.request_id = "r\nid"; }, "X-Request-Id: rid\r\n"},
      {[](ClientRequest& r) { r.authorization = "Bearer\r"; }, "Authorization: Bearer t\r\n"},
      {[](ClientRequest& r) { r.headers[0].second = "1\r\n\r\nGET /x HTTP/1.1"; },
       "X-Own: 1\r\n"},
      {[](ClientRequest& r) { r.headers[0].first = "X-O\nwn"; }, "X-Own: 1\r\n"},
      {[](ClientRequest& r) { r.borrowed_headers[0].second = "\n2"; }, "X-Borrowed: 2\r\n"},
      {[](ClientRequest& r) { r.borrowed_headers[0].first = "X-Borrowed\r"; },
       "X-Borrowed: 2\r\n"},
  };
  for (const auto& [spoil, dropped] : cases) {
    ClientRequest request = clean;
    spoil(request);
    std::string want = expected;
    want.erase(want.find(dropped), dropped.size());
    const std::string head = transport.SerializeHead(request, "svc", "/p");
    EXPECT_EQ(head, want);
    EXPECT_EQ(head.find("Evil"), std::string::npos);
  }
  // A Host with a line break is not written either.
  EXPECT_EQ(transport.SerializeHead(clean, "svc\r\nX-Evil: 1", "/p").find("Evil"),
            std::string::npos);
}

}  // namespace
}  // namespace disco::http
