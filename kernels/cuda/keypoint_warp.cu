// CUDA kernels of keypoint-driven warping. Forward: a thread per output position forms its
// motion weights (the mask or its softmax) and its deformation from the keypoints on the
// spot, then samples every channel there. Backward: a thread per position sums d/d
// deformation over the channels (scattering d/d feature on the way, atomically or in
// deterministic fixed point) and writes d/d mask; then blocks of (sample, keypoint, chunk of
// positions) reduce the keypoint and jacobian gradients in a fixed order.
#include "keypoint_warp/keypoint_warp.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>

#include "keypoint_partials.cuh"
#include "motion_sampling.cuh"

namespace pyface::kpw {
namespace {

constexpr int kThreads = 256;

int64_t grid_for(int64_t total) { return std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20); }

// motion_weights and deformation may be null (inference): the weights are then formed where
// they are used, never stored.
template <int DIMS, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
forward_kernel(Problem pb, scalar_t* output, acc_t* deformation, acc_t* motion_weights) {
  const int64_t S = pb.out_size(), total = pb.N * S, slots = pb.K + 1;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t n = i / S, s = i % S;
    const scalar_t* mask = static_cast<const scalar_t*>(pb.mask) + n * slots * S + s;
    acc_t high = 0, sum = 1;  // of the softmax over the motions
    if (pb.mask_logits) {
      high = acc_t(mask[0]);
      for (int64_t k = 1; k < slots; ++k) high = max(high, acc_t(mask[k * S]));
      sum = 0;
      for (int64_t k = 0; k < slots; ++k) sum += exp(acc_t(mask[k * S]) - high);
    }
    acc_t* m = motion_weights == nullptr ? nullptr : motion_weights + n * slots * S + s;
    auto weight = [&](int64_t k) {
      const acc_t w = pb.mask_logits ? exp(acc_t(mask[k * S]) - high) / sum : acc_t(mask[k * S]);
      if (m != nullptr) m[k * S] = w;  // kept for the backward
      return w;
    };
    acc_t z[3], motion[3], rel[3], def[3] = {0, 0, 0};
    identity_point(pb, s, z);
    const acc_t m0 = weight(0);
    for (int a = 0; a < DIMS; ++a) def[a] = m0 * z[a];
    for (int64_t k = 0; k < pb.K; ++k) {
      keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, k, z, motion, rel);
      const acc_t mk = weight(k + 1);
      for (int a = 0; a < DIMS; ++a) def[a] += mk * motion[a];
    }
    if (deformation != nullptr)
      for (int a = 0; a < DIMS; ++a) deformation[i * DIMS + a] = def[a];
    Stencil<DIMS, acc_t> st;
    st.build(pb, def);
    gather_channels(pb, st, n, output + n * pb.C * S + s, S);
  }
}

// d loss / d deformation at each position (into position_grads), d/d mask, and the scatter.
template <int DIMS, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
position_backward_kernel(Problem pb, const acc_t* deformation, const acc_t* motion_weights, Grads grads,
                         FeatureScatter scatter, acc_t* position_grads) {
  const int64_t S = pb.out_size(), total = pb.N * S, slots = pb.K + 1;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  const auto* grad_deformation = static_cast<const acc_t*>(grads.grad_deformation);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t n = i / S, s = i % S;
    acc_t def[3] = {0, 0, 0};
    for (int a = 0; a < DIMS; ++a) def[a] = deformation[i * DIMS + a];
    Stencil<DIMS, acc_t> st;
    st.build(pb, def);
    acc_t gdef[3];
    backward_channels(pb, st, n, grad_output + n * pb.C * S + s, S, scatter, gdef);
    acc_t g[3] = {0, 0, 0};
    for (int a = 0; a < DIMS; ++a) {
      g[a] = gdef[a] * st.factor[a] + (grad_deformation != nullptr ? grad_deformation[i * DIMS + a] : acc_t(0));
      position_grads[i * DIMS + a] = g[a];
    }
    // d/d m_k = g . T_k(z); through the softmax: m_k (d/d m_k - sum_j m_j d/d m_j)
    const acc_t* m = motion_weights + n * slots * S + s;
    acc_t z[3], motion[3], rel[3];
    identity_point(pb, s, z);
    auto motion_dot = [&](int64_t slot) {
      if (slot == 0) {
        acc_t dot = 0;
        for (int a = 0; a < DIMS; ++a) dot += g[a] * z[a];
        return dot;
      }
      keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, slot - 1, z, motion, rel);
      acc_t dot = 0;
      for (int a = 0; a < DIMS; ++a) dot += g[a] * motion[a];
      return dot;
    };
    acc_t mean = 0;
    if (pb.mask_logits)
      for (int64_t k = 0; k < slots; ++k) mean += m[k * S] * motion_dot(k);
    scalar_t* grad_mask = static_cast<scalar_t*>(grads.grad_mask) + n * slots * S + s;
    for (int64_t k = 0; k < slots; ++k) {
      const acc_t dm = motion_dot(k);
      grad_mask[k * S] = scalar_t(pb.mask_logits ? m[k * S] * (dm - mean) : dm);
    }
  }
}

// A block per (sample, keypoint, chunk of positions): sums m_k g and m_k g (z - kp_driving_k)^T.
template <int DIMS, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
keypoint_backward_kernel(Problem pb, const acc_t* motion_weights, const acc_t* position_grads, int64_t chunks,
                         acc_t* partials) {
  const int64_t S = pb.out_size(), chunk = blockIdx.x % chunks, nk = blockIdx.x / chunks;
  const int64_t n = nk / pb.K, k = nk % pb.K, chunk_size = (S + chunks - 1) / chunks;
  const int64_t begin = chunk * chunk_size, end = min(S, begin + chunk_size);
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving) + nk * DIMS;
  const acc_t* m = motion_weights + (n * (pb.K + 1) + k + 1) * S;
  acc_t sg[3] = {0, 0, 0}, sgr[3][3] = {};
  for (int64_t s = begin + threadIdx.x; s < end; s += kThreads) {
    acc_t z[3];
    identity_point(pb, s, z);
    const acc_t mk = m[s];
    for (int a = 0; a < DIMS; ++a) {
      const acc_t wg = mk * position_grads[(n * S + s) * DIMS + a];
      sg[a] += wg;
      for (int b = 0; b < DIMS; ++b) sgr[a][b] += wg * (z[b] - acc_t(driving[b]));
    }
  }
  store_partials<DIMS, kThreads>(sg, sgr, partials + blockIdx.x * kPartialWidth<DIMS>);
}

}  // namespace

void forward_cuda(const Problem& pb, void* output, void* deformation, void* motion_weights, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_dims(pb, [&](auto dims) {
      forward_kernel<decltype(dims)::value, scalar_t, acc_t><<<grid_for(pb.N * pb.out_size()), kThreads, 0, stream>>>(
          pb, static_cast<scalar_t*>(output), static_cast<acc_t*>(deformation), static_cast<acc_t*>(motion_weights));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void backward_cuda(const Problem& pb, const void* deformation, const void* motion_weights, const Grads& grads,
                   const FeatureScatter& scatter, void* position_grads, void* partials, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t S = pb.out_size(), chunks = keypoint_chunks(S);
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_dims(pb, [&](auto dims) {
      constexpr int DIMS = decltype(dims)::value;
      const auto* def = static_cast<const acc_t*>(deformation);
      const auto* weights = static_cast<const acc_t*>(motion_weights);
      auto* pos = static_cast<acc_t*>(position_grads);
      position_backward_kernel<DIMS, scalar_t, acc_t><<<grid_for(pb.N * S), kThreads, 0, stream>>>(
          pb, def, weights, grads, scatter, pos);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (pb.K == 0) return;
      keypoint_backward_kernel<DIMS, scalar_t, acc_t><<<pb.N * pb.K * chunks, kThreads, 0, stream>>>(
          pb, weights, pos, chunks, static_cast<acc_t*>(partials));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      finalize_keypoint_grads<DIMS, scalar_t, acc_t><<<(pb.N * pb.K + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          pb, static_cast<const acc_t*>(partials), chunks, grads);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace pyface::kpw
