// CPU kernels of the Global-Local Attention score net: per sample, the hidden activations
// of every cell are formed from the two halves of the first layer, scored, and (backward)
// differentiated in one pass over the projection, hidden unit by hidden unit so the inner
// loop runs over contiguous cells.
#include "global_local_attention/global_local_attention.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace pyface::gla {
namespace {

template <typename acc_t>
struct Params {  // one hidden unit's parameters, in the accumulation type
  acc_t face_term, w2, scale, shift;
};

template <typename scalar_t, typename acc_t>
Params<acc_t> params_of(const ScoreNet& net, int64_t n, int64_t h) {
  const auto* face_term = static_cast<const scalar_t*>(net.face_term);
  const auto* w2 = static_cast<const scalar_t*>(net.w2);
  const bool bn = net.hidden_scale != nullptr;
  return {acc_t(face_term[n * net.Hd + h]), acc_t(w2[h]),
          bn ? acc_t(static_cast<const scalar_t*>(net.hidden_scale)[h]) : acc_t(1),
          bn ? acc_t(static_cast<const scalar_t*>(net.hidden_shift)[h]) : acc_t(0)};
}

template <typename scalar_t, typename acc_t, bool kBatchNorm>
void scores_rows(const ScoreNet& net, acc_t* scores) {
  const auto* projection = static_cast<const scalar_t*>(net.projection);
  at::parallel_for(0, net.N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      acc_t* s = scores + n * net.P;
      std::fill(s, s + net.P, acc_t(0));
      for (int64_t h = 0; h < net.Hd; ++h) {
        const auto q = params_of<scalar_t, acc_t>(net, n, h);
        const scalar_t* row = projection + (n * net.Hd + h) * net.P;
#pragma omp simd
        for (int64_t p = 0; p < net.P; ++p) {
          acc_t hidden = std::max(acc_t(row[p]) + q.face_term, acc_t(0));
          if constexpr (kBatchNorm) hidden = std::max(q.scale * hidden + q.shift, acc_t(0));
          s[p] += q.w2 * hidden;
        }
      }
    }
  });
}

template <typename scalar_t, typename acc_t, bool kBatchNorm>
void scores_backward_rows(const ScoreNet& net, const acc_t* grad_scores, const ScoreNetGrads& grads) {
  const auto* projection = static_cast<const scalar_t*>(net.projection);
  auto* grad_projection = static_cast<scalar_t*>(grads.grad_projection);
  auto* grad_face_term = static_cast<acc_t*>(grads.grad_face_term);
  auto* grad_w2 = static_cast<acc_t*>(grads.grad_w2);
  auto* grad_scale = static_cast<acc_t*>(grads.grad_hidden_scale);
  auto* grad_shift = static_cast<acc_t*>(grads.grad_hidden_shift);
  // tasks are (sample, hidden unit) rows, so a batch of one still spreads over the threads
  at::parallel_for(0, net.N * net.Hd, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row_index = begin; row_index < end; ++row_index) {
      const int64_t n = row_index / net.Hd, h = row_index % net.Hd;
      const auto q = params_of<scalar_t, acc_t>(net, n, h);
      const scalar_t* row = projection + row_index * net.P;
      const acc_t* ds = grad_scores + n * net.P;
      scalar_t* out = grad_projection + (h * net.N + n) * net.P;
      acc_t sum_pre = 0, sum_w2 = 0, sum_scale = 0, sum_shift = 0;
#pragma omp simd reduction(+ : sum_pre, sum_w2, sum_scale, sum_shift)
      for (int64_t p = 0; p < net.P; ++p) {
        const acc_t pre = acc_t(row[p]) + q.face_term;
        const acc_t hidden1 = std::max(pre, acc_t(0));
        acc_t grad_hidden1 = ds[p] * q.w2;  // d score / d (last hidden) = w2
        if constexpr (kBatchNorm) {
          const acc_t pre2 = q.scale * hidden1 + q.shift;
          sum_w2 += ds[p] * std::max(pre2, acc_t(0));
          const acc_t grad_pre2 = pre2 > acc_t(0) ? grad_hidden1 : acc_t(0);
          sum_scale += grad_pre2 * hidden1;
          sum_shift += grad_pre2;
          grad_hidden1 = grad_pre2 * q.scale;
        } else {
          sum_w2 += ds[p] * hidden1;
        }
        const acc_t grad_pre = pre > acc_t(0) ? grad_hidden1 : acc_t(0);
        out[p] = scalar_t(grad_pre);
        sum_pre += grad_pre;
      }
      grad_face_term[row_index] = sum_pre;
      grad_w2[row_index] = sum_w2;
      if constexpr (kBatchNorm) {
        grad_scale[row_index] = sum_scale;
        grad_shift[row_index] = sum_shift;
      }
    }
  });
}

}  // namespace

void scores_cpu(const ScoreNet& net, void* scores) {
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    if (net.hidden_scale != nullptr)
      scores_rows<scalar_t, acc_t, true>(net, static_cast<acc_t*>(scores));
    else
      scores_rows<scalar_t, acc_t, false>(net, static_cast<acc_t*>(scores));
  });
}

void scores_backward_cpu(const ScoreNet& net, const void* grad_scores, const ScoreNetGrads& grads) {
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* ds = static_cast<const acc_t*>(grad_scores);
    if (net.hidden_scale != nullptr)
      scores_backward_rows<scalar_t, acc_t, true>(net, ds, grads);
    else
      scores_backward_rows<scalar_t, acc_t, false>(net, ds, grads);
  });
}

}  // namespace pyface::gla
