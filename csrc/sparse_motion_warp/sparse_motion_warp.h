// The dense-motion network's input (docs/ops.md, sparse_motion_warp): what the host code hands to each
// kernel. It shares keypoint_warp's Problem with mask = null and the output grid equal to
// the input grid (D_out = D_in, ...).
#pragma once

#include "keypoint_warp/keypoint_warp.h"

namespace pyface::kpw {

// output (N, K+1, C, S): slot 0 the feature sampled at the identity grid, slot k at T_k(z).
// backward: grad_output of that shape -> grad_feature (or null), grad_kp_source,
// grad_kp_driving, grad_jacobian (or null), in Grads (grad_deformation and grad_mask unused).
// CPU kernels (sparse_motion_warp_cpu.cpp), one copy per instruction set (cpu_isa.h), with the
// scratch keypoint_warp.h's cpu_scratch sizes, or null; d/d feature is a scatter owned by
// blocks of channels, so it is deterministic. Without a jacobian they take the separable path
// (separable_warp.h), which uses no scratch; the host passes null then.
PYFACE_DECLARE_CPU_KERNELS(
  void sparse_forward_cpu(const Problem& pb, void* output, void* scratch);
  void sparse_backward_cpu(const Problem& pb, const Grads& grads, void* scratch);)

#ifdef PYFACE_WITH_CUDA
// CUDA kernels (kernels/cuda/sparse_motion_warp.cu), on the current stream; the scatter and
// `partials` (N, K, keypoint_chunks(S), dims + dims^2) are as keypoint_warp.h describes.
void sparse_forward_cuda(const Problem& pb, void* output, int device);
void sparse_backward_cuda(const Problem& pb, const Grads& grads, const FeatureScatter& scatter, void* partials,
                          int device);
#endif

}  // namespace pyface::kpw
