// The `disco demo` transcript: what each call did, printed for people (one
// line per walkthrough step, one line per second while looping) or as JSON
// lines for scripts, and the summary that counts successes, failures and the
// instances that served each service.
//
// Thread safety: none; the demo drives it from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace disco::cli {

struct StepRecord {
  int n = 0;            // 1-based, over the whole run
  int round = 0;        // 0: the walkthrough; 1, 2, ...: the loop's rounds
  std::string step;     // "register", "login", "create_order", ...
  std::string method;   // "POST"
  std::string path;     // "/api/users/register"
  std::string service;  // the service the call is for: "user-service"
  int status = 0;       // 0: no HTTP answer (detail says why)
  bool ok = false;
  double latency_ms = 0;
  std::int64_t unix_ms = 0;  // when the call started (wall clock)
  std::string served_by;     // X-Served-By (or the picked instance), "" if unknown
  std::string detail;        // what the answer showed, or why the step failed
};

struct TranscriptOptions {
  bool json = false;                  // JSON lines on `out` instead of text
  std::ostream* json_copy = nullptr;  // also write the JSON lines here
  std::string via;                    // "gateway" or "registry"
  std::string target;                 // the gateway URL or the registry URL
};

class Transcript {
 public:
  Transcript(std::ostream& out, TranscriptOptions options);

  void Begin(const std::string& user);
  // A walkthrough step: printed at once.
  void Step(const StepRecord& record);
  // Announces the loop (text: what each round does).
  void BeginLoop(const std::string& description);
  // A loop step: a JSON line at once; in text, counted into the current
  // one-second window, printed by Tick() when the window is over.
  void LoopStep(const StepRecord& record);
  // Prints the text window line when a second passed (or `force`).
  void Tick(bool force = false);
  // Prints the summary; `interrupted` when a signal ended the walkthrough.
  void Finish(int rounds, bool interrupted);

  int failed() const { return failed_; }
  int succeeded() const { return succeeded_; }

 private:
  struct Window {
    int calls = 0;
    int failed = 0;
    std::vector<double> latencies;
    std::map<std::string, std::map<std::string, int>> served;  // service → instance → calls
    std::string first_failure;
  };

  void Count(const StepRecord& record);
  void WriteJson(const std::string& line);
  static std::string ServedList(const std::map<std::string, std::map<std::string, int>>& served,
                                bool long_form);

  std::ostream& out_;
  TranscriptOptions options_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point loop_start_;
  std::chrono::steady_clock::time_point window_start_;
  Window window_;
  int succeeded_ = 0;
  int failed_ = 0;
  std::map<std::string, std::map<std::string, int>> served_;  // service → instance → calls
  std::string user_;
};

}  // namespace disco::cli
