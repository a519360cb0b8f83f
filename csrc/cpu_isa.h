// The CPU kernels are compiled twice: for the baseline x86-64 instruction set and, on x86-64,
// for AVX2 + FMA, each copy in its own namespace (baseline:: or avx2::). The host code calls
// PYFACE_CPU_CALL(fn)(args...), which picks the AVX2 copy when the running CPU has it.
// PYFACE_CPU_ISA=baseline in the environment forces the baseline copy (for tests).
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

#define PYFACE_CPU_CALL(fn) (::pyface::cpu_uses_avx2() ? avx2::fn : baseline::fn)
