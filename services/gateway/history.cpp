#include "gateway/history.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "disco/outlier.h"
#include "disco/resolver.h"

namespace disco::gateway {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

std::int64_t MsSinceEpoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::int64_t NowMs() { return MsSinceEpoch(std::chrono::system_clock::now()); }

// One decimal is all a chart can show, and it keeps the JSON short.
double Round1(double value) { return std::round(value * 10.0) / 10.0; }

std::uint32_t Delta(std::uint64_t now, std::uint64_t before) {
  // Counters only grow; a smaller value means the counter is a new one.
  return now >= before
             ? static_cast<std::uint32_t>(std::min<std::uint64_t>(now - before, UINT32_MAX))
             : 0;
}

}  // namespace

std::optional<double> BucketQuantile(std::span<const double> bounds,
                                     std::span<const std::uint64_t> counts, double q) {
  std::uint64_t total = 0;
  for (auto count : counts) total += count;
  if (total == 0 || bounds.empty() || counts.size() != bounds.size() + 1) return std::nullopt;
  const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(total);
  double below = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] == 0) continue;
    if (below + static_cast<double>(counts[i]) >= rank) {
      // Past the last bound nothing says how slow: the bound is all we know.
      if (i == bounds.size()) return bounds.back();
      double lower = i == 0 ? 0.0 : bounds[i - 1];
      return lower + (bounds[i] - lower) * (rank - below) / static_cast<double>(counts[i]);
    }
    below += static_cast<double>(counts[i]);
  }
  return bounds.back();
}

TrafficHistory::TrafficHistory(const Catalog& catalog, const Proxy& proxy, HistoryOptions options)
    : catalog_(catalog), proxy_(proxy), options_(std::move(options)) {
  ring_.reserve(options_.samples);
  std::set<OutlierDetector*> hooked;
  for (const auto& route : proxy_.routes()) {
    auto* detector = route->channel->resolver().outlier_detector();
    if (detector == nullptr || !hooked.insert(detector).second) continue;
    detector->SetListener([this](const OutlierEvent& e) {
      bool ejected = e.kind == OutlierEvent::Kind::kEjected;
      std::string detail = ejected ? std::string(CallOutcomeName(e.cause)) + ", for " +
                                         std::to_string(e.duration.count()) + " ms"
                                   : std::string();
      AddEvent(Event{NowMs(), ejected ? "ejected" : "returned", e.service, e.id, e.address,
                     std::move(detail)});
    });
  }
  Render(NowMs());
  thread_ = std::thread([this] { Run(); });
}

TrafficHistory::~TrafficHistory() {
  {
    std::lock_guard lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  thread_.join();
  // SetListener takes the detector's lock, under which listeners run: once
  // it returns, no call into this object is in progress or can start.
  for (const auto& route : proxy_.routes()) {
    if (auto* detector = route->channel->resolver().outlier_detector()) detector->SetListener({});
  }
}

std::shared_ptr<const std::string> TrafficHistory::Json() const {
  std::lock_guard lock(json_mu_);
  return json_;
}

void TrafficHistory::Run() {
  using Steady = std::chrono::steady_clock;
  auto next_sample = Steady::now() + options_.interval;
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    lock.unlock();
    WatchRegistry();
    bool sampled = false;
    if (auto now = Steady::now(); now >= next_sample) {
      TakeSample(NowMs());
      next_sample += options_.interval;
      // A stall (a stopped process, a loaded machine) skips samples rather
      // than taking a burst of them.
      if (next_sample <= now) next_sample = now + options_.interval;
      sampled = true;
    }
    bool events_changed = false;
    {
      std::lock_guard events_lock(events_mu_);
      std::swap(events_changed, events_changed_);
    }
    if (sampled || events_changed) Render(NowMs());
    lock.lock();
    stop_cv_.wait_until(lock, std::min(Steady::now() + options_.watch, next_sample),
                        [this] { return stopping_; });
  }
}

TrafficHistory::ServiceState& TrafficHistory::ServiceFor(const Catalog::Entry& entry) {
  for (auto& state : services_) {
    if (state.name == entry.service) return state;
  }
  ServiceState state;
  state.name = entry.service;
  state.routed = !entry.routes.empty();
  for (const auto& route : proxy_.routes()) {
    if (route->config.service == entry.service) {
      state.channel = route->channel;
      break;
    }
  }
  if (state.channel != nullptr) {
    // The channel's own histogram: asking the registry for the family by
    // name returns the one the channel set made (its help text wins).
    state.latency = &proxy_.metrics()
                         .HistogramFamily("http_client_request_duration_seconds", "", {"service"})
                         .With({entry.service});
    state.buckets.resize(state.latency->bounds().size() + 1);
    for (std::size_t i = 0; i < state.buckets.size(); ++i)
      state.buckets[i] = state.latency->bucket(i);
    state.calls = state.channel->stats().calls;
    state.retries = state.channel->stats().retries;
    if (auto* detector = state.channel->resolver().outlier_detector())
      state.ejections = detector->ejections_total();
  }
  services_.push_back(std::move(state));
  return services_.back();
}

void TrafficHistory::WatchRegistry() {
  for (const auto& entry : catalog_.Entries()) {
    auto& state = ServiceFor(entry);
    auto snapshot = entry.resolver->snapshot();
    if (snapshot->version == 0 || (state.last && state.last->version == snapshot->version)) {
      continue;
    }
    const bool first = state.last == nullptr;
    std::int64_t t = snapshot->updated_at.time_since_epoch().count() != 0
                         ? MsSinceEpoch(snapshot->updated_at)
                         : NowMs();
    const auto& now = snapshot->endpoints;  // both sorted by instance id
    static const std::vector<Endpoint> kNone;
    const auto& before = first ? kNone : state.last->endpoints;
    std::size_t i = 0;
    std::size_t j = 0;
    while (i < before.size() || j < now.size()) {
      if (j == now.size() || (i < before.size() && before[i].instance.id < now[j].instance.id)) {
        const Endpoint& gone = before[i++];
        bool failing = gone.stats->ejected.load(std::memory_order_relaxed) ||
                       gone.stats->consecutive_failures.load(std::memory_order_relaxed) > 0;
        if (auto it = series_index_.find({entry.service, gone.instance.id});
            it != series_index_.end() && series_[it->second]) {
          failing = failing || series_[it->second]->last_calls_failed;
        }
        AddEvent(Event{t, failing ? "expired" : "deregistered", entry.service, gone.instance.id,
                       gone.address,
                       failing ? "left the registry after calls to it failed: its lease/TTL ran out"
                               : "left the registry while answering"});
      } else if (i == before.size() || now[j].instance.id < before[i].instance.id) {
        const Endpoint& added = now[j++];
        // Its counters start here, so its first sample holds a whole second.
        SeriesFor(entry.service, added);
        AddEvent(Event{t, "registered", entry.service, added.instance.id, added.address,
                       first ? "listed when the gateway started watching" : ""});
      } else {
        ++i;
        ++j;
      }
    }
    state.last = std::move(snapshot);
  }
}

std::optional<std::uint32_t> TrafficHistory::SeriesFor(const std::string& service,
                                                       const Endpoint& endpoint) {
  auto key = std::make_pair(service, endpoint.instance.id);
  if (auto it = series_index_.find(key); it != series_index_.end()) return it->second;
  auto free = std::ranges::find_if(series_, [](const auto& slot) { return !slot.has_value(); });
  if (free == series_.end() && series_.size() >= options_.max_series) {
    // Full, and scanned since the last sample: nothing can have been freed.
    if (scanned_full_at_ms_ == last_sample_ms_) {
      ++dropped_series_;
      return std::nullopt;
    }
    scanned_full_at_ms_ = last_sample_ms_;
    // Full: forget the instances that are gone and no sample mentions.
    std::vector<bool> used(series_.size(), false);
    for (const auto& sample : ring_)
      for (const auto& point : sample.points) used[point.series] = true;
    for (std::size_t k = 0; k < series_.size(); ++k) {
      if (series_[k] && !series_[k]->live && !used[k]) {
        series_index_.erase({series_[k]->service, series_[k]->id});
        series_[k].reset();
      }
    }
    free = std::ranges::find_if(series_, [](const auto& slot) { return !slot.has_value(); });
    if (free == series_.end()) {
      ++dropped_series_;
      return std::nullopt;
    }
  }
  if (free == series_.end()) free = series_.emplace(series_.end());
  Series& series = free->emplace();
  series.service = service;
  series.id = endpoint.instance.id;
  series.address = endpoint.address;
  // Counted from now: what it did before the gateway sampled it is not
  // this second's traffic.
  series.stats = endpoint.stats;
  series.picks = endpoint.stats->picks();
  series.successes = endpoint.stats->successes();
  series.failures = endpoint.stats->failures();
  auto index = static_cast<std::uint32_t>(free - series_.begin());
  series_index_.emplace(std::move(key), index);
  return index;
}

void TrafficHistory::TakeSample(std::int64_t now_ms) {
  const double seconds = last_sample_ms_ != 0 && now_ms > last_sample_ms_
                             ? static_cast<double>(now_ms - last_sample_ms_) / 1000.0
                             : std::chrono::duration<double>(options_.interval).count();
  last_sample_ms_ = now_ms;
  Sample sample;
  sample.t_ms = now_ms;
  for (auto& series : series_)
    if (series) series->live = false;
  for (const auto& entry : catalog_.Entries()) {
    auto& state = ServiceFor(entry);
    auto snapshot = entry.resolver->snapshot();
    std::uint32_t failures = 0;
    for (const auto& endpoint : snapshot->endpoints) {
      auto index = SeriesFor(entry.service, endpoint);
      if (!index) continue;
      Series& series = *series_[*index];
      if (series.stats != endpoint.stats) {
        // The instance left and came back: its counters are new ones.
        series.stats = endpoint.stats;
        series.picks = series.successes = series.failures = 0;
      }
      const auto& stats = *endpoint.stats;
      std::uint64_t picks = stats.picks();
      std::uint64_t successes = stats.successes();
      std::uint64_t failed = stats.failures();
      std::uint32_t d_picks = Delta(picks, series.picks);
      std::uint32_t d_successes = Delta(successes, series.successes);
      std::uint32_t d_failures = Delta(failed, series.failures);
      series.picks = picks;
      series.successes = successes;
      series.failures = failed;
      // Failures win: the second an instance dies holds its last successes too.
      if (d_failures > 0) {
        series.last_calls_failed = true;
      } else if (d_successes > 0) {
        series.last_calls_failed = false;
      }
      series.live = true;
      series.address = endpoint.address;
      failures += d_failures;
      sample.points.push_back(Point{*index, static_cast<float>(d_picks / seconds), d_failures,
                                    stats.ejected.load(std::memory_order_relaxed)});
    }
    if (state.channel == nullptr) continue;
    ServicePoint point{};
    point.service = static_cast<std::uint32_t>(&state - services_.data());
    auto stats = state.channel->stats();
    point.rps = static_cast<float>(Delta(stats.calls, state.calls) / seconds);
    point.retries = Delta(stats.retries, state.retries);
    state.calls = stats.calls;
    state.retries = stats.retries;
    point.failures = failures;
    if (auto* detector = state.channel->resolver().outlier_detector()) {
      point.ejections = Delta(detector->ejections_total(), state.ejections);
      state.ejections = detector->ejections_total();
    }
    std::vector<std::uint64_t> counts(state.buckets.size());
    for (std::size_t i = 0; i < counts.size(); ++i) {
      std::uint64_t now = state.latency->bucket(i);
      counts[i] = Delta(now, state.buckets[i]);
      state.buckets[i] = now;
    }
    if (auto p50 = BucketQuantile(state.latency->bounds(), counts, 0.5))
      point.p50_ms = static_cast<float>(*p50 * 1000.0);
    if (auto p99 = BucketQuantile(state.latency->bounds(), counts, 0.99))
      point.p99_ms = static_cast<float>(*p99 * 1000.0);
    sample.services.push_back(point);
  }
  if (options_.samples == 0) return;  // a history of events only
  if (ring_.size() < options_.samples) {
    ring_.push_back(std::move(sample));
  } else {
    ring_[next_] = std::move(sample);
    next_ = (next_ + 1) % ring_.size();
  }
}

void TrafficHistory::AddEvent(Event event) {
  std::lock_guard lock(events_mu_);
  if (options_.events == 0) return;
  if (events_.size() >= options_.events) {
    events_.pop_front();
    ++events_dropped_;
  }
  events_.push_back(std::move(event));
  events_changed_ = true;
}

void TrafficHistory::Render(std::int64_t now_ms) {
  // Oldest first.
  std::vector<const Sample*> samples;
  samples.reserve(ring_.size());
  for (std::size_t k = 0; k < ring_.size(); ++k) {
    samples.push_back(&ring_[(ring_.size() < options_.samples ? k : (next_ + k) % ring_.size())]);
  }
  const std::size_t n = samples.size();
  json times = json::array();
  for (const auto* sample : samples) times.push_back(sample->t_ms);

  auto nulls = [n] { return json(std::vector<json>(n, nullptr)); };
  std::map<std::uint32_t, json> services;   // by index into services_
  std::map<std::uint32_t, json> instances;  // by series
  for (std::size_t k = 0; k < n; ++k) {
    for (const auto& point : samples[k]->services) {
      auto [it, fresh] = services.try_emplace(point.service);
      json& s = it->second;
      if (fresh) {
        s = {{"name", services_[point.service].name},
             {"rps", nulls()},
             {"retries", nulls()},
             {"failures", nulls()},
             {"ejections", nulls()},
             {"p50_ms", nulls()},
             {"p99_ms", nulls()}};
      }
      s["rps"][k] = Round1(point.rps);
      s["retries"][k] = point.retries;
      s["failures"][k] = point.failures;
      s["ejections"][k] = point.ejections;
      if (point.p50_ms) s["p50_ms"][k] = Round1(*point.p50_ms);
      if (point.p99_ms) s["p99_ms"][k] = Round1(*point.p99_ms);
    }
    for (const auto& point : samples[k]->points) {
      auto [it, fresh] = instances.try_emplace(point.series);
      json& i = it->second;
      if (fresh) {
        const Series& series = *series_[point.series];
        i = {{"service", series.service}, {"id", series.id}, {"address", series.address},
             {"live", series.live},       {"rps", nulls()},  {"failures", nulls()},
             {"ejected", nulls()}};
      }
      i["rps"][k] = Round1(point.rps);
      i["failures"][k] = point.failures;
      i["ejected"][k] = point.ejected;
    }
  }
  json service_list = json::array();
  for (auto& [index, s] : services) service_list.push_back(std::move(s));
  json instance_list = json::array();
  for (auto& [index, i] : instances) instance_list.push_back(std::move(i));
  std::sort(instance_list.begin(), instance_list.end(), [](const json& a, const json& b) {
    return std::tie(a["service"].get_ref<const std::string&>(),
                    a["id"].get_ref<const std::string&>()) <
           std::tie(b["service"].get_ref<const std::string&>(),
                    b["id"].get_ref<const std::string&>());
  });

  std::vector<Event> events;
  std::uint64_t events_dropped = 0;
  {
    std::lock_guard lock(events_mu_);
    events.assign(events_.begin(), events_.end());
    events_dropped = events_dropped_;
  }
  // Listener events are stamped when they happen, registry events with the
  // snapshot's time, and the two reach the ring in either order.
  std::stable_sort(events.begin(), events.end(),
                   [](const Event& a, const Event& b) { return a.t_ms < b.t_ms; });
  json event_list = json::array();
  for (const auto& e : events) {
    event_list.push_back({{"t", e.t_ms},
                          {"kind", e.kind},
                          {"service", e.service},
                          {"id", e.id},
                          {"address", e.address},
                          {"detail", e.detail}});
  }
  json body = {{"now", now_ms},
               {"interval_ms", options_.interval.count()},
               {"capacity", options_.samples},
               {"t", std::move(times)},
               {"services", std::move(service_list)},
               {"instances", std::move(instance_list)},
               {"events", std::move(event_list)},
               {"events_capacity", options_.events},
               {"events_dropped", events_dropped},
               {"series_dropped", dropped_series_}};
  auto text = std::make_shared<const std::string>(
      body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  std::lock_guard lock(json_mu_);
  json_ = std::move(text);
}

}  // namespace disco::gateway
