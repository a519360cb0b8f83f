// Transposes a block of a row-major matrix into another, for the CPU kernels. Included by the
// kernel sources, so it is compiled into both instruction-set copies (cpu_isa.h), each in its
// copy's namespace (the two bodies differ: one definition per namespace): the AVX2 copy moves
// float 8x8 tiles through registers, where a plain loop reads one strided element at a time.
#pragma once

#include <cstdint>
#include <type_traits>

#include "cpu_isa.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pyface::PYFACE_CPU_NS {

#if defined(__AVX2__)
// dst[j * dst_stride + i] = src[i * src_stride + j] for an 8x8 float tile.
inline void transpose_tile_8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + k * src_stride);
  for (int k = 0; k < 8; k += 2) {  // interleave row pairs
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {  // then pairs of pairs: each 128-bit lane holds a 4x4 transpose
    r[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {  // and the lanes of rows 0-3 and 4-7 joined
    _mm256_storeu_ps(dst + k * dst_stride, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * dst_stride, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
  }
}
#endif

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols.
template <typename T>
void transpose_block(const T* src, int64_t src_stride, T* dst, int64_t dst_stride, int64_t rows, int64_t cols) {
  int64_t i0 = 0;
#if defined(__AVX2__)
  if constexpr (sizeof(T) == 4 && std::is_floating_point_v<T>) {
    for (; i0 + 8 <= rows; i0 += 8) {
      int64_t j = 0;
      for (; j + 8 <= cols; j += 8)
        transpose_tile_8x8(src + i0 * src_stride + j, src_stride, dst + j * dst_stride + i0, dst_stride);
      for (; j < cols; ++j)
        for (int64_t i = i0; i < i0 + 8; ++i) dst[j * dst_stride + i] = src[i * src_stride + j];
    }
  }
#endif
  for (int64_t j = 0; j < cols; ++j)  // rows left over (all of them without the tiles)
    for (int64_t i = i0; i < rows; ++i) dst[j * dst_stride + i] = src[i * src_stride + j];
}

}  // namespace pyface::PYFACE_CPU_NS
