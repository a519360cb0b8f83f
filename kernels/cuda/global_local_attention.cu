// CUDA kernels of the Global-Local Attention score net on the cell-major projection
// (N, P, Hd). Forward: a warp per cell, lanes over the hidden units, one warp sum per score.
// Backward: a block per (sample, 32 hidden units); its warps split the cells, each lane
// keeps the sums of its unit in registers, and the warps' sums are added in a fixed order
// (no atomics). Writes of d/d projection are 32 consecutive units per warp.
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

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// torch.relu and its backward: NaN passes through (max() would drop it), and the gradient
// is 0 where the unit is <= 0, else passed as it is
template <typename acc_t>
__device__ __forceinline__ acc_t relu(acc_t x) {
  return x <= acc_t(0) ? acc_t(0) : x;
}
template <typename acc_t>
__device__ __forceinline__ acc_t relu_grad(acc_t pre, acc_t grad) {
  return pre <= acc_t(0) ? acc_t(0) : grad;
}

template <typename scalar_t, typename acc_t, bool kBatchNorm>
__global__ void __launch_bounds__(kThreads) scores_kernel(ScoreNet net, acc_t* scores) {
  const int64_t cell = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);  // n * P + p
  if (cell >= net.N * net.P) return;  // the whole warp leaves; nothing below synchronises the block
  const int lane = threadIdx.x & 31;
  const int64_t n = cell / net.P;
  const auto* z = static_cast<const scalar_t*>(net.projection) + cell * net.Hd;
  const auto* f = static_cast<const scalar_t*>(net.face_term) + n * net.Hd;
  const auto* w2 = static_cast<const scalar_t*>(net.w2);
  acc_t score = 0;
  for (int64_t h = lane; h < net.Hd; h += 32) {
    acc_t hidden = relu(acc_t(z[h]) + acc_t(f[h]));
    if constexpr (kBatchNorm)
      hidden = relu(acc_t(static_cast<const scalar_t*>(net.hidden_scale)[h]) * hidden +
                    acc_t(static_cast<const scalar_t*>(net.hidden_shift)[h]));
    score += acc_t(w2[h]) * hidden;
  }
  score = warp_reduce(score);
  if (lane == 0) scores[cell] = score;
}

template <typename scalar_t, typename acc_t, bool kBatchNorm>
__global__ void __launch_bounds__(kThreads)
scores_backward_kernel(ScoreNet net, const acc_t* grad_scores, ScoreNetGrads grads, int64_t h_blocks) {
  constexpr int kSums = 4;  // face term, w2, scale, shift
  __shared__ acc_t warp_sums[kSums][kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n = blockIdx.x / h_blocks;
  const int64_t h = (blockIdx.x % h_blocks) * 32 + lane;
  const bool active = h < net.Hd;
  acc_t face_term = 0, w2 = 0, scale = 1, shift = 0;
  if (active) {
    face_term = acc_t(static_cast<const scalar_t*>(net.face_term)[n * net.Hd + h]);
    w2 = acc_t(static_cast<const scalar_t*>(net.w2)[h]);
    if constexpr (kBatchNorm) {
      scale = acc_t(static_cast<const scalar_t*>(net.hidden_scale)[h]);
      shift = acc_t(static_cast<const scalar_t*>(net.hidden_shift)[h]);
    }
  }
  acc_t sums[kSums] = {0, 0, 0, 0};  // d/d face term, w2, scale, shift of unit h
  for (int64_t p = warp; active && p < net.P; p += kWarps) {
    const int64_t at = (n * net.P + p) * net.Hd + h;
    const acc_t ds = grad_scores[n * net.P + p];
    const acc_t pre = acc_t(static_cast<const scalar_t*>(net.projection)[at]) + face_term;
    const acc_t hidden1 = relu(pre);
    acc_t grad_hidden1 = ds * w2;
    if constexpr (kBatchNorm) {
      const acc_t pre2 = scale * hidden1 + shift;
      sums[1] += ds * relu(pre2);
      const acc_t grad_pre2 = relu_grad(pre2, grad_hidden1);
      sums[2] += grad_pre2 * hidden1;
      sums[3] += grad_pre2;
      grad_hidden1 = grad_pre2 * scale;
    } else {
      sums[1] += ds * hidden1;
    }
    const acc_t grad_pre = relu_grad(pre, grad_hidden1);
    static_cast<scalar_t*>(grads.grad_projection)[at] = scalar_t(grad_pre);
    sums[0] += grad_pre;
  }
  for (int k = 0; k < kSums; ++k) warp_sums[k][warp][lane] = sums[k];
  __syncthreads();
  if (warp != 0 || !active) return;
  for (int k = 0; k < kSums; ++k)
    for (int w = 1; w < kWarps; ++w) sums[k] += warp_sums[k][w][lane];
  const int64_t row = n * net.Hd + h;
  static_cast<acc_t*>(grads.grad_face_term)[row] = sums[0];
  static_cast<acc_t*>(grads.grad_w2)[row] = sums[1];
  if constexpr (kBatchNorm) {
    static_cast<acc_t*>(grads.grad_hidden_scale)[row] = sums[2];
    static_cast<acc_t*>(grads.grad_hidden_shift)[row] = sums[3];
  }
}

}  // namespace

void scores_cuda(const ScoreNet& net, void* scores, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t blocks = ceil_div(net.N * net.P, kWarps);
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto* out = static_cast<acc_t*>(scores);
    if (net.hidden_scale != nullptr)
      scores_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, stream>>>(net, out);
    else
      scores_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, stream>>>(net, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void scores_backward_cuda(const ScoreNet& net, const void* grad_scores, const ScoreNetGrads& grads, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t h_blocks = ceil_div(net.Hd, 32);
  dispatch_scalar(net.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* ds = static_cast<const acc_t*>(grad_scores);
    if (net.hidden_scale != nullptr)
      scores_backward_kernel<scalar_t, acc_t, true><<<net.N * h_blocks, kThreads, 0, stream>>>(net, ds, grads, h_blocks);
    else
      scores_backward_kernel<scalar_t, acc_t, false><<<net.N * h_blocks, kThreads, 0, stream>>>(net, ds, grads, h_blocks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace pyface::gla
