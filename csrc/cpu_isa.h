// The CPU kernels are compiled for the baseline instruction set and, on x86-64 (unless the
// build sets PYFACE_CPU_AVX2=0), twice more: for AVX2 + FMA and for AVX-512 (F, BW, VL, DQ:
// x86-64-v4), each copy in its own namespace (baseline::, avx2::, avx512::). The host code
// calls PYFACE_CPU_CALL(fn)(args...), which picks the widest copy that was built and that the
// running CPU has. PYFACE_CPU_ISA=baseline or =avx2 in the environment caps the choice (tests).
#pragma once

#if defined(PYFACE_CPU_AVX512)
#define PYFACE_CPU_NS avx512
#elif defined(PYFACE_CPU_AVX2)
#define PYFACE_CPU_NS avx2
#else
#define PYFACE_CPU_NS baseline
#endif

namespace pyface {

enum class CpuIsa { Baseline, Avx2, Avx512 };

// The copy of the kernels this process runs (decided once).
CpuIsa cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

}  // namespace pyface

#ifdef PYFACE_HAVE_X86_KERNELS
#define PYFACE_CPU_CALL(fn)                                       \
  (::pyface::cpu_isa() == ::pyface::CpuIsa::Avx512 ? avx512::fn   \
   : ::pyface::cpu_isa() == ::pyface::CpuIsa::Avx2 ? avx2::fn     \
                                                   : baseline::fn)
#else
#define PYFACE_CPU_CALL(fn) (baseline::fn)
#endif

// Declares an op's CPU kernels in every copy's namespace:
// PYFACE_DECLARE_CPU_KERNELS(void forward_cpu(const Problem& pb, void* out); ...)
#define PYFACE_DECLARE_CPU_KERNELS(...) \
  namespace baseline {                  \
  __VA_ARGS__                           \
  }                                     \
  namespace avx2 {                      \
  __VA_ARGS__                           \
  }                                     \
  namespace avx512 {                    \
  __VA_ARGS__                           \
  }
