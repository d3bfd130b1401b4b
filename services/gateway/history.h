// TrafficHistory: the last few minutes of what the gateway saw, for the
// dashboard's charts (GET /dashboard/series): per-instance request rates,
// per-service latency quantiles, failures, retries and ejections, and a
// timeline of registry and outlier-detection events.
//
// Everything comes from what the gateway already keeps: the resolvers'
// per-endpoint counters, the channels' stats and latency histograms
// (http_client_request_duration_seconds in the proxy's metrics registry)
// and the outlier detectors, whose listener the history takes over.
//
// Bounded: `samples` samples (one per `interval`), `events` events and at
// most `max_series` instances remembered; older ones are overwritten. A
// learner watching failover wants minutes, not hours.
//
// Events and why their kinds are inferred: a registry watch says only which
// instances are listed now, never why one left. An instance that leaves
// while the gateway's calls to it were failing (ejected, or its last calls
// failed) is reported "expired" (it died and its lease/TTL ran out); one
// that leaves while answering is "deregistered" (it said goodbye). With no
// traffic to it there is no way to tell, and it reads "deregistered".
//
// Threads: a thread of its own compares the registry view every `watch`
// and takes a sample every `interval`, then renders the JSON once; the
// HTTP handler only copies a shared_ptr to that text, so it never waits
// for sampling. Detector listeners (any I/O thread, under the detector's
// lock) append to the event ring under a short mutex of its own.
//
// The catalog and the proxy must outlive the history.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "disco/metrics.h"
#include "disco/snapshot.h"
#include "gateway/catalog.h"
#include "gateway/proxy.h"

namespace disco::gateway {

struct HistoryOptions {
  std::chrono::milliseconds interval{1000};  // one sample per interval
  std::size_t samples = 300;                 // 5 minutes at the default interval
  std::size_t events = 512;
  std::size_t max_series = 256;          // instances remembered at once
  std::chrono::milliseconds watch{100};  // how often registry views are compared
};

// The q-quantile (0..1) of a histogram's non-cumulative bucket counts
// (`counts` has one more entry than `bounds`: +Inf), interpolated linearly
// inside the bucket as Prometheus' histogram_quantile does. Empty: nullopt.
std::optional<double> BucketQuantile(std::span<const double> bounds,
                                     std::span<const std::uint64_t> counts, double q);

class TrafficHistory {
 public:
  TrafficHistory(const Catalog& catalog, const Proxy& proxy, HistoryOptions options = {});
  ~TrafficHistory();
  TrafficHistory(const TrafficHistory&) = delete;
  TrafficHistory& operator=(const TrafficHistory&) = delete;

  // The latest rendering of the series and events (JSON, see docs/gateway.md).
  std::shared_ptr<const std::string> Json() const;

 private:
  struct Event {
    std::int64_t t_ms;  // system clock, ms since the epoch
    const char* kind;   // registered, deregistered, expired, ejected, returned
    std::string service;
    std::string id;
    std::string address;
    std::string detail;
  };
  // One instance's share of a sample.
  struct Point {
    std::uint32_t series;
    float rps;
    std::uint32_t failures;
    bool ejected;
  };
  struct ServicePoint {
    std::uint32_t service;  // index into services_
    float rps;              // calls per second (retries not counted twice)
    std::uint32_t retries;
    std::uint32_t failures;  // failed attempts, over its instances
    std::uint32_t ejections;
    std::optional<float> p50_ms;
    std::optional<float> p99_ms;
  };
  struct Sample {
    std::int64_t t_ms = 0;
    std::vector<ServicePoint> services;
    std::vector<Point> points;
  };
  // An instance as the sampler last saw it: the stats object (a returning
  // instance gets a new one, so its counters start again at zero) and the
  // counters then.
  struct Series {
    std::string service;
    std::string id;
    std::string address;
    std::shared_ptr<EndpointStats> stats;
    std::uint64_t picks = 0;
    std::uint64_t successes = 0;
    std::uint64_t failures = 0;
    bool last_calls_failed = false;  // in the last sample with calls, some failed
    bool live = false;               // in the current registry view
  };
  struct ServiceState {
    std::string name;
    bool routed = false;
    SnapshotConstPtr last;  // the last view compared
    http::Channel* channel = nullptr;
    Histogram* latency = nullptr;
    std::vector<std::uint64_t> buckets;  // at the last sample
    std::uint64_t calls = 0;
    std::uint64_t retries = 0;
    std::uint64_t ejections = 0;
  };

  void Run();
  void WatchRegistry();
  void TakeSample(std::int64_t now_ms);
  void Render(std::int64_t now_ms);
  void AddEvent(Event event);
  std::optional<std::uint32_t> SeriesFor(const std::string& service, const Endpoint& endpoint);
  ServiceState& ServiceFor(const Catalog::Entry& entry);

  const Catalog& catalog_;
  const Proxy& proxy_;
  const HistoryOptions options_;

  // The sampler thread's own state: no lock.
  std::vector<ServiceState> services_;
  std::vector<std::optional<Series>> series_;  // a free slot is nullopt
  std::map<std::pair<std::string, std::string>, std::uint32_t> series_index_;
  std::vector<Sample> ring_;  // circular once full
  std::size_t next_ = 0;      // where the next sample goes once the ring is full
  std::int64_t last_sample_ms_ = 0;
  std::uint64_t dropped_series_ = 0;
  // last_sample_ms_ when the table was last found full and scanned: one scan
  // per sample at most (it walks the whole ring; with many instances over
  // the cap, one per instance per watch tick cost tens of millions of steps
  // a second).
  std::int64_t scanned_full_at_ms_ = -1;

  mutable std::mutex events_mu_;
  std::deque<Event> events_;          // guarded by events_mu_; at most options_.events
  bool events_changed_ = false;       // guarded by events_mu_
  std::uint64_t events_dropped_ = 0;  // guarded by events_mu_

  mutable std::mutex json_mu_;
  std::shared_ptr<const std::string> json_;  // guarded by json_mu_

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread thread_;     // last: started when all else is ready
};

}  // namespace disco::gateway
