// Metrics: counters, gauges and histograms with labels, rendered in the
// Prometheus text exposition format (version 0.0.4).
//
// A MetricsRegistry owns families (one metric name, one help text, one fixed
// list of label names); a family hands out children, one per combination of
// label values. Children live as long as the registry and never move, so
// callers may keep references to them and skip the lookup on the hot path.
//
// Values kept elsewhere (an endpoint's pick counter, a resolver's staleness)
// are exposed through collectors: callbacks that produce samples when the
// registry is rendered, so nothing is copied on the hot path and samples of
// things that are gone (a departed instance) disappear.
//
// Thread safety: everything may be called from any thread. Updating a child
// writes the calling thread's or CPU's copy (no lock). Looking a child up by label
// values takes a shared lock (an exclusive one only the first time a combination is seen). Render()
// takes the same locks and reads the atomics; a scrape may see a histogram's count and sum from
// slightly different moments.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "disco/per_cpu.h"
#include "disco/thread_counters.h"

namespace disco {

// Counters and gauges keep per-thread copies (disco/thread_counters.h),
// histograms per-CPU ones (disco/per_cpu.h): every request a server answers
// or a client sends bumps several of them, and one atomic each would be a
// cache line every core writes (the gateway's second thread paid for ~15 of
// those per request). A counter update is a plain load and store of the
// thread's copy, a histogram's a relaxed fetch_add on the CPU's; reads sum
// the copies.
class Counter {
 public:
  void Inc(std::uint64_t n = 1) { counts_.Add(0, n); }
  std::uint64_t value() const { return counts_.Load(0); }

 private:
  ThreadCounters counts_;
};

// Add() goes to per-thread deltas; Set() stores a base such that the value is
// what was set (a Set racing with Adds on other threads may lose or keep
// their effect: use one or the other on a gauge).
class Gauge {
 public:
  void Set(std::int64_t v) { base_.store(v - Deltas(), std::memory_order_relaxed); }
  void Add(std::int64_t n) { deltas_.Add(0, static_cast<std::uint64_t>(n)); }
  std::int64_t value() const { return base_.load(std::memory_order_relaxed) + Deltas(); }

 private:
  // Two's complement: the per-thread sums wrap, their total is exact.
  std::int64_t Deltas() const { return static_cast<std::int64_t>(deltas_.Load(0)); }

  std::atomic<std::int64_t> base_{0};
  ThreadCounters deltas_;
};

// Observations are durations or sizes given as double in the metric's unit
// (seconds for *_seconds). Buckets are cumulative only when rendered.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  void Observe(double value);
  std::uint64_t count() const;
  double sum() const;
  std::span<const double> bounds() const { return bounds_; }
  // Non-cumulative count of bucket i (i == bounds().size() is +Inf).
  std::uint64_t bucket(std::size_t i) const;

 private:
  // One CPU's bucket counts, then its sum in nano-units (an integer, so it
  // can be a fetch_add: exact for the durations we record, no CAS loop),
  // on cache lines of its own.
  struct alignas(64) Line {
    std::atomic<std::uint64_t> cells[8];
  };
  struct Shard {
    std::unique_ptr<Line[]> lines;
    std::atomic<std::uint64_t>& cell(std::size_t i) const { return lines[i / 8].cells[i % 8]; }
  };
  std::uint64_t SumOf(std::size_t cell) const;

  std::vector<double> bounds_;
  PerCpu<Shard> shards_;
};

// Default latency buckets in seconds: 0.5 ms … 10 s.
std::span<const double> DefaultLatencyBuckets();

template <class T>
class Family;

// One sample produced by a collector: label values in the order of the
// collector's label names, and the value.
struct CollectedSample {
  std::vector<std::string> labels{};
  double value = 0;
};

enum class CollectedType { kCounter, kGauge };

// Removes its collector when destroyed; no callback of it runs afterwards.
class CollectorHandle {
 public:
  virtual ~CollectorHandle() = default;
};

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

  // Adds a collector: `collect` appends samples each time the registry is
  // rendered. Several collectors may share a name (say, one per resolver):
  // they are rendered as one metric (type, help and labels of the first);
  // samples with equal labels are added up for counters and the largest is
  // kept for gauges. `collect` runs under the registry's lock: it must be
  // quick and must not call into this registry.
  // REQUIRES: no family has this name; names as for families.
  [[nodiscard]] std::unique_ptr<CollectorHandle> AddCollector(
      std::string_view name, std::string_view help, CollectedType type,
      std::initializer_list<std::string_view> labels,
      std::function<void(std::vector<CollectedSample>&)> collect);

  // Everything, in the Prometheus text format, metrics sorted by name and
  // samples by label values.
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
