// CPU kernels of spatial softmax attention pooling: a per-row softmax, the attention-weighted
// sum over positions, and its backward, which reads the values once to produce both the
// values gradient and the score gradient.
#include "softmax_pool/softmax_pool.h"

#include "cpu_isa.h"
#include "prefetch.h"
#include "scalar_cast.h"
#include "vec16.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace pyface::spool::PYFACE_CPU_NS {
namespace {

// Channels per pooling work item: enough work per task, and the task count still grows with C.
constexpr int64_t kChannelBlock = 64;

#if defined(__AVX512F__)
// Rows of P positions (channels-first values) in float, sixteen positions a vector (vec16.h);
// the last vector of a row is masked, so a row is read without touching its neighbour or the
// end of the tensor. GCC's own vectors for these short rows (CLIP's P = 49) summed each dot
// product one lane at a time through the stack and accumulated the score gradient in double:
// CLIP-size bfloat16 (41 x 2048 x 49) with the data in cache, forward 0.43-0.69 -> 0.20-0.23 ms
// and backward 0.89-1.6 -> 0.45-0.80 ms, the two builds run in turns on an AVX-512 EPYC.

// A row of P <= 16 * K positions is K vectors, the last one masked to `last`.
template <int K>
constexpr __mmask16 lanes_of(int k, __mmask16 last) {
  return k == K - 1 ? last : kAllLanes;
}

// channels_first_dots (below) for rows of at most 16 * K positions, the attention in registers.
template <int K, typename scalar_t>
void dots_of_short_rows(const scalar_t* rows, const float* a, int64_t P, int64_t width, float* sums) {
  const __mmask16 last = first_lanes(P - 16 * (K - 1));
  __m512 av[K];
  for (int k = 0; k < K; ++k) av[k] = _mm512_maskz_loadu_ps(lanes_of<K>(k, last), a + 16 * k);
  for (int64_t j = 0; j < width; ++j) {
    const scalar_t* row = rows + j * P;
    prefetch_ahead(row, P * sizeof(scalar_t));
    __m512 acc = _mm512_mul_ps(load16(row, lanes_of<K>(0, last)), av[0]);
    for (int k = 1; k < K; ++k) acc = _mm512_fmadd_ps(load16(row + 16 * k, lanes_of<K>(k, last)), av[k], acc);
    sums[j] = _mm512_reduce_add_ps(acc);
  }
}

// channels_first_dots (below) for rows of any length.
template <typename scalar_t>
void dots_of_rows(const scalar_t* rows, const float* a, int64_t P, int64_t width, float* sums) {
  for (int64_t j = 0; j < width; ++j) {
    const scalar_t* row = rows + j * P;
    prefetch_ahead(row, P * sizeof(scalar_t));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t p = 0; p < P; p += 16) {
      const __mmask16 m = first_lanes(P - p);
      acc = _mm512_fmadd_ps(load16(row + p, m), _mm512_maskz_loadu_ps(m, a + p), acc);
    }
    sums[j] = _mm512_reduce_add_ps(acc);
  }
}

template <typename scalar_t>
void dots_avx512(const scalar_t* rows, const float* a, int64_t P, int64_t width, float* sums) {
  switch ((P + 15) / 16) {
    case 1: return dots_of_short_rows<1>(rows, a, P, width, sums);
    case 2: return dots_of_short_rows<2>(rows, a, P, width, sums);
    case 3: return dots_of_short_rows<3>(rows, a, P, width, sums);
    case 4: return dots_of_short_rows<4>(rows, a, P, width, sums);
    default: return dots_of_rows(rows, a, P, width, sums);
  }
}

// channels_first_backward (below) in float vectors: sums over blocks of kChannelBlock channels,
// each block's added to g in double (the shift keeps the float sums to the size of the
// differences). Rows of at most 16 * K positions keep the sums and the attention in registers.
template <int K, typename scalar_t>
void backward_of_short_rows(const scalar_t* rows, const float* a, const float* gp, int64_t C, int64_t P, double* g,
                            scalar_t* grad_rows) {
  const __mmask16 last = first_lanes(P - 16 * (K - 1));
  __m512 av[K];
  for (int k = 0; k < K; ++k) av[k] = _mm512_maskz_loadu_ps(lanes_of<K>(k, last), a + 16 * k);
  alignas(64) float block[16 * K];
  for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
    __m512 acc[K];
    for (int k = 0; k < K; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t c = c0; c < std::min(C, c0 + kChannelBlock); ++c) {
      const scalar_t* row = rows + c * P;
      prefetch_ahead(row, P * sizeof(scalar_t));
      const __m512 gc = _mm512_set1_ps(gp[c]), first = _mm512_set1_ps(float(row[0]));
      for (int k = 0; k < K; ++k)
        acc[k] = _mm512_fmadd_ps(gc, _mm512_sub_ps(load16(row + 16 * k, lanes_of<K>(k, last)), first), acc[k]);
      if (grad_rows != nullptr)
        for (int k = 0; k < K; ++k) store16(grad_rows + c * P + 16 * k, _mm512_mul_ps(gc, av[k]), lanes_of<K>(k, last));
    }
    for (int k = 0; k < K; ++k) _mm512_store_ps(block + 16 * k, acc[k]);
    for (int64_t p = 0; p < P; ++p) g[p] += block[p];
  }
}

// The same for rows of any length, the sums in `block` (L1).
template <typename scalar_t>
void backward_of_rows(const scalar_t* rows, const float* a, const float* gp, int64_t C, int64_t P, double* g,
                      scalar_t* grad_rows) {
  std::vector<float> block((P + 15) / 16 * 16);
  for (int64_t c0 = 0; c0 < C; c0 += kChannelBlock) {
    std::fill(block.begin(), block.end(), 0.0f);
    for (int64_t c = c0; c < std::min(C, c0 + kChannelBlock); ++c) {
      const scalar_t* row = rows + c * P;
      prefetch_ahead(row, P * sizeof(scalar_t));
      const __m512 gc = _mm512_set1_ps(gp[c]), first = _mm512_set1_ps(float(row[0]));
      for (int64_t p = 0; p < P; p += 16) {
        const __mmask16 m = first_lanes(P - p);
        const __m512 shifted = _mm512_sub_ps(load16(row + p, m), first);
        _mm512_storeu_ps(&block[p], _mm512_fmadd_ps(gc, shifted, _mm512_loadu_ps(&block[p])));
        if (grad_rows != nullptr) store16(grad_rows + c * P + p, _mm512_mul_ps(gc, _mm512_maskz_loadu_ps(m, a + p)), m);
      }
    }
    for (int64_t p = 0; p < P; ++p) g[p] += block[p];
  }
}

template <typename scalar_t>
void backward_avx512(const scalar_t* rows, const float* a, const float* gp, int64_t C, int64_t P, double* g,
                     scalar_t* grad_rows) {
  switch ((P + 15) / 16) {
    case 1: return backward_of_short_rows<1>(rows, a, gp, C, P, g, grad_rows);
    case 2: return backward_of_short_rows<2>(rows, a, gp, C, P, g, grad_rows);
    case 3: return backward_of_short_rows<3>(rows, a, gp, C, P, g, grad_rows);
    case 4: return backward_of_short_rows<4>(rows, a, gp, C, P, g, grad_rows);
    default: return backward_of_rows(rows, a, gp, C, P, g, grad_rows);
  }
}
#endif

template <typename scalar_t, typename acc_t>
void softmax_rows(const scalar_t* scores, acc_t* attention, int64_t N, int64_t P) {
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const scalar_t* s = scores + n * P;
      acc_t* a = attention + n * P;
      acc_t high = -std::numeric_limits<acc_t>::infinity();
      for (int64_t p = 0; p < P; ++p) high = std::max(high, acc_t(s[p]));
      double total = 0;  // a running float sum over P terms would be off by ~sqrt(P) ulps
      for (int64_t p = 0; p < P; ++p) {
        a[p] = std::exp(acc_t(s[p]) - high);
        total += a[p];
      }
      const acc_t inv_total = acc_t(1.0 / total);
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) a[p] *= inv_total;
    }
  });
}

// sums[j] = sum_p a[p] * rows[j * P + p] for j < width: dot products, four rows per pass over a
// (one at a time, in float vectors, in the AVX-512 copy).
template <typename scalar_t, typename acc_t>
void channels_first_dots(const scalar_t* rows, const acc_t* a, int64_t P, int64_t width, acc_t* sums) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<acc_t, float>) return dots_avx512(rows, a, P, width, sums);
#endif
  int64_t j = 0;
  for (; j + 4 <= width; j += 4) {
    const scalar_t* row = rows + j * P;
    const scalar_t *r1 = row + P, *r2 = r1 + P, *r3 = r2 + P;
    acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
    for (int64_t p = 0; p < P; ++p) {
      d0 += a[p] * acc_t(row[p]);
      d1 += a[p] * acc_t(r1[p]);
      d2 += a[p] * acc_t(r2[p]);
      d3 += a[p] * acc_t(r3[p]);
    }
    sums[j] = d0, sums[j + 1] = d1, sums[j + 2] = d2, sums[j + 3] = d3;
  }
  for (; j < width; ++j) {
    const scalar_t* row = rows + j * P;
    acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t p = 0; p < P; ++p) dot += a[p] * acc_t(row[p]);
    sums[j] = dot;
  }
}

template <typename scalar_t, typename acc_t>
void pool_rows(const Values& v, const acc_t* attention, scalar_t* pooled) {
  const auto* values = static_cast<const scalar_t*>(v.data);
  const int64_t blocks = (v.C + kChannelBlock - 1) / kChannelBlock;
  at::parallel_for(0, v.N * blocks, 1, [&](int64_t begin, int64_t end) {
    acc_t sums[kChannelBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock;
      const int64_t width = std::min(kChannelBlock, v.C - c0);
      const acc_t* a = attention + n * v.P;
      const scalar_t* sample = values + n * v.C * v.P;
      if (v.channels_last) {  // rows of C channels per position: accumulate across positions
        std::fill(sums, sums + width, acc_t(0));
        for (int64_t p = 0; p < v.P; ++p) {
          const scalar_t* row = sample + p * v.C + c0;
          const acc_t ap = a[p];
#pragma omp simd
          for (int64_t j = 0; j < width; ++j) sums[j] += ap * acc_t(row[j]);
        }
      } else {  // rows of P positions per channel
        channels_first_dots(sample + c0 * v.P, a, v.P, width, sums);
      }
      for (int64_t j = 0; j < width; ++j) pooled[n * v.C + c0 + j] = to_scalar<scalar_t>(sums[j]);
    }
  });
}

// One channels-first sample: g[p] = sum_c gp[c] * (rows[c, p] - rows[c, 0]), and grad_rows[c, p]
// = gp[c] * a[p] unless grad_rows is null. The score gradient a * (g - sum a g) keeps only
// how g varies over p, so every row is shifted by its first value: a large value common to a
// channel's positions would otherwise dominate g, and the rounding of the attention (its sum is
// 1 only to float precision) times that value left the CPU and Triton score gradients 0.2-1%
// off at values of about 500 (test_softmax_pool). g is summed in double here, in float vectors
// over blocks of channels in the AVX-512 copy.
template <typename scalar_t, typename acc_t>
void channels_first_backward(const scalar_t* rows, const acc_t* a, const acc_t* gp, int64_t C, int64_t P, double* g,
                             scalar_t* grad_rows) {
  std::fill(g, g + P, 0.0);
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<acc_t, float>) return backward_avx512(rows, a, gp, C, P, g, grad_rows);
#endif
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* row = rows + c * P;
    const acc_t gc = gp[c];
    const double first = double(row[0]);
#pragma omp simd
    for (int64_t p = 0; p < P; ++p) g[p] += double(gc) * (double(row[p]) - first);
    if (grad_rows != nullptr) {
      scalar_t* out = grad_rows + c * P;
#pragma omp simd
      for (int64_t p = 0; p < P; ++p) out[p] = to_scalar<scalar_t>(gc * a[p]);
    }
  }
}

// One task per sample: the score gradient needs a sum over every channel of the sample.
// d loss / d attention, g, is summed shifted by the values at the first position
// (channels_first_backward).
template <typename scalar_t, typename acc_t>
void pool_backward_rows(const Values& v, const acc_t* attention, const scalar_t* grad_pooled,
                        const acc_t* grad_attention, acc_t* grad_scores, scalar_t* grad_values) {
  const auto* values = static_cast<const scalar_t*>(v.data);
  at::parallel_for(0, v.N, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> gp(v.C);
    std::vector<double> g(v.P);
    for (int64_t n = begin; n < end; ++n) {
      const acc_t* a = attention + n * v.P;
      const scalar_t* sample = values + n * v.C * v.P;
      scalar_t* grad_sample = grad_values == nullptr ? nullptr : grad_values + n * v.C * v.P;
      for (int64_t c = 0; c < v.C; ++c) gp[c] = acc_t(grad_pooled[n * v.C + c]);
      if (v.channels_last) {
        for (int64_t p = 0; p < v.P; ++p) {
          const scalar_t* row = sample + p * v.C;
          double dot = 0;  // shifted by the values at the first position (channels_first_backward)
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < v.C; ++c) dot += double(gp[c]) * (double(row[c]) - double(sample[c]));
          g[p] = dot;
          if (grad_sample != nullptr) {
            scalar_t* out = grad_sample + p * v.C;
            const acc_t ap = a[p];
#pragma omp simd
            for (int64_t c = 0; c < v.C; ++c) out[c] = to_scalar<scalar_t>(gp[c] * ap);
          }
        }
      } else {
        channels_first_backward(sample, a, gp.data(), v.C, v.P, g.data(), grad_sample);
      }
      if (grad_attention != nullptr)
        for (int64_t p = 0; p < v.P; ++p) g[p] += grad_attention[n * v.P + p];
      // softmax backward: d score_p = a_p * (g_p - sum_q a_q g_q)
      double mean_g = 0;
      for (int64_t p = 0; p < v.P; ++p) mean_g += double(a[p]) * g[p];
      for (int64_t p = 0; p < v.P; ++p) grad_scores[n * v.P + p] = acc_t(double(a[p]) * (g[p] - mean_g));
    }
  });
}

}  // namespace

void softmax_cpu(ScalarKind scores_kind, const void* scores, void* attention, int64_t N, int64_t P) {
  dispatch_scalar(scores_kind, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    softmax_rows(static_cast<const scalar_t*>(scores), static_cast<acc_t*>(attention), N, P);
  });
}

void pool_cpu(const Values& v, const void* attention, void* pooled) {
  dispatch_scalar(v.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    pool_rows(v, static_cast<const acc_t*>(attention), static_cast<scalar_t*>(pooled));
  });
}

void pool_backward_cpu(const Values& v, const void* attention, const void* grad_pooled,
                       const void* grad_attention, void* grad_scores, void* grad_values) {
  dispatch_scalar(v.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    pool_backward_rows(v, static_cast<const acc_t*>(attention), static_cast<const scalar_t*>(grad_pooled),
                       static_cast<const acc_t*>(grad_attention), static_cast<acc_t*>(grad_scores),
                       static_cast<scalar_t*>(grad_values));
  });
}

}  // namespace pyface::spool::PYFACE_CPU_NS
