// Keypoint-driven feature warping (docs/ops.md, keypoint_warp): what the host code hands to each kernel.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

#include "cpu_isa.h"
#include "dispatch.h"

namespace pyface::kpw {

using pyface::ScalarKind;

// padding codes shared with pyface/ops/keypoint_warp.py
enum Padding : int64_t { kZeros = 0, kBorder = 1 };

// feature (N, C, D_in, H_in, W_in) contiguous, D_in = 1 in 2-D; kp_source, kp_driving
// (N, K, dims); mask (N, K+1, S_out) with S_out = D_out * H_out * W_out; jacobian
// (N, K, dims, dims) or null. All contiguous, in one float dtype. The deformation
// (N, S_out, dims), ordered (x, y[, z]), is kept in the accumulation dtype.
struct Problem {
  ScalarKind scalar;
  int64_t N, C, K, dims;
  int64_t D_in, H_in, W_in, D_out, H_out, W_out;
  const void* feature;
  const void* kp_source;
  const void* kp_driving;
  const void* mask;
  const void* jacobian;
  bool mask_logits, align_corners;
  int64_t padding;

  C10_HOST_DEVICE int64_t in_size() const { return D_in * H_in * W_in; }
  C10_HOST_DEVICE int64_t out_size() const { return D_out * H_out * W_out; }
};

// Backward inputs and outputs. grad_deformation (N, S_out, dims) is in the accumulation
// dtype or null; the gradients have their inputs' shapes and dtype; grad_feature and
// grad_jacobian are null when not wanted.
struct Grads {
  const void* grad_output;
  const void* grad_deformation;
  void* grad_feature;
  void* grad_kp_source;
  void* grad_kp_driving;
  void* grad_mask;
  void* grad_jacobian;
};

// From this many channels on, the CPU kernels sample a channels-last copy of each sample's
// feature (stencil_block.h): one contiguous run of channels per corner instead of one
// gathered element per corner and channel. The host allocates that copy, scratch of
// cpu_scratch(pb) elements of the accumulation dtype (0: none).
constexpr int64_t kChannelsLastFrom = 8;
inline int64_t cpu_scratch(const Problem& pb) { return pb.C >= kChannelsLastFrom ? pb.C * pb.in_size() : 0; }

// CPU kernels (keypoint_warp_cpu.cpp), one copy per instruction set (cpu_isa.h): forward
// writes output (N, C, S_out), the deformation and the motion weights (N, K+1, S_out) (the
// mask, or its softmax), both in the accumulation dtype; backward reads those two back. In
// inference the motion weights, and the deformation unless asked for, are null: not stored.
// d/d feature is a scatter: each task owns a block of channels, so it is deterministic.
PYFACE_DECLARE_CPU_KERNELS(
  void forward_cpu(const Problem& pb, void* output, void* deformation, void* motion_weights, void* scratch);
  void backward_cpu(const Problem& pb, const void* deformation, const void* motion_weights, const Grads& grads,
                    void* scratch);)

#ifdef PYFACE_WITH_CUDA
// On the GPU d/d feature is a scatter into `sums` (N, C, S_in), zeroed by the host: atomic
// adds in the accumulation dtype, or, when `scales` (N * C doubles, powers of two) is given,
// int64 fixed point (value * scale, rounded), whose integer adds give the same bits in any
// order: the deterministic mode. The host turns `sums` into the gradient.
struct FeatureScatter {
  void* sums;
  const double* scales;
};

// The CUDA kernels reduce the keypoint gradients over chunks of about 4096 positions into
// scratch `partials` (N, K, chunks, dims + dims^2) in the accumulation dtype.
inline int64_t keypoint_chunks(int64_t positions) { return positions < 4096 ? 1 : (positions + 4095) / 4096; }

// CUDA kernels (kernels/cuda/keypoint_warp.cu), on the current stream; forward's deformation
// and motion_weights may be null, as on the CPU. position_grads is scratch (N, S_out, dims)
// in the accumulation dtype; Grads.grad_feature is unused here.
void forward_cuda(const Problem& pb, void* output, void* deformation, void* motion_weights, int device);
void backward_cuda(const Problem& pb, const void* deformation, const void* motion_weights, const Grads& grads,
                   const FeatureScatter& scatter, void* position_grads, void* partials, int device);
#endif

}  // namespace pyface::kpw
