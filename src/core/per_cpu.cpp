#include "disco/per_cpu.h"

#include <sys/sysinfo.h>

#include <algorithm>

namespace disco {

std::uint32_t CpuSlots() noexcept {
  // get_nprocs_conf, not the CPUs online now: a CPU brought online later
  // still finds its own slot.
  static const std::uint32_t slots =
      static_cast<std::uint32_t>(std::clamp(get_nprocs_conf(), 1, 1024));
  return slots;
}

}  // namespace disco
