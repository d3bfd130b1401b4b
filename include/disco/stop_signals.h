// Stop signals (SIGINT, SIGTERM) taken synchronously instead of by an
// async-signal handler, so that stopping runs ordinary code (deregister,
// drain, log) on a thread the program chooses.
//
//   int main() {
//     disco::BlockStopSignals();  // first: every thread started later inherits the mask
//     ... start threads ...
//     disco::WaitForStopSignal();  // or poll TakeStopSignal() between steps
//   }
//
// Thread safety: call BlockStopSignals() before any thread starts; the other
// two may be called from any thread (a signal is taken by one caller only).
#pragma once

#include <chrono>

namespace disco {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread
// it starts later. (SIGHUP asks for a reload, WaitForReloadSignal; blocked,
// it no longer ends a process that takes no reloads.)
void BlockStopSignals();

// Waits up to `timeout` for SIGHUP; true when it came (it is taken).
bool WaitForReloadSignal(std::chrono::milliseconds timeout);

// Waits until SIGINT or SIGTERM arrives; returns it.
int WaitForStopSignal();

// SIGINT or SIGTERM if one is pending (it is taken), else 0. Never waits.
int TakeStopSignal();

}  // namespace disco
