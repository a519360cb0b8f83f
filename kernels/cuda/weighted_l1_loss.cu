// CUDA kernels of the masked weighted L1 loss. One launch reads input, target and the
// labels/weight once and writes either the loss map or the input gradient, plus one
// partial sum per block; a one-block kernel then adds the partials in a fixed order, so
// the loss is deterministic. With normalize="weight" a first pass over the weights alone
// leaves 1/D on the device, so nothing waits on the host.
#include "weighted_l1_loss/weighted_l1_loss.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>

#include "reduce.cuh"

namespace pyface::wl1 {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;                 // elements per thread per tile: loads in flight
constexpr int64_t kTile = kThreads * kItems;
constexpr int64_t kTargetBlocks = 4096;   // enough to fill any current GPU several times
constexpr int kMaxGridY = 65535;

enum Mode { kWriteMap, kReduce, kReduceAndGrad, kWeightSum, kBackward };

__device__ __forceinline__ int64_t load_label(const void* labels, int bytes, int64_t i) {
  switch (bytes) {
    case 1: return static_cast<const uint8_t*>(labels)[i];
    case 4: return static_cast<const int32_t*>(labels)[i];
    default: return static_cast<const int64_t*>(labels)[i];
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t sign_of(acc_t d) {
  return acc_t(d > acc_t(0)) - acc_t(d < acc_t(0));
}

// Grid: x tiles the P pixels of a row, y walks the N*C rows; both loop when the grid is smaller.
template <int kMode, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
rows_kernel(Problem pb, const scalar_t* grad_out, scalar_t* out, const acc_t* inv_d_dev, acc_t inv_d_host,
            acc_t* partials) {
  const acc_t inv_d = inv_d_dev != nullptr ? *inv_d_dev : inv_d_host;
  const auto* x = static_cast<const scalar_t*>(pb.input);
  const auto* t = static_cast<const scalar_t*>(pb.target);
  const auto* weight = static_cast<const scalar_t*>(pb.weight);
  const auto* cw = static_cast<const acc_t*>(pb.class_weights);
  acc_t sum = 0;
  for (int64_t row = blockIdx.y; row < pb.N * pb.C; row += gridDim.y) {
    const int64_t n = row / pb.C, c = row - n * pb.C;
    const int64_t base = row * pb.P;
    for (int64_t p0 = blockIdx.x * kTile; p0 < pb.P; p0 += int64_t(gridDim.x) * kTile) {
#pragma unroll
      for (int k = 0; k < kItems; ++k) {
        const int64_t p = p0 + k * kThreads + threadIdx.x;
        if (p >= pb.P) break;
        acc_t w = 1;
        if (pb.labels != nullptr) w = cw[load_label(pb.labels, pb.label_bytes, n * pb.P + p)];
        if (weight != nullptr) w *= acc_t(weight[n * pb.w_stride_n + c * pb.w_stride_c + p * pb.w_stride_p]);
        if constexpr (kMode == kWeightSum) {
          sum += w;
        } else {
          const acc_t d = acc_t(x[base + p]) - acc_t(t[base + p]);
          if constexpr (kMode == kWriteMap) out[base + p] = scalar_t(w * fabs(d));
          if constexpr (kMode == kReduce || kMode == kReduceAndGrad) sum += w * fabs(d);
          if constexpr (kMode == kReduceAndGrad) out[base + p] = scalar_t(w * inv_d * sign_of(d));
          if constexpr (kMode == kBackward) out[base + p] = scalar_t(acc_t(grad_out[base + p]) * w * sign_of(d));
        }
      }
    }
  }
  if constexpr (kMode == kReduce || kMode == kReduceAndGrad || kMode == kWeightSum) {
    sum = pyface::cuda::block_reduce<kThreads>(sum);
    if (threadIdx.x == 0) partials[blockIdx.y * gridDim.x + blockIdx.x] = sum;
  }
}

// Adds the partials in a fixed order. Writes either loss = total * inv_d, or
// inv_total = 1 / total (0 when total is 0: an all-zero weight gives loss 0, not NaN).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
finalize_kernel(const acc_t* partials, int64_t count, const acc_t* inv_d_dev, acc_t inv_d_host,
                scalar_t* loss, acc_t* inv_total) {
  acc_t sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += kThreads) sum += partials[i];
  sum = pyface::cuda::block_reduce<kThreads>(sum);
  if (threadIdx.x != 0) return;
  if (inv_total != nullptr) {
    *inv_total = sum != acc_t(0) ? acc_t(1) / sum : acc_t(0);  // zero total: 0; NaN total: NaN
  } else {
    *loss = scalar_t(sum * (inv_d_dev != nullptr ? *inv_d_dev : inv_d_host));
  }
}

dim3 grid_for(const Problem& pb) {
  const int64_t rows = std::max<int64_t>(pb.N * pb.C, 1);
  const int64_t y = std::min<int64_t>(rows, kMaxGridY);
  const int64_t x_needed = (pb.P + kTile - 1) / kTile;
  const int64_t x = std::max<int64_t>(1, std::min(x_needed, std::max<int64_t>(1, kTargetBlocks / y)));
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

}  // namespace

// Partials for one reduction, then one slot for 1/D, all in the accumulation type (<= 8 bytes).
int64_t forward_cuda_scratch_bytes(const Problem& pb) {
  const dim3 g = grid_for(pb);
  return (int64_t(g.x) * g.y + 1) * int64_t(sizeof(double));
}

void forward_cuda(const Problem& pb, int64_t reduction, bool weight_normalize, const Outputs& out, void* scratch,
                  int device_index) {
  const int64_t numel = pb.N * pb.C * pb.P;
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid = grid_for(pb);
  const int64_t blocks = int64_t(grid.x) * grid.y;
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto* partials = static_cast<acc_t*>(scratch);
    acc_t* inv_d_dev = partials + blocks;
    if (reduction == kNone) {
      rows_kernel<kWriteMap, scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          pb, nullptr, static_cast<scalar_t*>(out.out_map), nullptr, acc_t(1), nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    const bool by_weight = reduction == kMean && weight_normalize;
    const acc_t inv_d_host = reduction == kMean ? acc_t(1.0 / double(numel)) : acc_t(1);
    if (by_weight) {
      rows_kernel<kWeightSum, scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          pb, nullptr, nullptr, nullptr, acc_t(1), partials);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      finalize_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream>>>(partials, blocks, nullptr, acc_t(1), nullptr,
                                                                   inv_d_dev);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const acc_t* inv_d = by_weight ? inv_d_dev : nullptr;
    if (out.grad != nullptr) {
      rows_kernel<kReduceAndGrad, scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          pb, nullptr, static_cast<scalar_t*>(out.grad), inv_d, inv_d_host, partials);
    } else {
      rows_kernel<kReduce, scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(pb, nullptr, nullptr, inv_d, inv_d_host,
                                                                          partials);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<scalar_t, acc_t><<<1, kThreads, 0, stream>>>(partials, blocks, inv_d, inv_d_host,
                                                                 static_cast<scalar_t*>(out.out_loss), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_cuda(const Problem& pb, const void* grad_output, void* grad_input, int device_index) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    rows_kernel<kBackward, scalar_t, acc_t><<<grid_for(pb), kThreads, 0, stream>>>(
        pb, static_cast<const scalar_t*>(grad_output), static_cast<scalar_t*>(grad_input), nullptr, acc_t(1),
        nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace pyface::wl1
