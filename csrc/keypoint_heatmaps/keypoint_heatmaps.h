// Keypoint heatmaps (docs/ops.md, keypoint_heatmaps): what the host code hands to each kernel.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "dispatch.h"

namespace pyface::kph {

using pyface::ScalarKind;

// kp_driving, kp_source: (N, K, dims) contiguous, dims = 2 (x, y) or 3 (x, y, z). The maps
// are (N, K+1, D, H, W) contiguous with D = 1 for dims = 2; the identity grid puts
// x = linspace(-1, 1, W)[w], y = linspace(-1, 1, H)[h], z = linspace(-1, 1, D)[d].
// Slot 0 is zeros; slot k is exp(-|z - kp_driving_k|^2 / (2 variance)) minus the same for
// kp_source. Everything is in the keypoints' dtype, computed in the accumulation type.
struct Problem {
  ScalarKind scalar;
  int64_t N, K, dims, D, H, W;
  const void* kp_driving;
  const void* kp_source;
  double variance;
};

// backward: grad (N, K+1, D, H, W) -> grad_kp_driving, grad_kp_source (N, K, dims).
// CPU kernels (keypoint_heatmaps_cpu.cpp), one copy per instruction set (cpu_isa.h). The
// Gaussian of a keypoint factors over the axes, so they take 2 * (D + H + W) exponentials
// per keypoint instead of two per grid point.
PYFACE_DECLARE_CPU_KERNELS(
  void forward_cpu(const Problem& pb, void* heatmaps);
  void backward_cpu(const Problem& pb, const void* grad, void* grad_kp_driving, void* grad_kp_source);)

#ifdef PYFACE_WITH_CUDA
// CUDA kernels (kernels/cuda/keypoint_heatmaps.cu), on the current stream.
void forward_cuda(const Problem& pb, void* heatmaps, int device);
void backward_cuda(const Problem& pb, const void* grad, void* grad_kp_driving, void* grad_kp_source, int device);
#endif

}  // namespace pyface::kph
