#include "http/cpu_limit.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "disco/http/server.h"

namespace disco::http::detail {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<std::uint64_t> g_clock_reads{0};
std::atomic<std::uint64_t> g_limit_reads{0};
// Whether checkpoints read the clock: set by the reader thread.
std::atomic<bool> g_own_limit{false};

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const std::size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

bool Contains(const std::vector<std::string_view>& parts, std::string_view part) {
  return std::find(parts.begin(), parts.end(), part) != parts.end();
}

// mountinfo writes a space in a path as \040 (and tab, newline, backslash
// likewise): octal escapes back to bytes.
std::string Unescape(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const std::string_view digits = field.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 +
                                        (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

std::optional<std::int64_t> Number(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<double> Ratio(std::optional<std::int64_t> quota, std::optional<std::int64_t> period) {
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

void KeepSmaller(std::optional<double>& smallest, std::optional<double> limit) {
  if (limit && (!smallest || *limit < *smallest)) smallest = limit;
}

struct Mount {
  std::string root;         // the cgroup this mount shows at its mount point
  std::string mount_point;  // where it is mounted
};

// v2's mounts and v1's cpu controller's, from /proc/self/mountinfo. A line:
// ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
void FindMounts(std::string_view mountinfo, std::vector<Mount>& v2, std::vector<Mount>& v1) {
  for (std::string_view line : Split(mountinfo, '\n')) {
    const std::vector<std::string_view> fields = Split(line, ' ');
    const auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash - fields.begin() < 6 || fields.end() - dash < 4) continue;
    const std::string_view fstype = dash[1];
    if (fstype == "cgroup2") {
      v2.push_back({Unescape(fields[3]), Unescape(fields[4])});
    } else if (fstype == "cgroup" && Contains(Split(dash[3], ','), "cpu")) {
      v1.push_back({Unescape(fields[3]), Unescape(fields[4])});
    }
  }
}

// The directory of `cgroup` (a path in the hierarchy) under `mount`, or
// nullopt when the mount does not show it.
std::optional<std::string> DirectoryOf(const Mount& mount, std::string_view cgroup) {
  if (cgroup.empty() || cgroup.front() != '/') return std::nullopt;
  // A process outside its cgroup namespace's root sees "/../..": not below
  // anything mounted here.
  if (Contains(Split(cgroup, '/'), "..")) return std::nullopt;
  const std::string_view root = mount.root;
  if (root != "/") {
    // A container's mount shows its own cgroup as the root: only paths under it.
    if (cgroup.substr(0, root.size()) != root ||
        (cgroup.size() > root.size() && cgroup[root.size()] != '/'))
      return std::nullopt;
    cgroup.remove_prefix(root.size());
  }
  std::string dir = mount.mount_point;
  if (!cgroup.empty() && cgroup != "/") dir.append(cgroup);
  return dir;
}

// `cgroup`'s limits under the first of `mounts` that shows it, reading each
// level with `limit_at`: its own, and the smallest from it up to the mount point.
template <class LimitAt>
CpuLimit Walk(const std::vector<Mount>& mounts, std::string_view cgroup, LimitAt limit_at) {
  CpuLimit found;
  for (const Mount& mount : mounts) {
    std::optional<std::string> dir = DirectoryOf(mount, cgroup);
    if (!dir) continue;
    found.own_cores = limit_at(*dir);
    found.cores = found.own_cores;
    while (dir->size() > mount.mount_point.size()) {
      const std::size_t slash = dir->rfind('/');
      if (slash == std::string::npos) break;
      dir->resize(std::max(slash, mount.mount_point.size()));
      KeepSmaller(found.cores, limit_at(*dir));
    }
    return found;
  }
  return found;
}

std::optional<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

// Reads the limit every second on a thread of its own and publishes whether
// checkpoints read the clock. One per process, started by the first
// checkpoint, and never stopped: a reader destroyed at exit could be waited
// for by a child forked while it held its lock, and I/O threads may still
// pass checkpoints during static destruction. It touches only its own
// members and trivially destructible globals.
class LimitReader {
 public:
  static LimitReader& Instance() {
    static LimitReader& reader = *new LimitReader;
    return reader;
  }
  void Wake() {
    {
      std::lock_guard lock(mutex_);
      wake_ = true;
    }
    wakeup_.notify_one();
  }

 private:
  LimitReader() { std::thread([this] { Run(); }).detach(); }

  [[noreturn]] void Run() {
    ::pthread_setname_np(::pthread_self(), "cpu-limit");
    std::unique_lock lock(mutex_);
    for (;;) {
      lock.unlock();
      Publish();
      lock.lock();
      wakeup_.wait_for(lock, std::chrono::seconds(1), [this] { return wake_; });
      wake_ = false;
    }
  }

  static void Publish() {
    try {
      const CpuLimit limit = ReadCpuLimit();
      g_own_limit.store(limit.own_cores && *limit.own_cores < static_cast<double>(AffinityCpus()),
                        std::memory_order_relaxed);
    } catch (...) {
      // Out of memory reading a few small files: keep what was known.
    }
    g_limit_reads.fetch_add(1, std::memory_order_relaxed);
  }

  std::mutex mutex_;
  std::condition_variable wakeup_;
  bool wake_ = false;
};

}  // namespace

CpuLimit ParseCpuLimit(std::string_view proc_self_cgroup, std::string_view proc_self_mountinfo,
                       const ReadFile& read_file) {
  std::vector<Mount> v2_mounts;
  std::vector<Mount> v1_mounts;
  FindMounts(proc_self_mountinfo, v2_mounts, v1_mounts);
  CpuLimit limit;
  const auto keep = [&](const CpuLimit& found) {
    KeepSmaller(limit.cores, found.cores);
    KeepSmaller(limit.own_cores, found.own_cores);
  };
  // A line: HIERARCHY-ID:CONTROLLERS:PATH (v2's: 0::PATH).
  for (std::string_view line : Split(proc_self_cgroup, '\n')) {
    const std::size_t first = line.find(':');
    const std::size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, first);
    const std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string_view path = line.substr(second + 1);
    if (id == "0" && controllers.empty()) {
      // cpu.max: "QUOTA PERIOD", QUOTA "max" when unlimited.
      keep(Walk(v2_mounts, path, [&](const std::string& dir) -> std::optional<double> {
        const std::optional<std::string> text = read_file(dir + "/cpu.max");
        if (!text) return std::nullopt;
        const std::vector<std::string_view> parts = Split(*text, ' ');
        if (parts.size() != 2) return std::nullopt;
        return Ratio(Number(parts[0]), Number(parts[1]));
      }));
    } else if (Contains(Split(controllers, ','), "cpu")) {
      // cpu.cfs_quota_us: -1 when unlimited.
      keep(Walk(v1_mounts, path, [&](const std::string& dir) -> std::optional<double> {
        const std::optional<std::string> quota = read_file(dir + "/cpu.cfs_quota_us");
        const std::optional<std::string> period = read_file(dir + "/cpu.cfs_period_us");
        if (!quota || !period) return std::nullopt;
        return Ratio(Number(*quota), Number(*period));
      }));
    }
  }
  return limit;
}

CpuLimit ReadCpuLimit() {
  const std::optional<std::string> cgroup = ReadWholeFile("/proc/self/cgroup");
  const std::optional<std::string> mountinfo = ReadWholeFile("/proc/self/mountinfo");
  if (!cgroup || !mountinfo) return {};
  return ParseCpuLimit(*cgroup, *mountinfo, ReadWholeFile);
}

std::size_t AffinityCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return static_cast<std::size_t>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void CpuLimitCheckpoint() {
  // The first checkpoint starts the reader. Without one (no thread to be
  // had) g_own_limit stays false: nothing is ever read.
  [[maybe_unused]] static const bool started = [] {
    try {
      LimitReader::Instance();
      return true;
    } catch (...) {
      return false;
    }
  }();
  if (!g_own_limit.load(std::memory_order_relaxed)) return;
  const Clock::time_point now = Clock::now();
  thread_local Clock::time_point last_read{};
  if (now - last_read < kCpuClockInterval) return;
  last_read = now;
  timespec spent{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spent);
  g_clock_reads.fetch_add(1, std::memory_order_relaxed);
}

CpuLimitStats CpuLimitCounts() {
  return {g_clock_reads.load(std::memory_order_relaxed),
          g_limit_reads.load(std::memory_order_relaxed)};
}

void RereadCpuLimitSoon() { LimitReader::Instance().Wake(); }

}  // namespace disco::http::detail

namespace disco::http {

std::optional<double> CpuLimitCores() { return detail::ReadCpuLimit().cores; }

std::size_t UsableCores() {
  const std::size_t cpus = detail::AffinityCpus();
  const std::optional<double> limit = CpuLimitCores();
  if (!limit) return cpus;
  return std::clamp<std::size_t>(static_cast<std::size_t>(std::ceil(*limit)), 1, cpus);
}

}  // namespace disco::http
