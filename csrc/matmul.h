// Matrix products for the host code, on the fastest library torch carries for the device.
#pragma once

#include <ATen/core/Tensor.h>

namespace pyface {

// a (M, K) @ b (N, K)^T -> (M, N), contiguous, in a's dtype. Any strides in; on the oneDNN
// path a is best contiguous and b contiguous or a transposed contiguous matrix (no copies).
// float32 on CPU runs oneDNN's matmul (torch's mkldnn::_linear_pointwise) where torch has it
// and its mkldnn backend is enabled: at::mm calls MKL's sgemm, which on AMD CPUs runs AVX2
// code, while oneDNN picks AVX-512 by the CPU's features (README, global_local_attention,
// gives the measured difference). bfloat16 and float16 products that this CPU has no
// instructions for run in float32 (see widened_for_product).
// Everything else is at::mm.
at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b);

// True when mm_nt runs products with a CPU `a` like this one on oneDNN, so a caller prepares
// an operand in the layout oneDNN reads only when it will be read that way.
bool mm_nt_uses_onednn(const at::Tensor& a);

// True when `t` is a bfloat16 or float16 CPU tensor whose products torch would run in its
// generic C++ loop: oneDNN runs bfloat16 only from AVX-512 (BW, VL, DQ) on and float16 only
// with AVX512-FP16. That loop ran 4-15x slower than converting to float32 and back around
// oneDNN's float32 product on an AVX2-only AMD EPYC (README, global_local_attention).
bool widened_for_product(const at::Tensor& t);

// t as an operand of a product: in float32 where widened_for_product(t), else t itself.
at::Tensor product_operand(const at::Tensor& t);

}  // namespace pyface
