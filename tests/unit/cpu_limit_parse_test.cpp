// Reading a process's CPU limit from its cgroup files (src/http/cpu_limit.h):
// v2 and v1, containers that see their own cgroup as the root, limits set on
// an ancestor, several mounts, and files or paths that say nothing usable.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "http/cpu_limit.h"

namespace disco::http::detail {
namespace {

constexpr std::string_view kV2Mount =
    "25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n";
constexpr std::string_view kV1Mounts =
    "30 24 0:26 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
    "31 24 0:27 / /sys/fs/cgroup/cpuset rw,relatime shared:11 - cgroup cgroup rw,cpuset\n"
    "32 24 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup "
    "rw,cpu,cpuacct\n";

struct Files {
  std::map<std::string, std::string> content;
  ReadFile reader() const {
    return [this](const std::string& path) -> std::optional<std::string> {
      const auto it = content.find(path);
      if (it == content.end()) return std::nullopt;
      return it->second;
    };
  }
};

void ExpectLimit(const CpuLimit& limit, std::optional<double> cores, std::optional<double> own) {
  ASSERT_EQ(limit.cores.has_value(), cores.has_value());
  if (cores) {
    EXPECT_DOUBLE_EQ(*limit.cores, *cores);
  }
  ASSERT_EQ(limit.own_cores.has_value(), own.has_value());
  if (own) {
    EXPECT_DOUBLE_EQ(*limit.own_cores, *own);
  }
}

TEST(CpuLimitParseTest, ReadsCgroupV2sCpuMax) {
  Files files{{{"/sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "50000 100000\n"},
               {"/sys/fs/cgroup/kubepods/pod1/cpu.max", "max 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/kubepods/pod1/c1\n", kV2Mount, files.reader()), 0.5, 0.5);
}

TEST(CpuLimitParseTest, AnAncestorsSmallerLimitCountsButIsNotTheOwn) {
  Files files{{{"/sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "80000 100000\n"},
               {"/sys/fs/cgroup/kubepods/pod1/cpu.max", "20000 100000\n"},
               {"/sys/fs/cgroup/kubepods/cpu.max", "150000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/kubepods/pod1/c1\n", kV2Mount, files.reader()), 0.2, 0.8);
  // Only a parent's (a systemd slice's CPUQuota=): no own limit.
  Files slice{{{"/sys/fs/cgroup/app.slice/cpu.max", "30000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/app.slice/app.service\n", kV2Mount, slice.reader()), 0.3,
              std::nullopt);
}

TEST(CpuLimitParseTest, TheWalkStopsAtTheMountPoint) {
  // Files above the mount point are not the hierarchy's: never read.
  Files files{{{"/sys/fs/cgroup/a/b/c/cpu.max", "max 100000\n"},
               {"/sys/fs/cgroup/a/cpu.max", "70000 100000\n"},
               {"/sys/fs/cgroup/cpu.max", "60000 100000\n"},
               {"/sys/fs/cpu.max", "10000 100000\n"},
               {"/sys/cpu.max", "10000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/a/b/c\n", kV2Mount, files.reader()), 0.6, std::nullopt);
}

TEST(CpuLimitParseTest, NoLimitAnywhereIsNone) {
  Files files{{{"/sys/fs/cgroup/user.slice/cpu.max", "max 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/user.slice/session-1.scope\n", kV2Mount, files.reader()),
              std::nullopt, std::nullopt);
  ExpectLimit(ParseCpuLimit("", kV2Mount, files.reader()), std::nullopt, std::nullopt);
  ExpectLimit(ParseCpuLimit("0::/user.slice\n", "", files.reader()), std::nullopt, std::nullopt);
}

TEST(CpuLimitParseTest, ACgroupNamespaceSeesItsOwnCgroupAsTheRoot) {
  Files files{{{"/sys/fs/cgroup/cpu.max", "25000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/\n", kV2Mount, files.reader()), 0.25, 0.25);
}

TEST(CpuLimitParseTest, APathOutsideTheNamespacesRootIsNotRead) {
  // A process moved out of its cgroup namespace's root sees "/../x".
  Files files{{{"/sys/fs/cgroup/cpu.max", "25000 100000\n"},
               {"/sys/fs/cgroup/../x/cpu.max", "25000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/../x\n", kV2Mount, files.reader()), std::nullopt, std::nullopt);
}

TEST(CpuLimitParseTest, ReadsCgroupV1sCpuController) {
  Files files{{{"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n"},
               {"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n"},
               {"/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n"},
               {"/sys/fs/cgroup/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n"}}};
  const std::string_view cgroup =
      "12:memory:/docker/abc\n11:cpuset:/docker/abc\n4:cpu,cpuacct:/docker/abc\n";
  ExpectLimit(ParseCpuLimit(cgroup, kV1Mounts, files.reader()), 1.5, 1.5);
}

TEST(CpuLimitParseTest, AV1ContainerMountShowsItsCgroupAtTheMountPoint) {
  // Docker without a cgroup namespace: /proc/self/cgroup names the host's
  // path, and the mount's root is that path.
  const std::string_view mounts =
      "32 24 0:28 /docker/abc /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n";
  Files files{{{"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "30000\n"},
               {"/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"}}};
  ExpectLimit(ParseCpuLimit("4:cpu:/docker/abc\n", mounts, files.reader()), 0.3, 0.3);
  // A path outside what the mount shows is not read.
  ExpectLimit(ParseCpuLimit("4:cpu:/docker/abcd\n", mounts, files.reader()), std::nullopt,
              std::nullopt);
}

TEST(CpuLimitParseTest, TheFirstMountThatShowsThePathIsRead) {
  // Another cgroup2 mount listed first (the host's, seen from a container
  // that mounts it) does not show this process's path.
  const std::string mounts =
      "40 30 0:50 /kubepods/other /host/cgroup rw - cgroup2 cgroup2 rw\n" +
      std::string(kV2Mount);
  Files files{{{"/sys/fs/cgroup/kubepods/pod1/cpu.max", "40000 100000\n"},
               {"/host/cgroup/cpu.max", "10000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/kubepods/pod1\n", mounts, files.reader()), 0.4, 0.4);
}

TEST(CpuLimitParseTest, CpusetIsNotTheCpuController) {
  const std::string_view mounts =
      "31 24 0:27 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
  Files files{{{"/sys/fs/cgroup/cpuset/a/cpu.cfs_quota_us", "30000\n"},
               {"/sys/fs/cgroup/cpuset/a/cpu.cfs_period_us", "100000\n"}}};
  ExpectLimit(ParseCpuLimit("3:cpuset:/a\n", mounts, files.reader()), std::nullopt, std::nullopt);
}

TEST(CpuLimitParseTest, TheSmallerOfV1AndV2InAHybridSetup) {
  const std::string mounts =
      std::string(kV1Mounts) +
      "26 24 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  Files v2_smaller{{{"/sys/fs/cgroup/unified/app/cpu.max", "40000 100000\n"},
                    {"/sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us", "80000\n"},
                    {"/sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us", "100000\n"}}};
  ExpectLimit(ParseCpuLimit("4:cpu,cpuacct:/app\n0::/app\n", mounts, v2_smaller.reader()), 0.4,
              0.4);
  Files v1_smaller{{{"/sys/fs/cgroup/unified/app/cpu.max", "80000 100000\n"},
                    {"/sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_quota_us", "40000\n"},
                    {"/sys/fs/cgroup/cpu,cpuacct/app/cpu.cfs_period_us", "100000\n"}}};
  ExpectLimit(ParseCpuLimit("4:cpu,cpuacct:/app\n0::/app\n", mounts, v1_smaller.reader()), 0.4,
              0.4);
}

TEST(CpuLimitParseTest, EscapedMountFieldsAreUnescaped) {
  const std::string_view mounts =
      "25 1 0:22 /my\\040pods /cg\\040root rw - cgroup2 cgroup2 rw\n";
  Files files{{{"/cg root/a/cpu.max", "10000 100000\n"}}};
  ExpectLimit(ParseCpuLimit("0::/my pods/a\n", mounts, files.reader()), 0.1, 0.1);
}

TEST(CpuLimitParseTest, MalformedFilesSayNothing) {
  for (const char* cpu_max : {"abc", "50000", "0 100000", "-5 100000", "50000 0", "5e4 100000",
                              "50000 100000 7", "", "50000x 100000",
                              "99999999999999999999 100000"}) {
    Files files{{{"/sys/fs/cgroup/a/cpu.max", cpu_max}}};
    ExpectLimit(ParseCpuLimit("0::/a\n", kV2Mount, files.reader()), std::nullopt, std::nullopt);
  }
  Files v1{{{"/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_quota_us", "12x\n"},
            {"/sys/fs/cgroup/cpu,cpuacct/a/cpu.cfs_period_us", "100000\n"}}};
  ExpectLimit(ParseCpuLimit("4:cpu,cpuacct:/a\n", kV1Mounts, v1.reader()), std::nullopt,
              std::nullopt);
  // Lines that are not cgroup lines or mount lines are skipped.
  Files good{{{"/sys/fs/cgroup/a/cpu.max", "50000 100000"}}};
  ExpectLimit(ParseCpuLimit("garbage\n::\n0::\n0::/a\n",
                            std::string("short line\n- - -\n1 2 3 4 5 - cgroup2\n") +
                                std::string(kV2Mount),
                            good.reader()),
              0.5, 0.5);
}

}  // namespace
}  // namespace disco::http::detail
