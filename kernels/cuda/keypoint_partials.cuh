// The keypoint and jacobian gradients of the warping kernels, reduced in a fixed order: each
// block sums, over its chunk of positions, sg = sum w g and sgr = sum w g (z - kp_driving)^T
// for one (sample, keypoint), where g is d loss / d sample position and w the motion's
// weight there (1 in sparse_motion_warp); a second kernel adds the chunks in order and
// writes d/d kp_source = sg, d/d kp_driving = -J^T sg, d/d J = sgr.
#pragma once

#include <cstdint>

#include "keypoint_warp/keypoint_warp.h"
#include "reduce.cuh"

namespace pyface::kpw {

template <int DIMS>
constexpr int kPartialWidth = DIMS + DIMS * DIMS;

// Block-wide: writes this block's sums to `out` (kPartialWidth<DIMS> values).
template <int DIMS, int kThreads, typename acc_t>
__device__ void store_partials(const acc_t sg[3], const acc_t sgr[3][3], acc_t* out) {
  for (int a = 0; a < DIMS; ++a) {
    const acc_t total = pyface::cuda::block_reduce<kThreads>(sg[a]);
    if (threadIdx.x == 0) out[a] = total;
    for (int b = 0; b < DIMS; ++b) {
      const acc_t total_r = pyface::cuda::block_reduce<kThreads>(sgr[a][b]);
      if (threadIdx.x == 0) out[DIMS + a * DIMS + b] = total_r;
    }
  }
}

// A thread per (sample, keypoint); partials (N, K, chunks, kPartialWidth).
template <int DIMS, typename scalar_t, typename acc_t>
__global__ void finalize_keypoint_grads(Problem pb, const acc_t* partials, int64_t chunks, Grads grads) {
  const int64_t nk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (nk >= pb.N * pb.K) return;
  acc_t total[kPartialWidth<DIMS>] = {};
  for (int64_t chunk = 0; chunk < chunks; ++chunk)
    for (int i = 0; i < kPartialWidth<DIMS>; ++i) total[i] += partials[(nk * chunks + chunk) * kPartialWidth<DIMS> + i];
  const auto* jac = static_cast<const scalar_t*>(pb.jacobian);
  auto* grad_source = static_cast<scalar_t*>(grads.grad_kp_source) + nk * DIMS;
  auto* grad_driving = static_cast<scalar_t*>(grads.grad_kp_driving) + nk * DIMS;
  for (int b = 0; b < DIMS; ++b) {
    grad_source[b] = scalar_t(total[b]);
    acc_t jt_sg = total[b];  // (J^T sg)[b]
    if (jac != nullptr) {
      jt_sg = 0;
      for (int a = 0; a < DIMS; ++a) jt_sg += acc_t(jac[(nk * DIMS + a) * DIMS + b]) * total[a];
    }
    grad_driving[b] = scalar_t(-jt_sg);
  }
  if (grads.grad_jacobian != nullptr)
    for (int i = 0; i < DIMS * DIMS; ++i)
      static_cast<scalar_t*>(grads.grad_jacobian)[nk * DIMS * DIMS + i] = scalar_t(total[DIMS + i]);
}

}  // namespace pyface::kpw
