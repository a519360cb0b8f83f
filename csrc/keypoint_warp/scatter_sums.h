// Host side of the GPU d/d feature scatter of the warping ops (FeatureScatter in
// keypoint_warp.h): the buffer the kernels add into and its conversion to the gradient. In
// the deterministic mode the kernels add value * scale as int64, so integer adds make the
// sum independent of their order; every partial sum of a plane (n, c) is at most the sum of
// |grad_output| that reaches it (the sample weights are at most 1), and the plane's scale
// is the power of two that puts that bound below 2^62: a resolution of bound * 2^-62, far
// below float rounding, with no overflow.
#pragma once

#ifdef PYFACE_WITH_CUDA

#include <ATen/core/Tensor.h>
#include <ATen/ops/exp2.h>
#include <ATen/ops/frexp.h>
#include <ATen/ops/zeros.h>

#include <tuple>
#include <vector>

#include "keypoint_warp/keypoint_warp.h"
#include "tensor_kind.h"

namespace pyface::kpw {

class ScatterSums {
 public:
  // grad_by_plane: grad_output arranged (N, C, ...), every element reaching plane (n, c)
  // under [n, c] (read only in the deterministic mode). Nothing is allocated without
  // feature_grad.
  ScatterSums(const at::Tensor& feature, const at::Tensor& grad_by_plane, bool feature_grad, bool deterministic) {
    if (!feature_grad) return;
    if (deterministic) {
      const at::Tensor bound = grad_by_plane.abs().to(at::kDouble).flatten(2).sum(2);
      const at::Tensor exponent = std::get<1>(at::frexp(bound));  // bound < 2^exponent
      scales_ = at::exp2(exponent.neg().add(62).to(at::kDouble)).contiguous();
      sums_ = at::zeros(feature.sizes(), feature.options().dtype(at::kLong));
    } else {
      sums_ = at::zeros(feature.sizes(), feature.options().dtype(accumulate_type(feature.scalar_type())));
    }
  }

  FeatureScatter view() const {
    return {sums_.defined() ? sums_.data_ptr() : nullptr, scales_.defined() ? scales_.const_data_ptr<double>() : nullptr};
  }

  // d/d feature in `dtype` once the kernels have run.
  at::Tensor gradient(at::ScalarType dtype) const {
    if (!scales_.defined()) return sums_.to(dtype);
    std::vector<int64_t> shape(sums_.dim(), 1);
    shape[0] = sums_.size(0);
    shape[1] = sums_.size(1);
    return sums_.to(at::kDouble).div(scales_.view(shape)).to(dtype);
  }

 private:
  at::Tensor sums_, scales_;
};

}  // namespace pyface::kpw

#endif  // PYFACE_WITH_CUDA
