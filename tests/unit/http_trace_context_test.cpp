// W3C Trace Context: which traceparent values a server joins, and the span
// it starts (the examples and rules of https://www.w3.org/TR/trace-context/).
#include "http/connection.h"
#include "http/trace_context.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace disco::http::detail {
namespace {

constexpr std::string_view kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContextTest, AcceptsTheSpecExampleAndLaterVersions) {
  EXPECT_TRUE(IsValidTraceparent(kExample));
  EXPECT_TRUE(IsValidTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  // A later version is read as 00 and may carry more fields after a dash.
  EXPECT_TRUE(IsValidTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
  EXPECT_TRUE(
      IsValidTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future"));
}

TEST(TraceContextTest, RefusesMalformedValues) {
  const std::string bad[] = {
      "",
      "00",
      std::string(kExample.substr(0, 54)),                                  // short
      std::string(kExample) + "-",                                          // 00 must be 55 exactly
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",            // version ff
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",            // upper case
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",            // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",            // zero parent id
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",            // separator
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",            // not hex
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",            // flags
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",           // no dash after
      std::string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0", 55),
  };
  for (const auto& value : bad) EXPECT_FALSE(IsValidTraceparent(value)) << value;
}

// Every byte value at every hex position of the ids: only 0-9 and a-f pass
// (the ids are checked sixteen bytes at a time; bytes from 0x80 up must not
// pass as signed values do).
TEST(TraceContextTest, OnlyLowerHexDigitsPassAtEveryPosition) {
  const std::string valid(kExample);
  for (std::size_t at = 3; at < 52; ++at) {
    if (at == 35) continue;  // the '-' between the ids
    for (int byte = 0; byte < 256; ++byte) {
      std::string value = valid;
      value[at] = static_cast<char>(byte);
      const bool hex = (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'f');
      // A digit may still make an id all zeros; the example's ids are not.
      EXPECT_EQ(IsValidTraceparent(value), hex) << "byte " << byte << " at " << at;
    }
  }
}

// Request ids: 32 lower-case hex digits, new each time.
TEST(TraceContextTest, RequestIdsAreThirtyTwoHexDigits) {
  std::string a, b;
  NewRequestIdInto(a);
  NewRequestIdInto(b);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_NE(a, b);
}

TEST(TraceContextTest, JoinsTheCallersTraceUnderANewSpan) {
  std::string traceparent, parent;
  StartServerSpan(kExample, traceparent, parent);
  ASSERT_TRUE(IsValidTraceparent(traceparent)) << traceparent;
  EXPECT_EQ(traceparent.size(), kTraceparentSize);
  EXPECT_EQ(traceparent.substr(0, 36), "00-4bf92f3577b34da6a3ce929d0e0e4736-");
  EXPECT_NE(traceparent.substr(36, 16), "00f067aa0ba902b7");
  EXPECT_EQ(traceparent.substr(52), "-01");
  EXPECT_EQ(parent, "00f067aa0ba902b7");
  // Not sampled stays not sampled; a later version is answered as 00.
  StartServerSpan("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", traceparent, parent);
  EXPECT_EQ(traceparent.substr(52), "-00");
  StartServerSpan("02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-x", traceparent,
                  parent);
  EXPECT_EQ(traceparent.substr(0, 3), "00-");
  EXPECT_EQ(traceparent.substr(52), "-01");
}

TEST(TraceContextTest, StartsANewTraceForMissingOrInvalidValues) {
  std::set<std::string> traces, spans;
  for (std::string_view incoming :
       {std::string_view(), std::string_view("garbage"),
        std::string_view("00-00000000000000000000000000000000-00f067aa0ba902b7-01")}) {
    std::string traceparent, parent = "stale";
    StartServerSpan(incoming, traceparent, parent);
    ASSERT_TRUE(IsValidTraceparent(traceparent)) << traceparent;
    EXPECT_EQ(traceparent.substr(52), "-01");
    EXPECT_TRUE(parent.empty());
    traces.insert(traceparent.substr(3, 32));
    spans.insert(traceparent.substr(36, 16));
  }
  EXPECT_EQ(traces.size(), 3u);
  EXPECT_EQ(spans.size(), 3u);
}

}  // namespace
}  // namespace disco::http::detail
