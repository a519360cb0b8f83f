// Which copy of the CPU kernels runs: see cpu_isa.h.
#include "cpu_isa.h"

#include <cstdlib>
#include <cstring>

namespace pyface {

namespace {

CpuIsa widest_supported() {
#ifdef PYFACE_HAVE_X86_KERNELS
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
#endif
  return CpuIsa::Baseline;
}

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const CpuIsa widest = widest_supported();
    const char* cap = std::getenv("PYFACE_CPU_ISA");
    if (cap != nullptr && std::strcmp(cap, "baseline") == 0) return CpuIsa::Baseline;
    if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && widest == CpuIsa::Avx512) return CpuIsa::Avx2;
    return widest;
  }();
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace pyface
