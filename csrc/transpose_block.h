// Transposes a block of a row-major matrix into another, for the CPU kernels, converting the
// elements when the two types differ (to_scalar, scalar_cast.h). Included by the kernel
// sources, so it is compiled into each instruction-set copy (cpu_isa.h), in that copy's
// namespace (the bodies differ: one definition per namespace): the AVX-512 copy moves 16x16
// tiles through registers (floats; 16-bit elements, bfloat16 or float16; and either of those
// to float and back), then 8x8 float tiles for rows left over, as the AVX2 copy does, where a
// plain loop reads one strided element at a time.
#pragma once

#include <cstdint>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "cpu_isa.h"
#include "scalar_cast.h"
#include "vec16.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace pyface::PYFACE_CPU_NS {

#if defined(__AVX512F__)
// r[i] holds row i of a 16x16 float tile; afterwards r[j] holds column j. Four rounds of
// shuffles, each pairing registers at twice the distance of the last (64 shuffles in all).
inline void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane: elements 2k, 2k+1 of rows i, i+1 interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + m], lane k: column 4k + m of rows i .. i+3
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  for (int m = 0; m < 4; ++m) {  // lanes of rows 0-3 with 4-7 and of 8-11 with 12-15: even, then odd lanes
    t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
    t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
    t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
    t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
  }
  for (int m = 0; m < 4; ++m) {  // column 4k + m gathers lane k of the four row groups
    r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xDD);
    r[4 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xDD);
  }
}
#endif

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

#if defined(__AVX512F__)
// dst[j * dst_stride + i] = src[i * src_stride + j] for a 16x16 tile whose lanes are floats in
// registers: float to float, or bfloat16/float16 to float and back, converted on the way as
// load16 and store16 convert (vec16.h; store16 rounds as to_scalar does). The plain loops the
// converting tiles replace took most of keypoint_warp's bfloat16 time on the FOMM feature.
template <typename S, typename D>
inline void transpose_tile_16x16(const S* src, int64_t src_stride, D* dst, int64_t dst_stride) {
  __m512 r[16];
  for (int k = 0; k < 16; ++k) r[k] = load16(src + k * src_stride);
  transpose_16x16(r);
  for (int k = 0; k < 16; ++k) store16(dst + k * dst_stride, r[k]);
}

// The same between two tensors of one 16-bit type: each element widened to a 32-bit lane,
// moved by the float transpose (shuffles only) and narrowed back, so every bit is kept (a
// NaN's payload too, which store16 would make the canonical NaN). The plain loop it replaces
// took about a fifth of GLAMOR-Net's bfloat16 attention (perf, on an AVX-512 EPYC).
template <typename T>
inline void transpose_tile_16x16_16bit(const T* src, int64_t src_stride, T* dst, int64_t dst_stride) {
  static_assert(sizeof(T) == 2);
  __m512 r[16];
  for (int k = 0; k < 16; ++k) {
    const __m256i row = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k * src_stride));
    r[k] = _mm512_castsi512_ps(_mm512_cvtepu16_epi32(row));
  }
  transpose_16x16(r);
  for (int k = 0; k < 16; ++k) {
    const __m256i column = _mm512_cvtepi32_epi16(_mm512_castps_si512(r[k]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k * dst_stride), column);
  }
}
#endif

template <typename T>
constexpr bool kIsHalfFloat = std::is_same_v<T, c10::BFloat16> || std::is_same_v<T, c10::Half>;

// v as a D: the same bits for the same type (a NaN keeps its payload), else to_scalar.
template <typename D, typename S>
inline D converted(S v) {
  if constexpr (std::is_same_v<S, D>) return v;
  else return to_scalar<D>(v);
}

// Transposes whole bands of N rows from row i0 on, N x N tiles by `tile` and the columns past
// the last whole tile one element at a time; returns the first row it left.
template <int N, typename S, typename D, typename Tile>
int64_t transpose_rows_in_tiles(const S* src, int64_t src_stride, D* dst, int64_t dst_stride, int64_t rows,
                                int64_t cols, int64_t i0, Tile tile) {
  for (; i0 + N <= rows; i0 += N) {
    int64_t j = 0;
    for (; j + N <= cols; j += N) tile(src + i0 * src_stride + j, src_stride, dst + j * dst_stride + i0, dst_stride);
    for (; j < cols; ++j)
      for (int64_t i = i0; i < i0 + N; ++i) dst[j * dst_stride + i] = converted<D>(src[i * src_stride + j]);
  }
  return i0;
}

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols, converted to D.
template <typename S, typename D>
void transpose_block(const S* src, int64_t src_stride, D* dst, int64_t dst_stride, int64_t rows, int64_t cols) {
  int64_t i0 = 0;
  constexpr bool kSameFloat = std::is_same_v<S, D> && std::is_same_v<S, float>;
#if defined(__AVX512F__)
  // float lanes: float to float, a 16-bit float type to float, float to a 16-bit float type
  constexpr bool kFloatLanes = kSameFloat || (kIsHalfFloat<S> && std::is_same_v<D, float>) ||
                               (std::is_same_v<S, float> && kIsHalfFloat<D>);
  if constexpr (kFloatLanes)
    i0 = transpose_rows_in_tiles<16>(src, src_stride, dst, dst_stride, rows, cols, i0, transpose_tile_16x16<S, D>);
  if constexpr (std::is_same_v<S, D> && sizeof(S) == 2)
    i0 = transpose_rows_in_tiles<16>(src, src_stride, dst, dst_stride, rows, cols, i0, transpose_tile_16x16_16bit<S>);
#endif
#if defined(__AVX2__)
  if constexpr (kSameFloat)
    i0 = transpose_rows_in_tiles<8>(src, src_stride, dst, dst_stride, rows, cols, i0, transpose_tile_8x8);
#endif
  for (int64_t j = 0; j < cols; ++j)  // rows left over (all of them without the tiles)
    for (int64_t i = i0; i < rows; ++i) dst[j * dst_stride + i] = converted<D>(src[i * src_stride + j]);
}

}  // namespace pyface::PYFACE_CPU_NS
