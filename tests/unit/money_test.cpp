// Money parsing and arithmetic in integer cents (order-service).
#include "order/money.h"

#include <gtest/gtest.h>

namespace disco::order {
namespace {

TEST(MoneyTest, ParsesPlainDecimalsExactly) {
  EXPECT_EQ(*ParseCents("0"), 0);
  EXPECT_EQ(*ParseCents("12"), 1200);
  EXPECT_EQ(*ParseCents("12.3"), 1230);
  EXPECT_EQ(*ParseCents("12.30"), 1230);
  EXPECT_EQ(*ParseCents("0.01"), 1);
  EXPECT_EQ(*ParseCents("19.99"), 1999);
  EXPECT_EQ(*ParseCents("007.50"), 750);
  EXPECT_EQ(*ParseCents("999999999999.99"), 99999999999999);
}

TEST(MoneyTest, RejectsEverythingElse) {
  for (const char* bad : {"", ".5", "5.", "1.234", "-1", "+1", "1e2", "1E2", "0x10", " 1", "1 ",
                          "1,00", "1.2.3", "NaN", "inf", "1000000000000", "12.3a", "١٢"}) {
    EXPECT_FALSE(ParseCents(bad)) << "'" << bad << "'";
  }
}

TEST(MoneyTest, PriceBounds) {
  EXPECT_EQ(*ParsePrice("0.01"), 1);
  EXPECT_EQ(*ParsePrice("1000000.00"), kMaxPriceCents);
  EXPECT_FALSE(ParsePrice("0"));
  EXPECT_FALSE(ParsePrice("0.00"));
  EXPECT_FALSE(ParsePrice("1000000.01"));
  EXPECT_NE(ParsePrice("0").error().message.find("price"), std::string::npos);
}

TEST(MoneyTest, TotalsWithoutFloatingPoint) {
  // 0.1 + 0.2 style traps: 3 × 0.10 is 0.30 exactly, 10000 × 19.99 is 199900.00.
  EXPECT_EQ(*Total(*ParsePrice("0.10"), 3), 30);
  EXPECT_EQ(*Total(*ParsePrice("19.99"), 10000), 19990000);
  EXPECT_EQ(*Total(kMaxPriceCents, kMaxQuantity), 1'000'000'000'000);
  EXPECT_FALSE(Total(INT64_MAX / 2, 3));
}

TEST(MoneyTest, Formats) {
  EXPECT_EQ(FormatCents(0), "0.00");
  EXPECT_EQ(FormatCents(5), "0.05");
  EXPECT_EQ(FormatCents(1230), "12.30");
  EXPECT_EQ(FormatCents(-5), "-0.05");
  EXPECT_EQ(FormatCents(1'000'000'000'000), "10000000000.00");
  EXPECT_EQ(FormatCents(INT64_MIN), "-92233720368547758.08");
}

}  // namespace
}  // namespace disco::order
