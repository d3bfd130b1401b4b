#include "disco/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>

namespace disco {
namespace {

constexpr double kNanos = 1e9;
constexpr double kLatencyBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};

// Prometheus wants Go-style floats: shortest round-trip text, "+Inf" for infinity.
void AppendDouble(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, ec == std::errc() ? end : buf);
}

void AppendUint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void AppendInt(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::span<const double> DefaultLatencyBuckets() { return kLatencyBuckets; }

Histogram::Histogram(std::span<const double> bounds) : bounds_(bounds.begin(), bounds.end()) {
  std::sort(bounds_.begin(), bounds_.end());
  const std::size_t cells = bounds_.size() + 2;  // buckets, +Inf, sum
  for (std::uint32_t cpu = 0; cpu < shards_.size(); ++cpu)
    shards_[cpu].lines = std::make_unique<Line[]>((cells + 7) / 8);
}

void Histogram::Observe(double value) {
  // Few buckets: a linear scan beats a binary search on branch prediction.
  std::size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  const Shard& shard = shards_.Local();
  shard.cell(i).fetch_add(1, std::memory_order_relaxed);
  // Two's complement: a negative observation wraps, the total stays exact.
  shard.cell(bounds_.size() + 1)
      .fetch_add(static_cast<std::uint64_t>(std::llround(value * kNanos)),
                 std::memory_order_relaxed);
}

std::uint64_t Histogram::SumOf(std::size_t cell) const {
  std::uint64_t total = 0;
  for (std::uint32_t cpu = 0; cpu < shards_.size(); ++cpu)
    total += shards_[cpu].cell(cell).load(std::memory_order_relaxed);
  return total;
}

std::uint64_t Histogram::bucket(std::size_t i) const { return SumOf(i); }

std::uint64_t Histogram::count() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) total += SumOf(i);
  return total;
}

double Histogram::sum() const {
  return static_cast<double>(static_cast<std::int64_t>(SumOf(bounds_.size() + 1))) / kNanos;
}

namespace detail {

enum class Kind { kCounter, kGauge, kHistogram };

class FamilyBase {
 public:
  FamilyBase(Kind kind, std::string name, std::string help, std::vector<std::string> labels,
             std::vector<double> bounds)
      : kind_(kind),
        name_(std::move(name)),
        help_(std::move(help)),
        labels_(std::move(labels)),
        bounds_(std::move(bounds)) {}

  void* Child(std::span<const std::string_view> values) {
    // Label values joined with a separator that cannot appear in rendered
    // output unescaped; the key orders children for rendering.
    std::string key;
    for (auto v : values) {
      key.append(v);
      key.push_back('\x1f');
    }
    {
      std::shared_lock lock(mu_);
      if (auto it = children_.find(key); it != children_.end()) return it->second.get();
    }
    std::unique_lock lock(mu_);
    auto& slot = children_[key];
    if (!slot) {
      slot = NewChild();
      values_[key].assign(values.begin(), values.end());
    }
    return slot.get();
  }

  void Render(std::string& out) const {
    out += "# HELP ";
    out += name_;
    out += ' ';
    out += EscapeHelp(help_);
    out += "\n# TYPE ";
    out += name_;
    out += kind_ == Kind::kCounter ? " counter\n"
           : kind_ == Kind::kGauge ? " gauge\n"
                                   : " histogram\n";
    std::shared_lock lock(mu_);
    for (const auto& [key, child] : children_) {
      std::string labels = LabelText(values_.at(key));
      switch (kind_) {
        case Kind::kCounter:
          Sample(out, name_, labels, {});
          AppendUint(out, static_cast<Counter*>(child.get())->value());
          out += '\n';
          break;
        case Kind::kGauge:
          Sample(out, name_, labels, {});
          AppendInt(out, static_cast<Gauge*>(child.get())->value());
          out += '\n';
          break;
        case Kind::kHistogram: {
          auto* h = static_cast<Histogram*>(child.get());
          std::uint64_t cumulative = 0;
          auto bounds = h->bounds();
          for (std::size_t i = 0; i <= bounds.size(); ++i) {
            cumulative += h->bucket(i);
            std::string le;
            if (i < bounds.size())
              AppendDouble(le, bounds[i]);
            else
              le = "+Inf";
            Sample(out, name_ + "_bucket", labels, le);
            AppendUint(out, cumulative);
            out += '\n';
          }
          Sample(out, name_ + "_sum", labels, {});
          AppendDouble(out, h->sum());
          out += '\n';
          Sample(out, name_ + "_count", labels, {});
          // The buckets were read one by one; report their total as the count
          // so a scrape is internally consistent (+Inf bucket == count).
          AppendUint(out, cumulative);
          out += '\n';
          break;
        }
      }
    }
  }

  const std::string& name() const { return name_; }

 private:
  // Type-erased owner: the family's kind says what it points to.
  using Holder = std::shared_ptr<void>;

  Holder NewChild() const {
    switch (kind_) {
      case Kind::kCounter:
        return std::make_shared<Counter>();
      case Kind::kGauge:
        return std::make_shared<Gauge>();
      case Kind::kHistogram:
        return std::make_shared<Histogram>(bounds_);
    }
    return nullptr;
  }

  std::string LabelText(const std::vector<std::string>& values) const {
    std::string out;
    for (std::size_t i = 0; i < labels_.size() && i < values.size(); ++i) {
      if (!out.empty()) out += ',';
      out += labels_[i];
      out += "=\"";
      out += EscapeLabelValue(values[i]);
      out += '"';
    }
    return out;
  }

  static void Sample(std::string& out, const std::string& name, const std::string& labels,
                     const std::string& le) {
    out += name;
    if (!labels.empty() || !le.empty()) {
      out += '{';
      out += labels;
      if (!le.empty()) {
        if (!labels.empty()) out += ',';
        out += "le=\"";
        out += le;
        out += '"';
      }
      out += '}';
    }
    out += ' ';
  }

  const Kind kind_;
  const std::string name_;
  const std::string help_;
  const std::vector<std::string> labels_;
  const std::vector<double> bounds_;
  mutable std::shared_mutex mu_;
  std::map<std::string, Holder> children_;
  std::map<std::string, std::vector<std::string>> values_;
};

}  // namespace detail

template <class T>
void* Family<T>::Child(std::span<const std::string_view> values) {
  return base_->Child(values);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct MetricsRegistry::Impl {
  struct CollectorGroup {
    std::string help;
    CollectedType type;
    std::vector<std::string> labels;
    std::map<std::uint64_t, std::function<void(std::vector<CollectedSample>&)>> callbacks;
  };
  std::map<std::string, CollectorGroup, std::less<>> collectors;  // guarded by mu
  std::uint64_t next_collector = 0;

  void RenderCollected(std::string& out, const std::string& name,
                       const CollectorGroup& group) const {
    std::vector<CollectedSample> samples;
    for (const auto& [id, collect] : group.callbacks) collect(samples);
    // Merge equal label sets (several resolvers of one service), then order.
    std::map<std::vector<std::string>, double> merged;
    for (auto& sample : samples) {
      auto [it, fresh] = merged.emplace(std::move(sample.labels), sample.value);
      if (!fresh) {
        it->second = group.type == CollectedType::kCounter ? it->second + sample.value
                                                           : std::max(it->second, sample.value);
      }
    }
    out += "# HELP ";
    out += name;
    out += ' ';
    out += EscapeHelp(group.help);
    out += "\n# TYPE ";
    out += name;
    out += group.type == CollectedType::kCounter ? " counter\n" : " gauge\n";
    for (const auto& [values, value] : merged) {
      out += name;
      if (!group.labels.empty()) {
        out += '{';
        for (std::size_t i = 0; i < group.labels.size() && i < values.size(); ++i) {
          if (i) out += ',';
          out += group.labels[i];
          out += "=\"";
          out += EscapeLabelValue(values[i]);
          out += '"';
        }
        out += '}';
      }
      out += ' ';
      AppendDouble(out, value);
      out += '\n';
    }
  }

  struct Entry {
    std::unique_ptr<detail::FamilyBase> base;
    void* family;  // Family<T>*, typed by `kind`
    detail::Kind kind;
  };
  mutable std::mutex mu;
  std::map<std::string, Entry, std::less<>> families;

  template <class T>
  Family<T>& Get(detail::Kind kind, std::string_view name, std::string_view help,
                 std::initializer_list<std::string_view> labels, std::span<const double> bounds) {
    std::lock_guard lock(mu);
    auto it = families.find(name);
    if (it == families.end()) {
      auto base = std::make_unique<detail::FamilyBase>(
          kind, std::string(name), std::string(help),
          std::vector<std::string>(labels.begin(), labels.end()),
          std::vector<double>(bounds.begin(), bounds.end()));
      auto* family = new Family<T>(base.get());
      it = families.emplace(std::string(name), Entry{std::move(base), family, kind}).first;
    }
    return *static_cast<Family<T>*>(it->second.family);
  }
};

MetricsRegistry::MetricsRegistry() : impl_(std::make_unique<Impl>()) {}

MetricsRegistry::~MetricsRegistry() {
  for (auto& [name, entry] : impl_->families) {
    switch (entry.kind) {
      case detail::Kind::kCounter:
        delete static_cast<Family<Counter>*>(entry.family);
        break;
      case detail::Kind::kGauge:
        delete static_cast<Family<Gauge>*>(entry.family);
        break;
      case detail::Kind::kHistogram:
        delete static_cast<Family<Histogram>*>(entry.family);
        break;
    }
  }
}

MetricsRegistry& MetricsRegistry::Default() {
  static auto* registry = new MetricsRegistry();  // never destroyed: used until exit
  return *registry;
}

Family<Counter>& MetricsRegistry::CounterFamily(std::string_view name, std::string_view help,
                                                std::initializer_list<std::string_view> labels) {
  return impl_->Get<Counter>(detail::Kind::kCounter, name, help, labels, {});
}

Family<Gauge>& MetricsRegistry::GaugeFamily(std::string_view name, std::string_view help,
                                            std::initializer_list<std::string_view> labels) {
  return impl_->Get<Gauge>(detail::Kind::kGauge, name, help, labels, {});
}

Family<Histogram>& MetricsRegistry::HistogramFamily(std::string_view name, std::string_view help,
                                                    std::initializer_list<std::string_view> labels,
                                                    std::span<const double> bounds) {
  return impl_->Get<Histogram>(detail::Kind::kHistogram, name, help, labels, bounds);
}

namespace {

class CollectorHandleImpl final : public CollectorHandle {
 public:
  CollectorHandleImpl(std::function<void()> remove) : remove_(std::move(remove)) {}
  ~CollectorHandleImpl() override { remove_(); }

 private:
  std::function<void()> remove_;
};

}  // namespace

std::unique_ptr<CollectorHandle> MetricsRegistry::AddCollector(
    std::string_view name, std::string_view help, CollectedType type,
    std::initializer_list<std::string_view> labels,
    std::function<void(std::vector<CollectedSample>&)> collect) {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->collectors.find(name);
  if (it == impl_->collectors.end()) {
    Impl::CollectorGroup group{
        std::string(help), type, std::vector<std::string>(labels.begin(), labels.end()), {}};
    it = impl_->collectors.emplace(std::string(name), std::move(group)).first;
  }
  std::uint64_t id = ++impl_->next_collector;
  it->second.callbacks.emplace(id, std::move(collect));
  Impl* impl = impl_.get();
  std::string key(name);
  return std::make_unique<CollectorHandleImpl>([impl, key, id] {
    std::lock_guard lock(impl->mu);
    auto found = impl->collectors.find(key);
    if (found == impl->collectors.end()) return;
    found->second.callbacks.erase(id);
    if (found->second.callbacks.empty()) impl->collectors.erase(found);
  });
}

std::string MetricsRegistry::Render() const {
  std::string out;
  std::lock_guard lock(impl_->mu);
  // Families and collectors, merged in name order.
  auto family = impl_->families.begin();
  auto collector = impl_->collectors.begin();
  while (family != impl_->families.end() || collector != impl_->collectors.end()) {
    bool take_family = collector == impl_->collectors.end() ||
                       (family != impl_->families.end() && family->first < collector->first);
    if (take_family) {
      family->second.base->Render(out);
      ++family;
    } else {
      impl_->RenderCollected(out, collector->first, collector->second);
      ++collector;
    }
  }
  return out;
}

}  // namespace disco
