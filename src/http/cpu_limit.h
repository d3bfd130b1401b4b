// A busy event loop under a CPU limit: having the kernel enforce the limit
// on time. Private to src/http.
//
// Why: a cgroup's CPU limit (CFS bandwidth: cgroup v2's cpu.max, v1's
// cpu.cfs_quota_us; a Kubernetes CPU limit, systemd's CPUQuota=) is checked
// when the kernel accounts a thread's run time (the scheduler's update_curr):
// when the thread sleeps or wakes, when another task wakes on its CPU, at a
// scheduler tick (every 4 ms at HZ=250), or when something reads the
// thread's CPU clock (task_sched_runtime). An event loop that never sleeps
// under load is checked only at the tick, so it runs past its quota by up to
// a tick and is then throttled as much longer, holding every request it
// has. Measured at half a core: the gateway's throttles had a p99 of
// 7.6-8.3 ms where HAProxy's stayed at 4.6-5.7 ms, and its p99 latency was
// 0.4-2.1 ms above HAProxy's (docs/benchmarks.md, "A throttled gateway's
// tail: the scheduler tick"). HAProxy reads its thread's CPU clock around
// every epoll_wait, for its own statistics.
//
// How: CpuLimitCheckpoint(), called after a turn's sends (the send batch's
// flush, a send made at once), reads CLOCK_THREAD_CPUTIME_ID when the
// process's own cgroup sets a limit below the CPUs it may use and at least
// kCpuClockInterval has passed since this thread last read it. The read is
// a system call (1.3-2 µs on the hosts we measure on), so it is spaced:
// at most about 1 % of an I/O thread's time, and an overrun is bounded by
// the interval plus one turn. (A thread that is not busy reads once per
// turn that comes 200 µs after the last, which buys nothing, since its
// sleeps are checks too; that is up to 2 µs a request at low load, when CPU
// is not short.) Threads that never send (bcrypt, database workers) are
// still checked at the tick. Only the own cgroup's: the read has
// the kernel account the thread in its own cgroup's run queue, not its
// ancestors' (a limit set only on a parent, e.g. a systemd slice, is still
// checked at the tick, and then the reads would buy nothing). Without such
// a limit a checkpoint is one relaxed atomic load.
//
// The limit is read from /proc/self/cgroup, /proc/self/mountinfo and the
// cgroup files by a thread of its own (started by the first checkpoint),
// every second: a limit can be set or changed while the process runs
// (Kubernetes' in-place resize, systemctl set-property, a bench that moves
// a process), and the read takes the kernel's cgroup lock, which an event
// loop must never wait for.
//
// Thread safety: all of it may be called from any thread, the checkpoint
// even during static destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace disco::http::detail {

inline constexpr std::chrono::microseconds kCpuClockInterval{200};

struct CpuLimit {
  // The smallest quota/period on the path from the process's cgroup to the
  // root of the hierarchy it can see, in cores.
  std::optional<double> cores;
  // The one set on the process's own cgroup (the only one a clock read
  // checks).
  std::optional<double> own_cores;
};

// The limits the cgroup files describe; both empty when none applies.
// `read_file` returns a file's content, or nullopt when it cannot be read.
// Malformed content counts as no limit from that file; a cgroup path the
// mounts do not show (outside a namespace's root, "..", a deleted cgroup)
// as no limit at all. Pure, for tests.
using ReadFile = std::function<std::optional<std::string>(const std::string& path)>;
CpuLimit ParseCpuLimit(std::string_view proc_self_cgroup, std::string_view proc_self_mountinfo,
                       const ReadFile& read_file);

// This process's limits now, read from the files.
CpuLimit ReadCpuLimit();

// The CPUs this thread may run on (its affinity mask).
std::size_t AffinityCpus();

// After a turn's sends: see above.
void CpuLimitCheckpoint();

// What the checkpoints and the limit's reader did in this process (tests).
struct CpuLimitStats {
  std::uint64_t clock_reads;  // CPU clock reads made by checkpoints
  std::uint64_t limit_reads;  // times the reader read the limit
};
CpuLimitStats CpuLimitCounts();

// Has the reader read the limit again now, if it runs (tests).
void RereadCpuLimitSoon();

}  // namespace disco::http::detail
