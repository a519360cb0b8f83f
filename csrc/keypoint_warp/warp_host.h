// Host code the two warping ops (keypoint_warp.cpp, sparse_motion_warp.cpp) share: the
// guards and contiguous copies of the feature, keypoints and jacobian, and, on the GPU, the
// backward's scratch: the per-chunk keypoint partials and the d/d feature scatter buffer.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <optional>

#include "huge_pages.h"
#include "keypoint_warp/keypoint_warp.h"
#include "tensor_kind.h"

#ifdef PYFACE_WITH_CUDA
#include <ATen/ops/exp2.h>
#include <ATen/ops/frexp.h>
#include <ATen/ops/zeros.h>

#include <tuple>
#include <vector>
#endif

namespace pyface::kpw {

// The inputs both ops take (kept alive) and a Problem pointing into them, with the output
// grid set to the input's and no mask; keypoint_warp fills those in from its mask.
struct PreparedKeypoints {
  at::Tensor feature, kp_source, kp_driving, jacobian;
  Problem pb{};
};

// The CPU kernels' channels-last copy of the feature (cpu_scratch in keypoint_warp.h),
// allocated here so that it counts as the call's memory; its pointer, or null where the
// kernels take none. `holder` keeps it alive.
inline void* cpu_channels_last_scratch(const PreparedKeypoints& p, at::Tensor& holder) {
  const int64_t size = cpu_scratch(p.pb);
  if (size == 0) return nullptr;
  holder = on_huge_pages(at::empty({size}, p.feature.options().dtype(accumulate_type(p.feature.scalar_type()))));
  return holder.data_ptr();
}

inline PreparedKeypoints prepare_keypoints(const char* op, const at::Tensor& feature, const at::Tensor& kp_source,
                                           const at::Tensor& kp_driving, const std::optional<at::Tensor>& jacobian,
                                           bool align_corners, int64_t padding) {
  const int64_t dims = feature.dim() - 2;
  TORCH_CHECK_VALUE(dims == 2 || dims == 3, op, ": feature must be (N, C, H, W) or (N, C, D, H, W)");
  TORCH_CHECK_VALUE(kp_source.dim() == 3 && kp_source.size(0) == feature.size(0) && kp_source.size(2) == dims &&
                        kp_driving.sizes() == kp_source.sizes(),
                    op, ": kp_source and kp_driving must be (N, K, d)");
  const int64_t K = kp_source.size(1);
  TORCH_CHECK_VALUE(!jacobian.has_value() || jacobian->sizes() == at::IntArrayRef({feature.size(0), K, dims, dims}),
                    op, ": jacobian must be (N, K, d, d)");
  TORCH_CHECK_VALUE(padding == kZeros || padding == kBorder, op, ": bad padding code ", padding);
  for (const at::Tensor* t : {&kp_source, &kp_driving})
    TORCH_CHECK_TYPE(t->scalar_type() == feature.scalar_type(), op, ": all float inputs must share feature's dtype");
  PreparedKeypoints p;
  p.feature = feature.contiguous();
  p.kp_source = kp_source.contiguous();
  p.kp_driving = kp_driving.contiguous();
  if (jacobian.has_value()) {
    TORCH_CHECK_TYPE(jacobian->scalar_type() == feature.scalar_type(), op, ": jacobian must have feature's dtype");
    p.jacobian = jacobian->contiguous();
  }
  const int64_t D = dims == 3 ? feature.size(2) : 1, H = feature.size(dims), W = feature.size(dims + 1);
  TORCH_CHECK_VALUE(D > 0 && H > 0 && W > 0, op, ": feature's spatial sizes must be non-zero");  // the sampler reads them
  p.pb = Problem{scalar_kind(feature, op, "feature"),
                 feature.size(0),
                 feature.size(1),
                 K,
                 dims,
                 D, H, W,
                 D, H, W,
                 p.feature.const_data_ptr(),
                 p.kp_source.const_data_ptr(),
                 p.kp_driving.const_data_ptr(),
                 nullptr,
                 p.jacobian.defined() ? p.jacobian.const_data_ptr() : nullptr,
                 false,
                 align_corners,
                 padding};
  return p;
}

#ifdef PYFACE_WITH_CUDA
// The CUDA keypoint reduction's scratch (N, K, keypoint_chunks(positions), dims + dims^2),
// positions being the output grid's size, in the accumulation dtype.
inline at::Tensor keypoint_partials(const Problem& pb, const at::TensorOptions& acc_options) {
  const int64_t width = pb.dims + pb.dims * pb.dims;
  return at::empty({pb.N * pb.K * keypoint_chunks(pb.out_size()) * width}, acc_options);
}

// The buffer the CUDA kernels scatter d/d feature into (FeatureScatter in keypoint_warp.h)
// and its conversion to the gradient. In the deterministic mode the kernels add value *
// scale as int64, so integer adds make the sum independent of their order; every partial
// sum of a plane (n, c) is at most the sum of |grad_output| that reaches it (the sample
// weights are at most 1), and the plane's scale is the power of two that puts that bound
// below 2^62: a resolution of bound * 2^-62, far below float rounding, with no overflow.
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

#endif  // PYFACE_WITH_CUDA

}  // namespace pyface::kpw
