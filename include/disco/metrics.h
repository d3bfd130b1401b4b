// Metrics: counters, gauges and histograms with labels, rendered in the
// Prometheus text exposition format (version 0.0.4).
//
// A MetricsRegistry owns families (one metric name, one help text, one fixed
// list of label names); a family hands out children, one per combination of
// label values. Children live as long as the registry and never move, so
// callers may keep references to them and skip the lookup on the hot path.
//
// Thread safety: everything may be called from any thread. Updating a child
// is a relaxed atomic operation (no lock). Looking a child up by label values
// takes a shared lock (an exclusive one only the first time a combination is
// seen). Render() takes the same locks and reads the atomics; a scrape may see
// a histogram's count and sum from slightly different moments.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace disco {

class Counter {
 public:
  void Inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(std::int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

// Observations are durations or sizes given as double in the metric's unit
// (seconds for *_seconds). Buckets are cumulative only when rendered.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  void Observe(double value);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;
  std::span<const double> bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size() is +Inf).
  std::uint64_t bucket(std::size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<std::uint64_t> count_{0};
  // The sum in nano-units, so it can be an integer atomic: exact for the
  // durations we record, and no CAS loop on the hot path.
  std::atomic<std::int64_t> sum_nanos_{0};
};

// Default latency buckets in seconds: 0.5 ms … 10 s.
std::span<const double> DefaultLatencyBuckets();

template <class T>
class Family;

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The process-wide registry that servers and clients use unless told otherwise.
  static MetricsRegistry& Default();

  // Returns the family with this name, creating it on first use. Asking again
  // with the same name returns the same family (help and labels of the first
  // call win). REQUIRES: `name` and label names match [a-zA-Z_][a-zA-Z0-9_]*.
  Family<Counter>& CounterFamily(std::string_view name, std::string_view help,
                                 std::initializer_list<std::string_view> labels = {});
  Family<Gauge>& GaugeFamily(std::string_view name, std::string_view help,
                             std::initializer_list<std::string_view> labels = {});
  Family<Histogram>& HistogramFamily(std::string_view name, std::string_view help,
                                     std::initializer_list<std::string_view> labels = {},
                                     std::span<const double> bounds = DefaultLatencyBuckets());

  // Everything, in the Prometheus text format, families sorted by name and
  // children by label values.
  std::string Render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

namespace detail {
class FamilyBase;
}

// A metric name and its children. REQUIRES: With() gets exactly as many
// values as the family has label names.
template <class T>
class Family {
 public:
  T& With(std::initializer_list<std::string_view> values) {
    return *static_cast<T*>(
        Child(std::span<const std::string_view>(values.begin(), values.size())));
  }
  T& With(std::span<const std::string_view> values) { return *static_cast<T*>(Child(values)); }

 private:
  friend class MetricsRegistry;
  explicit Family(detail::FamilyBase* base) : base_(base) {}
  void* Child(std::span<const std::string_view> values);
  detail::FamilyBase* base_;
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Escapes a label value for the text format (backslash, quote, newline).
std::string EscapeLabelValue(std::string_view value);

}  // namespace disco
