// The CPU kernels are compiled for the baseline instruction set and, on x86-64 (unless the
// build sets PYFACE_CPU_AVX2=0), once more for AVX2 + FMA, each copy in its own namespace
// (baseline:: or avx2::). The host code calls PYFACE_CPU_CALL(fn)(args...), which picks the
// AVX2 copy when it was built and the running CPU has it. PYFACE_CPU_ISA=baseline in the
// environment forces the baseline copy (for tests).
#pragma once

#ifdef PYFACE_CPU_AVX2
#define PYFACE_CPU_NS avx2
#else
#define PYFACE_CPU_NS baseline
#endif

namespace pyface {

// True when the AVX2 copy of the kernels was built and this CPU runs it (decided once).
bool cpu_uses_avx2();

}  // namespace pyface

#ifdef PYFACE_HAVE_AVX2_KERNELS
#define PYFACE_CPU_CALL(fn) (::pyface::cpu_uses_avx2() ? avx2::fn : baseline::fn)
#else
#define PYFACE_CPU_CALL(fn) (baseline::fn)
#endif

// Declares an op's CPU kernels in both copies' namespaces:
// PYFACE_DECLARE_CPU_KERNELS(void forward_cpu(const Problem& pb, void* out); ...)
#define PYFACE_DECLARE_CPU_KERNELS(...) \
  namespace baseline {                  \
  __VA_ARGS__                           \
  }                                     \
  namespace avx2 {                      \
  __VA_ARGS__                           \
  }
