// What a busy I/O thread's checkpoint under a CPU limit costs on this host
// (src/http/cpu_limit.h; docs/benchmarks.md, "A throttled gateway's tail:
// the scheduler tick"): a read of the thread's CPU clock (a system call, and
// the one that has the kernel check the quota), against a steady-clock read
// (the vDSO: what a checkpoint costs without a limit), a null system call
// and sched_yield (the other way to have the quota checked).
//
//   cc -O2 bench/cpu_clock_cost.c -o /tmp/cpu_clock_cost && taskset -c 1 /tmp/cpu_clock_cost
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
  const int n = 1000000;
  struct timespec t;
  for (int round = 0; round < 3; round++) {
    double a = now_ns();
    for (int i = 0; i < n; i++) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    double b = now_ns();
    for (int i = 0; i < n; i++) clock_gettime(CLOCK_MONOTONIC, &t);
    double c = now_ns();
    for (int i = 0; i < n; i++) syscall(SYS_getppid);
    double d = now_ns();
    for (int i = 0; i < n; i++) sched_yield();
    double e = now_ns();
    printf("ns per call: thread CPU clock %.0f, monotonic clock %.0f, getppid %.0f, sched_yield %.0f\n",
           (b - a) / n, (c - b) / n, (d - c) / n, (e - d) / n);
  }
  return 0;
}
