// weighted_round_robin: smooth weighted round robin, the sequence nginx
// produces, from a schedule computed once per snapshot.
//
// nginx's algorithm (ngx_http_upstream_get_peer): every endpoint has a
// `current` score; on each pick every score grows by the endpoint's weight,
// the highest score wins (the first one on ties) and the winner's score drops
// by the total weight. Weights {5, 1, 1} give a a b a c a a: heavy endpoints
// are spread out instead of picked in bursts. Doing that on the pick path
// needs a lock (or a CAS loop over n scores) per pick, so Build instead
// records one period of the sequence and Pick walks it with a cursor of the
// CPU it runs on (balance/cursor.h): lock-free, allocation-free, O(1), and
// no write to a line another core writes. Each CPU's picks follow the
// sequence exactly; the process's picks are its proportions to within one
// pick per endpoint per CPU. Through a Resolver each thread walks a position
// of its own (PickContext::thread_position): no locked instruction at all,
// and within one pick per endpoint per thread.
//
// The schedule, for weights w_i divided by their gcd (the sequence does not
// change when all weights are scaled), is P = sum(w_i) picks long and repeats
// exactly. Simulating nginx costs O(n × P); when that exceeds 2^24 steps (or
// P exceeds 2^20 entries) Build uses an earliest-deadline-first schedule
// instead, as gRPC's static stride scheduler does: endpoint i's k-th pick is
// due at (k + 1/2) / w_i, ties to the lower index, built with a heap in
// O(P log n). It has the same proportions, is just as smooth (for {5,1,1} it
// gives a a a b c a a), only not always nginx's exact order. If P is above
// 2^20 the weights are first scaled down to fit (each stays >= 1), so memory
// stays bounded at about 4 MiB; proportions are then kept to within one pick
// per endpoint per period. Equal weights are plain round robin, 0, 1, ..., n-1,
// by either method; Build takes a shortcut for them.
//
// Ejected endpoints: an ejected schedule entry (or, for a retry, one of an
// instance it tried) is consumed and the next one taken (up to kMaxSkips), so the healthy endpoints
// keep their relative weights; then a scan from a random start finds any healthy endpoint.
//
// Thread safety: Build runs on the control plane; the picker's schedule is
// immutable and its cursors relaxed atomics, so Pick runs on any thread.
#include "balance/weighted_round_robin.h"

#include <algorithm>
#include <numeric>
#include <queue>

#include "balance/cursor.h"
#include "balance/ejection.h"
#include "balance/policies.h"
#include "util/fast_random.h"

namespace disco::balance {
namespace {

constexpr int kMaxSkips = 16;

std::vector<std::uint32_t> NginxSchedule(std::span<const std::uint64_t> weights,
                                         std::uint64_t period) {
  std::vector<std::int64_t> current(weights.size(), 0);
  std::vector<std::uint32_t> schedule;
  schedule.reserve(period);
  const auto total = static_cast<std::int64_t>(period);
  for (std::uint64_t step = 0; step < period; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      current[i] += static_cast<std::int64_t>(weights[i]);
      if (current[i] > current[best]) best = i;
    }
    current[best] -= total;
    schedule.push_back(static_cast<std::uint32_t>(best));
  }
  return schedule;
}

// Deadlines (2k + 1) / (2 w) are compared by cross-multiplication, exactly.
// Here every w <= kMaxScheduleLength and k < w, so products stay below 2^42.
std::vector<std::uint32_t> EdfSchedule(std::span<const std::uint64_t> weights,
                                       std::uint64_t period) {
  struct Entry {
    std::uint64_t numerator;  // 2k + 1, k = picks so far
    std::uint64_t weight;
    std::uint32_t index;
  };
  auto later = [](const Entry& a, const Entry& b) {
    const std::uint64_t lhs = a.numerator * b.weight;
    const std::uint64_t rhs = b.numerator * a.weight;
    return lhs != rhs ? lhs > rhs : a.index > b.index;
  };
  std::vector<Entry> entries;
  entries.reserve(weights.size());
  for (std::size_t i = 0; i < weights.size(); ++i) {
    entries.push_back(Entry{1, weights[i], static_cast<std::uint32_t>(i)});
  }
  std::priority_queue heap(later, std::move(entries));
  std::vector<std::uint32_t> schedule;
  schedule.reserve(period);
  for (std::uint64_t step = 0; step < period; ++step) {
    Entry next = heap.top();
    heap.pop();
    schedule.push_back(next.index);
    next.numerator += 2;
    heap.push(next);
  }
  return schedule;
}

}  // namespace

std::vector<std::uint32_t> BuildWeightedSchedule(std::span<const std::uint32_t> raw_weights) {
  const std::size_t n = raw_weights.size();
  if (n == 0) return {};
  std::vector<std::uint64_t> weights(n);
  std::uint64_t divisor = 0;
  for (std::size_t i = 0; i < n; ++i) {
    weights[i] = std::max<std::uint64_t>(raw_weights[i], 1);
    divisor = std::gcd(divisor, weights[i]);
  }
  if (divisor == weights[0] && std::ranges::all_of(weights, [&](auto w) { return w == divisor; })) {
    std::vector<std::uint32_t> schedule(n);
    std::iota(schedule.begin(), schedule.end(), 0u);
    return schedule;
  }
  std::uint64_t period = 0;
  for (auto& w : weights) period += (w /= divisor);

  if (period <= kMaxScheduleLength && n * period <= kMaxExactScheduleWork) {
    return NginxSchedule(weights, period);
  }
  if (period > kMaxScheduleLength) {
    std::uint64_t scaled_period = 0;
    std::uint64_t scaled_divisor = 0;
    for (auto& w : weights) {
      // w * 2^20 < 2^52 for 32-bit weights: no overflow.
      w = std::max<std::uint64_t>(w * kMaxScheduleLength / period, 1);
      scaled_divisor = std::gcd(scaled_divisor, w);
    }
    for (auto& w : weights) scaled_period += (w /= scaled_divisor);
    period = scaled_period;
  }
  return EdfSchedule(weights, period);
}

namespace {

class WeightedRoundRobinPicker final : public Picker {
 public:
  explicit WeightedRoundRobinPicker(SnapshotConstPtr snapshot)
      : snapshot_(std::move(snapshot)),
        endpoints_(snapshot_->endpoints),
        size_(static_cast<std::uint32_t>(endpoints_.size())),
        schedule_(MakeSchedule(endpoints_)),
        period_(schedule_.size()) {
    SpreadCursors(cursors_, period_);
  }

  const Endpoint* Pick(const PickContext& context) override {
    if (period_ == 0) return nullptr;
    for (int skip = 0; skip < kMaxSkips; ++skip) {
      const std::uint32_t at = NextPosition(cursors_, period_, context, this);
      const Endpoint& endpoint = endpoints_[schedule_[at]];
      if (!Avoided(endpoint, context)) return &endpoint;
    }
    return FirstUsableFrom(endpoints_, FastRandomBelow(size_), context);
  }

 private:
  static std::vector<std::uint32_t> MakeSchedule(const std::vector<Endpoint>& endpoints) {
    std::vector<std::uint32_t> weights;
    weights.reserve(endpoints.size());
    for (const auto& endpoint : endpoints) weights.push_back(endpoint.instance.weight);
    return BuildWeightedSchedule(weights);
  }

  SnapshotConstPtr snapshot_;
  const std::vector<Endpoint>& endpoints_;  // owned by snapshot_
  std::uint32_t size_;
  std::vector<std::uint32_t> schedule_;
  std::uint64_t period_;
  PerCpu<Cursor> cursors_;
};

class WeightedRoundRobin final : public Balancer {
 public:
  std::string_view name() const override { return "weighted_round_robin"; }
  std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) override {
    return std::make_unique<WeightedRoundRobinPicker>(std::move(snapshot));
  }
};

}  // namespace

std::unique_ptr<Balancer> MakeWeightedRoundRobin() {
  return std::make_unique<WeightedRoundRobin>();
}

}  // namespace disco::balance
