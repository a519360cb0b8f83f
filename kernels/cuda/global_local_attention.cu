// CUDA kernels of the Global-Local Attention score net. Forward: a thread per cell walks
// the hidden units (reads of the projection are coalesced over cells). Backward: a warp
// per (sample, hidden unit) row of cells writes d/d projection and reduces the row's
// per-sample sums in registers, so no atomics and a fixed summation order.
#include "global_local_attention/global_local_attention.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "reduce.cuh"

namespace pyface::gla {
namespace {

using pyface::cuda::warp_reduce;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kCellThreads = 128;  // forward: cells per block

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename scalar_t, typename acc_t, bool kBatchNorm>
__global__ void __launch_bounds__(kCellThreads)
scores_kernel(const scalar_t* projection, const scalar_t* face_term, const scalar_t* w2, const scalar_t* scale,
              const scalar_t* shift, acc_t* scores, int64_t Hd, int64_t P, int64_t p_blocks) {
  const int64_t n = blockIdx.x / p_blocks;
  const int64_t p = (blockIdx.x % p_blocks) * kCellThreads + threadIdx.x;
  if (p >= P) return;
  acc_t score = 0;
  for (int64_t h = 0; h < Hd; ++h) {
    acc_t hidden = max(acc_t(projection[(n * Hd + h) * P + p]) + acc_t(face_term[n * Hd + h]), acc_t(0));
    if constexpr (kBatchNorm) hidden = max(acc_t(scale[h]) * hidden + acc_t(shift[h]), acc_t(0));
    score += acc_t(w2[h]) * hidden;
  }
  scores[n * P + p] = score;
}

template <typename scalar_t, typename acc_t, bool kBatchNorm>
__global__ void __launch_bounds__(kThreads)
scores_backward_kernel(ScoreNet net, const acc_t* grad_scores, ScoreNetGrads grads) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);  // n * Hd + h
  if (row >= net.N * net.Hd) return;
  const int lane = threadIdx.x & 31;
  const int64_t n = row / net.Hd, h = row % net.Hd, P = net.P;
  const acc_t face_term = acc_t(static_cast<const scalar_t*>(net.face_term)[row]);
  const acc_t w2 = acc_t(static_cast<const scalar_t*>(net.w2)[h]);
  acc_t scale = 1, shift = 0;
  if constexpr (kBatchNorm) {
    scale = acc_t(static_cast<const scalar_t*>(net.hidden_scale)[h]);
    shift = acc_t(static_cast<const scalar_t*>(net.hidden_shift)[h]);
  }
  const scalar_t* z = static_cast<const scalar_t*>(net.projection) + row * P;
  const acc_t* ds = grad_scores + n * P;
  scalar_t* out = static_cast<scalar_t*>(grads.grad_projection) + (h * net.N + n) * P;  // hidden-major
  acc_t sum_pre = 0, sum_w2 = 0, sum_scale = 0, sum_shift = 0;
  for (int64_t p = lane; p < P; p += 32) {
    const acc_t pre = acc_t(z[p]) + face_term;
    const acc_t hidden1 = max(pre, acc_t(0));
    acc_t grad_hidden1 = ds[p] * w2;
    if constexpr (kBatchNorm) {
      const acc_t pre2 = scale * hidden1 + shift;
      sum_w2 += ds[p] * max(pre2, acc_t(0));
      const acc_t grad_pre2 = pre2 > acc_t(0) ? grad_hidden1 : acc_t(0);
      sum_scale += grad_pre2 * hidden1;
      sum_shift += grad_pre2;
      grad_hidden1 = grad_pre2 * scale;
    } else {
      sum_w2 += ds[p] * hidden1;
    }
    const acc_t grad_pre = pre > acc_t(0) ? grad_hidden1 : acc_t(0);
    out[p] = scalar_t(grad_pre);
    sum_pre += grad_pre;
  }
  sum_pre = warp_reduce(sum_pre);
  sum_w2 = warp_reduce(sum_w2);
  if constexpr (kBatchNorm) {
    sum_scale = warp_reduce(sum_scale);
    sum_shift = warp_reduce(sum_shift);
  }
  if (lane != 0) return;
  static_cast<acc_t*>(grads.grad_face_term)[row] = sum_pre;
  static_cast<acc_t*>(grads.grad_w2)[row] = sum_w2;
  if constexpr (kBatchNorm) {
    static_cast<acc_t*>(grads.grad_hidden_scale)[row] = sum_scale;
    static_cast<acc_t*>(grads.grad_hidden_shift)[row] = sum_shift;
  }
}

}  // namespace

void scores_cuda(const ScoreNet& net, void* scores, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t p_blocks = ceil_div(net.P, kCellThreads);
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* z = static_cast<const scalar_t*>(net.projection);
    const auto* f = static_cast<const scalar_t*>(net.face_term);
    const auto* w2 = static_cast<const scalar_t*>(net.w2);
    const auto* scale = static_cast<const scalar_t*>(net.hidden_scale);
    const auto* shift = static_cast<const scalar_t*>(net.hidden_shift);
    auto* out = static_cast<acc_t*>(scores);
    if (scale != nullptr)
      scores_kernel<scalar_t, acc_t, true><<<net.N * p_blocks, kCellThreads, 0, stream>>>(z, f, w2, scale, shift, out,
                                                                                         net.Hd, net.P, p_blocks);
    else
      scores_kernel<scalar_t, acc_t, false><<<net.N * p_blocks, kCellThreads, 0, stream>>>(z, f, w2, scale, shift, out,
                                                                                          net.Hd, net.P, p_blocks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void scores_backward_cuda(const ScoreNet& net, const void* grad_scores, const ScoreNetGrads& grads, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t blocks = ceil_div(net.N * net.Hd, kWarps);
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* ds = static_cast<const acc_t*>(grad_scores);
    if (net.hidden_scale != nullptr)
      scores_backward_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, stream>>>(net, ds, grads);
    else
      scores_backward_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, stream>>>(net, ds, grads);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace pyface::gla
