// CUDA kernels of the keypoint heatmaps. Forward: a thread per map element (two
// exponentials). Backward: a block per (sample, keypoint) sums the gradient against the
// Gaussians' derivatives over the grid, with fixed-order block reductions.
#include "keypoint_heatmaps/keypoint_heatmaps.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>

#include "coordinate_grid.h"
#include "reduce.cuh"

namespace pyface::kph {
namespace {

using pyface::cuda::block_reduce;

constexpr int kThreads = 256;

// The grid point of flat index `at` in a (D, H, W) map, as (x, y, z).
template <typename acc_t>
__device__ __forceinline__ void grid_point(const Problem& pb, int64_t at, acc_t point[3]) {
  point[0] = grid_coordinate<acc_t>(at % pb.W, pb.W);
  point[1] = grid_coordinate<acc_t>((at / pb.W) % pb.H, pb.H);
  point[2] = grid_coordinate<acc_t>(at / (pb.W * pb.H), pb.D);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t gaussian(const Problem& pb, const acc_t point[3], const scalar_t* kp, acc_t offset[3]) {
  acc_t r2 = 0;
  for (int i = 0; i < pb.dims; ++i) {
    offset[i] = point[i] - acc_t(kp[i]);
    r2 += offset[i] * offset[i];
  }
  return exp(-r2 / acc_t(2 * pb.variance));
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) forward_kernel(Problem pb, scalar_t* heatmaps) {
  const int64_t plane = pb.D * pb.H * pb.W, total = pb.N * (pb.K + 1) * plane;
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving);
  const auto* source = static_cast<const scalar_t*>(pb.kp_source);
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kThreads) {
    const int64_t slot = i / plane, n = slot / (pb.K + 1), k = slot % (pb.K + 1) - 1;
    if (k < 0) {
      heatmaps[i] = scalar_t(0);
      continue;
    }
    acc_t point[3], offset[3];
    grid_point(pb, i % plane, point);
    const int64_t kp = (n * pb.K + k) * pb.dims;
    heatmaps[i] = scalar_t(gaussian(pb, point, driving + kp, offset) - gaussian(pb, point, source + kp, offset));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
backward_kernel(Problem pb, const scalar_t* grad, scalar_t* grad_driving, scalar_t* grad_source) {
  const int64_t task = blockIdx.x, n = task / pb.K, k = task % pb.K;  // one (sample, keypoint)
  const int64_t plane = pb.D * pb.H * pb.W;
  const scalar_t* g = grad + (n * (pb.K + 1) + k + 1) * plane;
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving) + task * pb.dims;
  const auto* source = static_cast<const scalar_t*>(pb.kp_source) + task * pb.dims;
  acc_t sum_d[3] = {0, 0, 0}, sum_s[3] = {0, 0, 0};
  for (int64_t at = threadIdx.x; at < plane; at += kThreads) {
    acc_t point[3], offset[3];
    grid_point(pb, at, point);
    const acc_t gv = acc_t(g[at]);
    const acc_t ed = gv * gaussian(pb, point, driving, offset);
    for (int i = 0; i < pb.dims; ++i) sum_d[i] += ed * offset[i];
    const acc_t es = gv * gaussian(pb, point, source, offset);
    for (int i = 0; i < pb.dims; ++i) sum_s[i] += es * offset[i];
  }
  const acc_t inv_var = acc_t(1.0 / pb.variance);
  for (int i = 0; i < pb.dims; ++i) {
    const acc_t total_d = block_reduce<kThreads>(sum_d[i]);
    const acc_t total_s = block_reduce<kThreads>(sum_s[i]);
    if (threadIdx.x == 0) {
      grad_driving[task * pb.dims + i] = scalar_t(total_d * inv_var);
      grad_source[task * pb.dims + i] = scalar_t(-total_s * inv_var);
    }
  }
}

}  // namespace

void forward_cuda(const Problem& pb, void* heatmaps, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t total = pb.N * (pb.K + 1) * pb.D * pb.H * pb.W;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20);  // the rest loop
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    forward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(pb, static_cast<scalar_t*>(heatmaps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_cuda(const Problem& pb, const void* grad, void* grad_kp_driving, void* grad_kp_source, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    backward_kernel<scalar_t, acc_t><<<pb.N * pb.K, kThreads, 0, stream>>>(
        pb, static_cast<const scalar_t*>(grad), static_cast<scalar_t*>(grad_kp_driving),
        static_cast<scalar_t*>(grad_kp_source));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace pyface::kph
