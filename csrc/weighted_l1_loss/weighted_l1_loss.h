// Masked weighted L1 loss (docs/ops.md, weighted_l1_loss): what the host code hands to each kernel.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "dispatch.h"

namespace pyface::wl1 {

// reduction codes shared with pyface/ops/weighted_l1_loss.py
enum Reduction : int64_t { kNone = 0, kSum = 1, kMean = 2 };

using pyface::ScalarKind;

// Input and target are viewed as (N, C, P) contiguous, P = product of the spatial dims.
// The effective weight of element (n, c, p) is
//   class_weights[labels[n, p]] * weight[n * w_stride_n + c * w_stride_c + p * w_stride_p]
// where either factor may be absent; w_stride_p is 0 or 1.
struct Problem {
  ScalarKind scalar;
  int64_t N, C, P;
  const void* input;
  const void* target;
  const void* weight;             // input's dtype, or null
  int64_t w_stride_n, w_stride_c, w_stride_p;
  const void* labels;             // (N, P) contiguous, or null
  int label_bytes;                // 1 (uint8), 4 (int32) or 8 (int64)
  const void* class_weights;      // accumulation dtype (float, or double for double input)
  int64_t num_classes;
};

// The forward pass writes, depending on reduction:
//   none:      out_map = w * |x - t|                                (N, C, P), input dtype
//   sum/mean:  out_loss = sum(w * |x - t|) / D                        scalar, input dtype
//              and, when grad is not null, grad = w * sign(x - t) / D (N, C, P), input dtype
// D = 1 for sum, N*C*P for mean, sum of w for mean with weight_normalize (0 -> loss 0).
struct Outputs {
  void* out_map;
  void* out_loss;
  void* grad;
};

}  // namespace pyface::wl1

namespace pyface::wl1 {

// CPU kernels (weighted_l1_loss_cpu.cpp), one copy per instruction set (cpu_isa.h). They
// check the labels as they read them and throw c10::ValueError for one outside
// [0, num_classes). backward_cpu is the reduction "none" backward:
// grad_input = grad_output * w * sign(x - t), all (N, C, P).
PYFACE_DECLARE_CPU_KERNELS(
  void forward_cpu(const Problem& pb, int64_t reduction, bool weight_normalize, const Outputs& out);
  void backward_cpu(const Problem& pb, const void* grad_output, void* grad_input);)

#ifdef PYFACE_WITH_CUDA
// CUDA kernels (kernels/cuda/weighted_l1_loss.cu). Labels must be range-checked by the caller.
// `scratch` holds at least forward_cuda_scratch_bytes(pb) bytes of device memory.
int64_t forward_cuda_scratch_bytes(const Problem& pb);
void forward_cuda(const Problem& pb, int64_t reduction, bool weight_normalize, const Outputs& out,
                  void* scratch, int device_index);
void backward_cuda(const Problem& pb, const void* grad_output, void* grad_input, int device_index);
#endif

}  // namespace pyface::wl1
