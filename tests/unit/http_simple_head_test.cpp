// The strict fast message parser (src/http/simple_head.h): what it takes,
// what it leaves to Beast, and a differential test against Beast over
// mutated answers and requests: whenever it says kDone, Beast must read the
// same.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "fixture/http_differential.h"
#include "http/simple_head.h"

namespace disco::http::detail {
namespace {

constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kBodyLimit = 1024 * 1024;

SimpleParse Parse(std::string_view text, SimpleMessage& out) {
  return ParseSimpleResponse(text, kHeaderLimit, kBodyLimit, out);
}
SimpleParse ParseRequest(std::string_view text, SimpleMessage& out) {
  return ParseSimpleRequest(text, kHeaderLimit, kBodyLimit, out);
}

// When the fast parser takes `text`, Beast must read the same message from it
// (fixture/http_differential.h, shared with the differential fuzz target).
template <bool kIsRequest>
void ExpectAgreesWithBeast(const std::string& text) {
  EXPECT_EQ(DisagreementWithBeast<kIsRequest>(text, kHeaderLimit, kBodyLimit), "")
      << testing::PrintToString(text);
}
void ExpectAgreesWithBeast(const std::string& text) { ExpectAgreesWithBeast<false>(text); }

// Random byte mutations of valid messages: every one the fast parser
// takes, Beast reads identically. Returns how many it took. A fixed seed
// keeps failures reproducible.
template <bool kIsRequest>
int MutateAndCompare(const std::vector<std::string>& seeds) {
  // Bytes that matter to HTTP syntax, a few ordinary ones, and (the
  // literal's terminator, kept by sizeof) NUL.
  static constexpr char kAlphabet[] = "\r\n \t:,;/?#%0123456789aAzZ-_\x7f\x80\xff";
  const std::string alphabet(kAlphabet, sizeof kAlphabet);
  std::mt19937 random(20261125);
  int taken = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string text = seeds[random() % seeds.size()];
    const int edits = 1 + static_cast<int>(random() % 3);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = random() % text.size();
      const char c = alphabet[random() % alphabet.size()];
      switch (random() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
          break;
      }
    }
    SimpleMessage out;
    if ((kIsRequest ? ParseRequest(text, out) : Parse(text, out)) == SimpleParse::kDone) ++taken;
    ExpectAgreesWithBeast<kIsRequest>(text);
    if (testing::Test::HasFailure()) return taken;
  }
  return taken;
}

const std::string kTypical =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "X-Request-Id: 0123456789abcdef0123456789abcdef\r\n"
    "X-Served-By: user-service-1\r\n"
    "Content-Length: 15\r\n"
    "\r\n"
    "{\"status\":\"ok\"}";

TEST(SimpleHeadTest, TakesATypicalAnswer) {
  SimpleMessage out;
  ASSERT_EQ(Parse(kTypical, out), SimpleParse::kDone);
  EXPECT_EQ(out.status, 200);
  ASSERT_EQ(out.field_count, 4u);
  EXPECT_EQ(out.fields[0].name, "Content-Type");
  EXPECT_EQ(out.fields[0].value, "application/json");
  EXPECT_EQ(out.fields[2].name, "X-Served-By");
  EXPECT_EQ(out.fields[2].value, "user-service-1");
  EXPECT_EQ(out.body, "{\"status\":\"ok\"}");
  EXPECT_TRUE(out.keep_alive);
  EXPECT_EQ(out.size, kTypical.size());
  ExpectAgreesWithBeast(kTypical);
}

TEST(SimpleHeadTest, LeavesWhatFollowsTheMessage) {
  SimpleMessage out;
  ASSERT_EQ(Parse(kTypical + "HTTP/1.1 200 OK\r\n", out), SimpleParse::kDone);
  EXPECT_EQ(out.size, kTypical.size());
}

TEST(SimpleHeadTest, TrimsValuesAndReadsConnectionClose) {
  const std::string text =
      "HTTP/1.1 503 Service Unavailable\r\nX-A: \t padded \t\r\nConnection: keep-alive, close\r\n"
      "Empty:\r\nContent-Length: 0\r\n\r\n";
  SimpleMessage out;
  ASSERT_EQ(Parse(text, out), SimpleParse::kDone);
  EXPECT_EQ(out.status, 503);
  EXPECT_EQ(out.fields[0].value, "padded");
  EXPECT_EQ(out.fields[2].value, "");
  EXPECT_FALSE(out.keep_alive);
  EXPECT_TRUE(out.body.empty());
  ExpectAgreesWithBeast(text);
}

// Every shape outside the common subset is Beast's to parse (and, when it
// is wrong, to reject).
TEST(SimpleHeadTest, DefersEverythingUnusual) {
  const std::vector<std::string> unusual = {
      "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",                    // 1.0 keep-alive rules
      "HTTP/1.1 100 Continue\r\n\r\n",                                   // interim
      "HTTP/1.1 204 No Content\r\n\r\n",                                 // no body by status
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",         // length of another body
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  // chunked
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil EOF",    // no length
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",  // repeated length
      "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",                      // not digits
      "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\nx",
      "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",  // obs-fold
      "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",                    // bare LF
      "HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n",                 // bare CR
      std::string("HTTP/1.1 200 OK\r\nX-A: \0\r\nContent-Length: 0\r\n\r\n", 45),  // NUL
      "HTTP/1.1 200 OK\r\nX-A: \x7f\r\nContent-Length: 0\r\n\r\n",                 // DEL
      "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n",                    // not a token
      "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",  // body not all here yet
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",            // head not all here yet
      "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",  // over the body limit
  };
  for (const auto& text : unusual) {
    SimpleMessage out;
    EXPECT_EQ(Parse(text, out), SimpleParse::kDefer) << testing::PrintToString(text);
  }
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (std::size_t i = 0; i <= SimpleMessage::kMaxFields; ++i) many += "X-F: v\r\n";
  many += "Content-Length: 0\r\n\r\n";
  SimpleMessage out;
  EXPECT_EQ(Parse(many, out), SimpleParse::kDefer);
  std::string long_head = "HTTP/1.1 200 OK\r\nX-Long: " + std::string(kHeaderLimit, 'a') +
                          "\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(Parse(long_head, out), SimpleParse::kDefer);
}

TEST(SimpleHeadTest, AgreesWithBeastOnMutatedAnswers) {
  const int taken = MutateAndCompare<false>({
      kTypical,
      "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
      "HTTP/1.1 200 OK\r\nX-A:b\r\nX-B: \t c d \t\r\nContent-Length: 3\r\n\r\nabc",
      "HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
  });
  // The mutations must leave plenty of messages the fast parser takes, or
  // the comparison proves nothing.
  EXPECT_GT(taken, 20000);
}

TEST(SimpleHeadTest, TakesATypicalRequest) {
  const std::string text =
      "POST /api/orders?x=1 HTTP/1.1\r\nHost: gw:8080\r\nContent-Type: application/json\r\n"
      "Idempotency-Key: k1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.1\r\n";
  SimpleMessage out;
  ASSERT_EQ(ParseRequest(text, out), SimpleParse::kDone);
  EXPECT_EQ(out.method, "POST");
  EXPECT_EQ(out.target, "/api/orders?x=1");
  ASSERT_EQ(out.field_count, 4u);
  EXPECT_EQ(out.fields[2].value, "k1");
  EXPECT_EQ(out.body, "{}");
  EXPECT_TRUE(out.keep_alive);
  EXPECT_EQ(out.size, text.size() - std::string("GET / HTTP/1.1\r\n").size());
  ExpectAgreesWithBeast<true>(text);
  // No Content-Length: no body.
  ASSERT_EQ(ParseRequest("GET /health HTTP/1.1\r\nHost: a\r\n\r\n", out), SimpleParse::kDone);
  EXPECT_TRUE(out.body.empty());
}

TEST(SimpleHeadTest, DefersUnusualRequests) {
  const std::vector<std::string> unusual = {
      "GET / HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
      "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
      "GET  / HTTP/1.1\r\n\r\n",
      "GET / x HTTP/1.1\r\n\r\n",
      "GET /\x80 HTTP/1.1\r\n\r\n",
      "G(T / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
      "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",              // no Host: the server's 400
      "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",  // two Hosts: likewise
  };
  for (const auto& text : unusual) {
    SimpleMessage out;
    EXPECT_EQ(ParseRequest(text, out), SimpleParse::kDefer) << testing::PrintToString(text);
  }
}

TEST(SimpleHeadTest, AgreesWithBeastOnMutatedRequests) {
  const int taken = MutateAndCompare<true>({
      "GET /up/health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
      "POST /api/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer a.b.c\r\n"
      "Content-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\":12}",
      "DELETE /x?y=%20z HTTP/1.1\r\nConnection: close\r\nX-Request-Id: abc-1\r\nHost: h\r\n\r\n",
  });
  EXPECT_GT(taken, 20000);
}

}  // namespace
}  // namespace disco::http::detail
