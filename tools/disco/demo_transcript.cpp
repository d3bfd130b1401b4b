#include "demo_transcript.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace disco::cli {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Format(const char* format, auto... args) {
  char buf[512];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

nlohmann::json ToJson(const StepRecord& r) {
  nlohmann::json j = {
      {"type", "step"},       {"n", r.n},
      {"round", r.round},     {"step", r.step},
      {"method", r.method},   {"path", r.path},
      {"service", r.service}, {"status", r.status},
      {"ok", r.ok},           {"latency_ms", std::round(r.latency_ms * 1000) / 1000},
      {"unix_ms", r.unix_ms}, {"served_by", r.served_by}};
  if (!r.detail.empty()) j["detail"] = r.detail;
  return j;
}

}  // namespace

Transcript::Transcript(std::ostream& out, TranscriptOptions options)
    : out_(out), options_(std::move(options)), start_(Clock::now()) {}

void Transcript::WriteJson(const std::string& line) {
  if (options_.json) out_ << line << std::endl;
  if (options_.json_copy) *options_.json_copy << line << std::endl;
}

void Transcript::Begin(const std::string& user) {
  user_ = user;
  start_ = Clock::now();
  WriteJson(nlohmann::json{
      {"type", "start"}, {"via", options_.via}, {"target", options_.target}, {"user", user}}
                .dump());
  if (options_.json) return;
  if (options_.via == "gateway") {
    out_ << "disco demo: every call goes through the gateway at " << options_.target << "\n";
  } else {
    out_ << "disco demo: services discovered in " << options_.target
         << " (resolver + round_robin, one retry on another instance)\n";
  }
  out_ << "user " << user << "; X-Served-By names the instance that answered\n\n"
       << "  #  call                            status   latency  served by         result\n"
       << std::flush;
}

void Transcript::Count(const StepRecord& record) {
  if (record.ok) {
    ++succeeded_;
  } else {
    ++failed_;
  }
  if (!record.served_by.empty()) ++served_[record.service][record.served_by];
}

void Transcript::Step(const StepRecord& r) {
  Count(r);
  WriteJson(ToJson(r).dump());
  if (options_.json) return;
  std::string call = r.method + " " + r.path;
  std::string status = r.status ? std::to_string(r.status) : "---";
  std::string detail = r.ok ? r.detail : "FAILED: " + r.detail;
  out_ << Format("%3d  %-30s  %6s  %7.1f ms  %-16s  %s\n", r.n, call.c_str(), status.c_str(),
                 r.latency_ms, r.served_by.empty() ? "-" : r.served_by.c_str(), detail.c_str())
       << std::flush;
}

void Transcript::BeginLoop(const std::string& description) {
  loop_start_ = window_start_ = Clock::now();
  window_ = {};
  WriteJson(nlohmann::json{{"type", "loop"}, {"description", description}}.dump());
  if (options_.json) return;
  out_ << "\nkeeps calling: " << description << "; one line per second:\n" << std::flush;
}

void Transcript::LoopStep(const StepRecord& r) {
  Count(r);
  WriteJson(ToJson(r).dump());
  if (options_.json) return;  // the per-second window feeds only the text lines
  ++window_.calls;
  if (!r.ok) {
    ++window_.failed;
    if (window_.first_failure.empty())
      window_.first_failure = r.method + " " + r.path + ": " + r.detail;
  }
  window_.latencies.push_back(r.latency_ms);
  if (!r.served_by.empty()) ++window_.served[r.service][r.served_by];
  Tick();
}

void Transcript::Tick(bool force) {
  if (options_.json) return;
  auto now = Clock::now();
  if (!force && now - window_start_ < std::chrono::seconds(1)) return;
  if (window_.calls == 0 && force) return;
  window_start_ = now;
  auto& l = window_.latencies;
  double p50 = 0, max = 0;
  if (!l.empty()) {
    std::sort(l.begin(), l.end());
    p50 = l[l.size() / 2];
    max = l.back();
  }
  out_ << Format("  [%4.1f s] %4d calls, %d failed, p50 %5.1f ms, max %6.1f ms   ",
                 SecondsSince(loop_start_), window_.calls, window_.failed, p50, max)
       << ServedList(window_.served, false) << "\n";
  if (!window_.first_failure.empty())
    out_ << "           first failure: " << window_.first_failure << "\n";
  out_ << std::flush;
  window_ = {};
}

std::string Transcript::ServedList(const std::map<std::string, std::map<std::string, int>>& served,
                                   bool long_form) {
  std::string out;
  for (const auto& [service, instances] : served) {
    if (!out.empty()) out += long_form ? "; " : " | ";
    if (long_form) {
      out += service + ": " + std::to_string(instances.size()) +
             (instances.size() == 1 ? " instance (" : " instances (");
    }
    bool first = true;
    for (const auto& [instance, calls] : instances) {
      out += (first ? "" : long_form ? ", " : "  ") + instance + " " + std::to_string(calls);
      first = false;
    }
    if (long_form) out += ")";
  }
  return out;
}

void Transcript::Finish(int rounds, bool interrupted) {
  Tick(true);
  double seconds = SecondsSince(start_);
  nlohmann::json services = nlohmann::json::object();
  for (const auto& [service, instances] : served_) services[service] = instances;
  WriteJson(nlohmann::json{{"type", "summary"},
                           {"via", options_.via},
                           {"target", options_.target},
                           {"user", user_},
                           {"steps", succeeded_ + failed_},
                           {"ok", succeeded_},
                           {"failed", failed_},
                           {"rounds", rounds},
                           {"interrupted", interrupted},
                           {"duration_ms", static_cast<std::int64_t>(seconds * 1000)},
                           {"services", services}}
                .dump());
  if (options_.json) return;
  int steps = succeeded_ + failed_;
  out_ << "\nsummary: " << steps << (steps == 1 ? " step, " : " steps, ") << succeeded_ << " ok, "
       << failed_ << " failed";
  if (rounds > 0) out_ << " (" << rounds << " loop rounds)";
  out_ << Format(" in %.1f s", seconds);
  if (interrupted) out_ << " (interrupted)";
  if (served_.empty()) {
    out_ << "; no instance answered\n" << std::flush;
  } else {
    out_ << "; served by " << ServedList(served_, true) << "\n" << std::flush;
  }
}

}  // namespace disco::cli
