// Sixteen floats in a 512-bit register, loaded from and stored to a kernel's element type
// (float, bfloat16, float16); lanes outside the mask are not touched in memory and load as 0.
// bfloat16 is stored rounded to nearest even as to_scalar does (scalar_cast.h), NaN to the
// quiet NaN. AVX-512 copies of the CPU kernels only; internal linkage, as in scalar_cast.h.
#pragma once

#if defined(__AVX512F__)
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <cstdint>

namespace pyface {
namespace {

constexpr __mmask16 kAllLanes = 0xFFFF;

// The first min(n, 16) lanes.
inline __mmask16 first_lanes(int64_t n) { return n >= 16 ? kAllLanes : __mmask16((1u << n) - 1); }

inline __m512 load16(const float* p, __mmask16 m = kAllLanes) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const c10::BFloat16* p, __mmask16 m = kAllLanes) {
  const __m256i bits = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
inline __m512 load16(const c10::Half* p, __mmask16 m = kAllLanes) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

inline void store16(float* p, __m512 x, __mmask16 m = kAllLanes) { _mm512_mask_storeu_ps(p, m, x); }
inline void store16(c10::BFloat16* p, __m512 x, __mmask16 m = kAllLanes) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(rounded));
}
inline void store16(c10::Half* p, __m512 x, __mmask16 m = kAllLanes) {
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

}  // namespace
}  // namespace pyface
#endif
