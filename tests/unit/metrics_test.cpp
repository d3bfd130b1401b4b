// The metrics registry and its Prometheus text rendering.
#include "disco/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace disco {
namespace {

TEST(MetricsTest, RendersCountersGaugesAndHistogramsInTextFormat) {
  MetricsRegistry registry;
  auto& requests =
      registry.CounterFamily("http_requests_total", "Requests answered", {"route", "status"});
  requests.With({"/api/users/{id}", "200"}).Inc(3);
  requests.With({"/api/users/{id}", "404"}).Inc();
  registry.GaugeFamily("open_connections", "Open connections").With({}).Set(7);
  const double bounds[] = {0.1, 1};
  auto& latency = registry.HistogramFamily("latency_seconds", "Latency", {"route"}, bounds);
  latency.With({"/x"}).Observe(0.05);
  latency.With({"/x"}).Observe(0.5);
  latency.With({"/x"}).Observe(5);

  std::string text = registry.Render();
  EXPECT_NE(
      text.find(
          "# HELP http_requests_total Requests answered\n# TYPE http_requests_total counter\n"),
      std::string::npos);
  EXPECT_NE(text.find("http_requests_total{route=\"/api/users/{id}\",status=\"200\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("http_requests_total{route=\"/api/users/{id}\",status=\"404\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE open_connections gauge\nopen_connections 7\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_sum{route=\"/x\"} 5.55\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_count{route=\"/x\"} 3\n"), std::string::npos);
  // Families in name order.
  EXPECT_LT(text.find("http_requests_total"), text.find("latency_seconds"));
  EXPECT_LT(text.find("latency_seconds"), text.find("open_connections"));
}

TEST(MetricsTest, EscapesLabelValues) {
  MetricsRegistry registry;
  registry.CounterFamily("c", "help with \\ and\nnewline", {"l"}).With({"a\"b\\c\nd"}).Inc();
  std::string text = registry.Render();
  EXPECT_NE(text.find("c{l=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP c help with \\\\ and\\nnewline\n"), std::string::npos) << text;
}

TEST(MetricsTest, SameNameReturnsSameFamilyAndChildrenAreStable) {
  MetricsRegistry registry;
  auto& a = registry.CounterFamily("x_total", "x", {"k"});
  auto& b = registry.CounterFamily("x_total", "ignored", {"k"});
  EXPECT_EQ(&a, &b);
  Counter* first = &a.With({"v"});
  for (int i = 0; i < 100; ++i) a.With({std::to_string(i)});
  EXPECT_EQ(first, &a.With({"v"})) << "children never move";
}

TEST(MetricsTest, CountsExactlyUnderConcurrency) {
  MetricsRegistry registry;
  auto& family = registry.CounterFamily("n_total", "n", {"t"});
  auto& histogram = registry.HistogramFamily("h_seconds", "h", {});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        family.With({std::to_string(i % 3)}).Inc();
        histogram.With({}).Observe(0.001 * (t + 1));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t total = 0;
  for (int i = 0; i < 3; ++i) total += family.With({std::to_string(i)}).value();
  EXPECT_EQ(total, 40000u);
  EXPECT_EQ(histogram.With({}).count(), 40000u);
  EXPECT_NEAR(histogram.With({}).sum(), 10000 * 0.001 * (1 + 2 + 3 + 4), 1e-6);
}

// Per-CPU copies sum exactly: a gauge moved up and down from several
// threads ends where the adds say; Set then Add on one thread is exact; a
// negative observation (a size delta, say) is summed as one.
TEST(MetricsTest, GaugesAndHistogramSumsStayExactWithPerCpuCopies) {
  MetricsRegistry registry;
  auto& gauge = registry.GaugeFamily("g", "g", {}).With({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        gauge.Add(1);
        gauge.Add(-1);
      }
      gauge.Add(2);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(gauge.value(), 8);
  gauge.Set(-5);
  EXPECT_EQ(gauge.value(), -5);
  gauge.Add(3);
  EXPECT_EQ(gauge.value(), -2);

  auto& histogram = registry.HistogramFamily("h", "h", {}, std::vector<double>{1.0}).With({});
  histogram.Observe(-0.25);
  histogram.Observe(2.0);
  EXPECT_EQ(histogram.count(), 2u);
  EXPECT_EQ(histogram.bucket(0), 1u);
  EXPECT_EQ(histogram.bucket(1), 1u);
  EXPECT_NEAR(histogram.sum(), 1.75, 1e-9);
}

}  // namespace
}  // namespace disco
