// Which copy of the CPU kernels runs: see cpu_isa.h.
#include "cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace pyface {

bool cpu_uses_avx2() {
  static const bool uses = [] {
    const char* forced = std::getenv("PYFACE_CPU_ISA");
    if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return false;
#ifdef PYFACE_HAVE_AVX2_KERNELS
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
  }();
  return uses;
}

}  // namespace pyface
