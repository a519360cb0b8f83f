// CPU kernels of spatial softmax attention pooling: a per-row softmax, the attention-weighted
// sum over positions, and its backward, which reads the values once to produce both the
// values gradient and the score gradient.
#include "softmax_pool/softmax_pool.h"

#include "cpu_isa.h"
#include "scalar_cast.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace pyface::spool::PYFACE_CPU_NS {
namespace {

// Channels per pooling work item: enough work per task, and the task count still grows with C.
constexpr int64_t kChannelBlock = 64;

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
      } else {  // rows of P positions per channel: dot products, four rows per pass over a
        int64_t j = 0;
        for (; j + 4 <= width; j += 4) {
          const scalar_t* row = sample + (c0 + j) * v.P;
          const scalar_t *r1 = row + v.P, *r2 = r1 + v.P, *r3 = r2 + v.P;
          acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
          for (int64_t p = 0; p < v.P; ++p) {
            d0 += a[p] * acc_t(row[p]);
            d1 += a[p] * acc_t(r1[p]);
            d2 += a[p] * acc_t(r2[p]);
            d3 += a[p] * acc_t(r3[p]);
          }
          sums[j] = d0, sums[j + 1] = d1, sums[j + 2] = d2, sums[j + 3] = d3;
        }
        for (; j < width; ++j) {
          const scalar_t* row = sample + (c0 + j) * v.P;
          acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t p = 0; p < v.P; ++p) dot += a[p] * acc_t(row[p]);
          sums[j] = dot;
        }
      }
      for (int64_t j = 0; j < width; ++j) pooled[n * v.C + c0 + j] = to_scalar<scalar_t>(sums[j]);
    }
  });
}

// One task per sample: the score gradient needs a sum over every channel of the sample.
// d loss / d attention, g, is accumulated in double: the score gradient a * (g - sum a g)
// subtracts numbers that agree in most of their leading digits (g sums over all channels),
// and a float g would lose much of the difference to rounding.
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
          double dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < v.C; ++c) dot += double(gp[c]) * double(row[c]);
          g[p] = dot;
          if (grad_sample != nullptr) {
            scalar_t* out = grad_sample + p * v.C;
            const acc_t ap = a[p];
#pragma omp simd
            for (int64_t c = 0; c < v.C; ++c) out[c] = to_scalar<scalar_t>(gp[c] * ap);
          }
        }
      } else {
        std::fill(g.begin(), g.end(), 0.0);
        double* sums = g.data();
        for (int64_t c = 0; c < v.C; ++c) {
          const scalar_t* row = sample + c * v.P;
          const acc_t gc = gp[c];
#pragma omp simd
          for (int64_t p = 0; p < v.P; ++p) sums[p] += double(gc) * double(row[p]);
          if (grad_sample != nullptr) {
            scalar_t* out = grad_sample + c * v.P;
#pragma omp simd
            for (int64_t p = 0; p < v.P; ++p) out[p] = to_scalar<scalar_t>(gc * a[p]);
          }
        }
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
