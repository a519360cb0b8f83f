// Host helpers of the deterministic d/d feature scatter on the GPU (FeatureScatter in
// keypoint_warp.h): the warping kernels add value * scale as int64, so integer adds make
// the sum independent of their order, and every partial sum of a plane is at most the sum
// of |grad_output| that reaches it (the sample weights are at most 1), its `bound`.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/exp2.h>
#include <ATen/ops/frexp.h>

#include <tuple>
#include <vector>

namespace pyface::kpw {

// Per plane, the power of two that puts `bound` (double) below 2^62: a resolution of
// bound * 2^-62, far below float rounding, with no overflow.
inline at::Tensor fixed_point_scales(const at::Tensor& bound) {
  const at::Tensor exponent = std::get<1>(at::frexp(bound));  // bound < 2^exponent
  return at::exp2(exponent.neg().add(62).to(at::kDouble)).contiguous();
}

// The gradient (N, C, *S_in) from the int64 sums and their scales (N, C).
inline at::Tensor fixed_point_to_gradient(const at::Tensor& sums, const at::Tensor& scales, at::ScalarType dtype) {
  std::vector<int64_t> shape(sums.dim(), 1);
  shape[0] = sums.size(0);
  shape[1] = sums.size(1);
  return sums.to(at::kDouble).div(scales.view(shape)).to(dtype);
}

}  // namespace pyface::kpw
