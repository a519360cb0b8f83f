// CUDA kernels of the dense-motion network's input. Forward: a thread per (sample, motion,
// position) forms T_k(z) on the spot and samples every channel of the one feature tensor.
// Backward: blocks of (sample, motion, chunk of positions) sum d/d sample position over the
// channels, scatter d/d feature (atomically or in deterministic fixed point) and reduce the
// keypoint and jacobian gradients in a fixed order (keypoint_partials.cuh).
#include "sparse_motion_warp/sparse_motion_warp.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "keypoint_partials.cuh"
#include "motion_sampling.cuh"

namespace pyface::kpw {
namespace {

constexpr int kThreads = 256;

// The sample position of motion `slot` (0 = identity) at grid position s, and z - kp_driving.
template <int DIMS, typename scalar_t, typename acc_t>
__device__ __forceinline__ void motion_at(const Problem& pb, int64_t n, int64_t slot, int64_t s, acc_t position[3],
                                          acc_t rel[3]) {
  acc_t z[3];
  identity_point(pb, s, z);
  position[2] = rel[2] = 0;
  if (slot == 0) {
    for (int a = 0; a < DIMS; ++a) position[a] = z[a];
    return;
  }
  keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, slot - 1, z, position, rel);
}

template <int DIMS, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) forward_kernel(Problem pb, scalar_t* output) {
  const int64_t S = pb.in_size(), slots = pb.K + 1, total = pb.N * slots * S;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t ns = i / S, n = ns / slots, slot = ns % slots, s = i % S;
    acc_t position[3], rel[3];
    motion_at<DIMS, scalar_t, acc_t>(pb, n, slot, s, position, rel);
    Stencil<DIMS, acc_t> st;
    st.build(pb, position);
    gather_channels(pb, st, n, output + ns * pb.C * S + s, S);
  }
}

// A block per (sample, motion, chunk of positions). Motion 0 (the identity) only scatters.
template <int DIMS, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
backward_kernel(Problem pb, Grads grads, FeatureScatter scatter, int64_t chunks, acc_t* partials) {
  const int64_t S = pb.in_size(), slots = pb.K + 1, chunk = blockIdx.x % chunks, ns = blockIdx.x / chunks;
  const int64_t n = ns / slots, slot = ns % slots, chunk_size = (S + chunks - 1) / chunks;
  const int64_t begin = chunk * chunk_size, end = min(S, begin + chunk_size);
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output) + ns * pb.C * S;
  acc_t sg[3] = {0, 0, 0}, sgr[3][3] = {};
  for (int64_t s = begin + threadIdx.x; s < end; s += kThreads) {
    acc_t position[3], rel[3];
    motion_at<DIMS, scalar_t, acc_t>(pb, n, slot, s, position, rel);
    Stencil<DIMS, acc_t> st;
    st.build(pb, position);
    acc_t gpos[3];
    backward_channels(pb, st, n, grad_output + s, S, scatter, gpos);
    for (int a = 0; a < DIMS; ++a) {
      const acc_t g = gpos[a] * st.factor[a];
      sg[a] += g;
      for (int b = 0; b < DIMS; ++b) sgr[a][b] += g * rel[b];
    }
  }
  if (slot == 0) return;  // uniform per block: the identity has no keypoint
  store_partials<DIMS, kThreads>(sg, sgr, partials + ((n * pb.K + slot - 1) * chunks + chunk) * kPartialWidth<DIMS>);
}

}  // namespace

void sparse_forward_cuda(const Problem& pb, void* output, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = pb.N * (pb.K + 1) * pb.in_size();
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20);
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_dims(pb, [&](auto dims) {
      forward_kernel<decltype(dims)::value, scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
          pb, static_cast<scalar_t*>(output));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void sparse_backward_cuda(const Problem& pb, const Grads& grads, const FeatureScatter& scatter, void* partials,
                          int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t chunks = keypoint_chunks(pb.in_size());
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_dims(pb, [&](auto dims) {
      constexpr int DIMS = decltype(dims)::value;
      backward_kernel<DIMS, scalar_t, acc_t><<<pb.N * (pb.K + 1) * chunks, kThreads, 0, stream>>>(
          pb, grads, scatter, chunks, static_cast<acc_t*>(partials));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (pb.K == 0) return;
      finalize_keypoint_grads<DIMS, scalar_t, acc_t><<<(pb.N * pb.K + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
          pb, static_cast<const acc_t*>(partials), chunks, grads);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace pyface::kpw
