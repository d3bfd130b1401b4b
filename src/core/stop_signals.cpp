#include "disco/stop_signals.h"

#include <pthread.h>
#include <signal.h>

namespace disco {
namespace {

sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

void BlockStopSignals() {
  sigset_t set = StopSet();
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool WaitForReloadSignal(std::chrono::milliseconds timeout) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
  timespec wait{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  return sigtimedwait(&set, nullptr, &wait) == SIGHUP;
}

int WaitForStopSignal() {
  sigset_t set = StopSet();
  int signal = 0;
  while (sigwait(&set, &signal) != 0) {
  }
  return signal;
}

int TakeStopSignal() {
  sigset_t set = StopSet();
  timespec zero{};
  int signal = sigtimedwait(&set, nullptr, &zero);
  return signal > 0 ? signal : 0;
}

}  // namespace disco
