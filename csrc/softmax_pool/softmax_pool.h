// Spatial softmax attention pooling (docs/ops.md, softmax_pool): what the host code hands to each kernel.
// The global-local attention op reuses these kernels for its softmax and its pooling.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "dispatch.h"

namespace pyface::spool {

using pyface::ScalarKind;

// Values viewed as (N, C, P), P = product of the spatial dims, dense per sample in one of two
// layouts: channels-first (element (n, c, p) at (n * C + c) * P + p) or channels-last
// (at (n * P + p) * C + c). Gradients of the values are written in the same layout.
struct Values {
  ScalarKind scalar;
  const void* data;
  int64_t N, C, P;
  bool channels_last;
};

// The accumulation type is float for float/half/bfloat16 values and double for double;
// "acc" below names it. Attention, score gradients and the incoming attention gradient are
// (N, P) contiguous in acc.

// CPU kernels (softmax_pool_cpu.cpp), one copy per instruction set (cpu_isa.h):
//   softmax_cpu: attention = softmax over p of scores (N, P) contiguous of dtype `scores_kind`.
//   pool_cpu: pooled (N, C) contiguous in the values' dtype = sum_p attention[n, p] * values[n, :, p].
//   pool_backward_cpu: g[n, p] = grad_attention[n, p] (if given) + sum_c grad_pooled[n, c] * values[n, c, p];
//     grad_scores = a * (g - sum_p a * g) (acc); grad_values[n, c, p] = grad_pooled[n, c] * a[n, p]
//     in the values' dtype and layout, written only when grad_values is not null.
PYFACE_DECLARE_CPU_KERNELS(
  void softmax_cpu(ScalarKind scores_kind, const void* scores, void* attention, int64_t N, int64_t P);
  void pool_cpu(const Values& v, const void* attention, void* pooled);
  void pool_backward_cpu(const Values& v, const void* attention, const void* grad_pooled,
                         const void* grad_attention, void* grad_scores, void* grad_values);)

#ifdef PYFACE_WITH_CUDA
// CUDA kernels (kernels/cuda/softmax_pool.cu), the same contracts on the current stream.
void softmax_cuda(ScalarKind scores_kind, const void* scores, void* attention, int64_t N, int64_t P, int device);
void pool_cuda(const Values& v, const void* attention, void* pooled, int device);
// `scratch` holds pool_backward_cuda_scratch_bytes(v) bytes of device memory.
int64_t pool_backward_cuda_scratch_bytes(const Values& v);
void pool_backward_cuda(const Values& v, const void* attention, const void* grad_pooled, const void* grad_attention,
                        void* grad_scores, void* grad_values, void* scratch, int device);
#endif

}  // namespace pyface::spool
