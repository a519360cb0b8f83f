// Matrix products for the host code, on the fastest library torch carries for the device.
#pragma once

#include <ATen/core/Tensor.h>

namespace pyface {

// a (M, K) @ b (N, K)^T -> (M, N), contiguous, in a's dtype. Any strides in; on the oneDNN
// path a is best contiguous and b contiguous or a transposed contiguous matrix (no copies).
// float32 on CPU runs oneDNN's matmul (torch's mkldnn::_linear_pointwise) where torch has it
// and its mkldnn backend is enabled: at::mm calls MKL's sgemm, which on AMD CPUs runs AVX2
// code, while oneDNN picks AVX-512 by the CPU's features (README, global_local_attention,
// gives the measured difference).
// Everything else is at::mm.
at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b);

// True when mm_nt runs products with a float32 CPU `a` like this one on oneDNN, so a caller
// prepares an operand in the layout oneDNN reads only when it will be read that way.
bool mm_nt_uses_onednn(const at::Tensor& a);

}  // namespace pyface
