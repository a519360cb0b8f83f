// Host side of keypoint-driven warping and the registration of its ops. Argument errors a
// user can make are reported in Python (pyface/ops/keypoint_warp.py); the checks here guard
// the op.
#include "keypoint_warp/keypoint_warp.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "cpu_isa.h"
#include "huge_pages.h"
#include "keypoint_warp/warp_host.h"
#include "register.h"
#include "tensor_kind.h"

namespace pyface::kpw {
namespace {

constexpr const char* kOp = "keypoint_warp";

// The shared inputs, and the mask (kept alive), which sets the output grid.
struct Prepared : PreparedKeypoints {
  at::Tensor mask;
};

Prepared prepare(const at::Tensor& feature, const at::Tensor& kp_source, const at::Tensor& kp_driving,
                 const at::Tensor& mask, const std::optional<at::Tensor>& jacobian, bool mask_logits,
                 bool align_corners, int64_t padding) {
  Prepared p;
  static_cast<PreparedKeypoints&>(p) =
      prepare_keypoints(kOp, feature, kp_source, kp_driving, jacobian, align_corners, padding);
  const int64_t dims = p.pb.dims;
  TORCH_CHECK_VALUE(mask.dim() == dims + 2 && mask.size(0) == feature.size(0) && mask.size(1) == p.pb.K + 1, kOp,
                    ": mask must be (N, K+1, *S_out)");
  TORCH_CHECK_TYPE(mask.scalar_type() == feature.scalar_type(), kOp, ": all float inputs must share feature's dtype");
  p.mask = mask.contiguous();
  p.pb.D_out = dims == 3 ? mask.size(2) : 1;
  p.pb.H_out = mask.size(dims);
  p.pb.W_out = mask.size(dims + 1);
  p.pb.mask = p.mask.const_data_ptr();
  p.pb.mask_logits = mask_logits;
  return p;
}

std::vector<int64_t> deformation_shape(const at::Tensor& mask, int64_t dims) {
  std::vector<int64_t> shape{mask.size(0)};
  for (int64_t d = 2; d < mask.dim(); ++d) shape.push_back(mask.size(d));
  shape.push_back(dims);
  return shape;
}

// The kernels of each device, as the host functions below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void forward(const Prepared& p, void* output, void* deformation, void* motion_weights) {
    at::Tensor plane;
    PYFACE_CPU_CALL(forward_cpu)(p.pb, output, deformation, motion_weights, cpu_channels_last_scratch(p, plane));
  }
  // always deterministic: tasks own blocks of channels
  static void backward(const Prepared& p, const at::Tensor& deformation, const at::Tensor& motion_weights,
                       const Grads& grads, const at::Tensor&, bool, bool, at::Tensor&) {
    at::Tensor plane;
    PYFACE_CPU_CALL(backward_cpu)(p.pb, deformation.const_data_ptr(), motion_weights.const_data_ptr(), grads,
                                  cpu_channels_last_scratch(p, plane));
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void forward(const Prepared& p, void* output, void* deformation, void* motion_weights) {
    forward_cuda(p.pb, output, deformation, motion_weights, p.feature.get_device());
  }
  // d/d feature is scattered into `sums` and converted into grad_feature afterwards
  static void backward(const Prepared& p, const at::Tensor& deformation, const at::Tensor& motion_weights,
                       const Grads& grads, const at::Tensor& grad_output, bool feature_grad, bool deterministic,
                       at::Tensor& grad_feature) {
    const at::Tensor& feature = p.feature;
    const auto acc_options = feature.options().dtype(accumulate_type(feature.scalar_type()));
    at::Tensor position_grads = at::empty(deformation.sizes(), acc_options);
    at::Tensor partials = keypoint_partials(p.pb, acc_options);
    const ScatterSums sums(feature, grad_output, feature_grad, deterministic);
    backward_cuda(p.pb, deformation.const_data_ptr(), motion_weights.const_data_ptr(), grads, sums.view(),
                  position_grads.data_ptr(), partials.data_ptr(), feature.get_device());
    if (feature_grad) grad_feature = sums.gradient(feature.scalar_type());
  }
};
#endif

// output, deformation and motion weights; the weights (kept for the backward) and the
// deformation are stored only when asked for, else returned as empty tensors.
template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_forward(const Prepared& p, const at::Tensor& mask,
                                                           bool keep_weights, bool with_deformation) {
  const at::Tensor& feature = p.feature;
  std::vector<int64_t> out_shape{feature.size(0), feature.size(1)};
  for (int64_t d = 2; d < mask.dim(); ++d) out_shape.push_back(mask.size(d));
  at::Tensor output = on_huge_pages(at::empty(out_shape, feature.options()));
  const auto acc_options = feature.options().dtype(accumulate_type(feature.scalar_type()));
  at::Tensor deformation =
      at::empty(with_deformation ? deformation_shape(mask, p.pb.dims) : std::vector<int64_t>{0}, acc_options);
  at::Tensor motion_weights = at::empty(keep_weights ? mask.sizes() : at::IntArrayRef({0}), acc_options);
  // with C = 0 the deformation and the weights still depend on the keypoints and the mask
  if (p.pb.N * p.pb.out_size() > 0 && (output.numel() > 0 || with_deformation || keep_weights))
    Kernels<kDevice>::forward(p, output.data_ptr(), with_deformation ? deformation.data_ptr() : nullptr,
                              keep_weights ? motion_weights.data_ptr() : nullptr);
  return {output, deformation, motion_weights};
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const at::Tensor& feature, const at::Tensor& kp_source,
                                           const at::Tensor& kp_driving, const at::Tensor& mask,
                                           const std::optional<at::Tensor>& jacobian, bool mask_logits,
                                           bool align_corners, int64_t padding) {
  const Prepared p = prepare(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding);
  return run_forward<kDevice>(p, mask, true, true);
}

// The forward without autograd: no motion weights, and the deformation (else an empty tensor)
// only when asked for.
template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> inference(const at::Tensor& feature, const at::Tensor& kp_source,
                                             const at::Tensor& kp_driving, const at::Tensor& mask,
                                             const std::optional<at::Tensor>& jacobian, bool mask_logits,
                                             bool align_corners, int64_t padding, bool return_deformation) {
  const Prepared p = prepare(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding);
  auto [output, deformation, _] = run_forward<kDevice>(p, mask, false, return_deformation);
  return {output, deformation};
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const std::optional<at::Tensor>& grad_deformation, const at::Tensor& feature,
    const at::Tensor& kp_source, const at::Tensor& kp_driving, const at::Tensor& mask,
    const std::optional<at::Tensor>& jacobian, const at::Tensor& deformation, const at::Tensor& motion_weights,
    bool mask_logits, bool align_corners, int64_t padding, bool feature_grad, bool deterministic) {
  const Prepared p = prepare(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding);
  const auto acc = accumulate_type(feature.scalar_type());
  TORCH_CHECK_VALUE(deformation.scalar_type() == acc && deformation.is_contiguous() &&
                        deformation.sizes() == at::IntArrayRef(deformation_shape(mask, p.pb.dims)),
                    kOp, ": deformation must be the one the forward returned");
  TORCH_CHECK_VALUE(motion_weights.scalar_type() == acc && motion_weights.is_contiguous() &&
                        motion_weights.sizes() == mask.sizes(),
                    kOp, ": motion_weights must be the ones the forward returned");
  const at::Tensor go = grad_output.to(feature.scalar_type()).contiguous();
  at::Tensor gd;
  if (grad_deformation.has_value()) gd = grad_deformation->to(acc).contiguous();
  at::Tensor grad_feature = on_huge_pages(at::empty(feature_grad ? feature.sizes() : at::IntArrayRef({0}), feature.options()));
  at::Tensor grad_source = at::empty(kp_source.sizes(), feature.options());
  at::Tensor grad_driving = at::empty(kp_source.sizes(), feature.options());
  at::Tensor grad_mask = at::empty(mask.sizes(), feature.options());
  at::Tensor grad_jacobian = jacobian.has_value() ? at::empty(jacobian->sizes(), feature.options())
                                                  : at::empty({0}, feature.options());
  // No output position: every gradient is zero. (With C = 0 the deformation still depends on
  // the keypoints and the mask, so their gradients are computed.)
  if (deformation.numel() == 0) {
    for (at::Tensor* t : {&grad_feature, &grad_source, &grad_driving, &grad_mask, &grad_jacobian}) t->zero_();
    return {grad_feature, grad_source, grad_driving, grad_mask, grad_jacobian};
  }
  const Grads grads{go.const_data_ptr(),
                    gd.defined() ? gd.const_data_ptr() : nullptr,
                    feature_grad ? grad_feature.data_ptr() : nullptr,
                    grad_source.data_ptr(),
                    grad_driving.data_ptr(),
                    grad_mask.data_ptr(),
                    jacobian.has_value() ? grad_jacobian.data_ptr() : nullptr};
  Kernels<kDevice>::backward(p, deformation, motion_weights, grads, go, feature_grad, deterministic, grad_feature);
  return {grad_feature, grad_source, grad_driving, grad_mask, grad_jacobian};
}

}  // namespace

PYFACE_REGISTER_OP(
    keypoint_warp,
    "(Tensor feature, Tensor kp_source, Tensor kp_driving, Tensor mask, Tensor? jacobian, "
    "bool mask_logits, bool align_corners, int padding) -> (Tensor, Tensor, Tensor)",
    "(Tensor grad_output, Tensor? grad_deformation, Tensor feature, Tensor kp_source, Tensor kp_driving, "
    "Tensor mask, Tensor? jacobian, Tensor deformation, Tensor motion_weights, bool mask_logits, "
    "bool align_corners, int padding, bool feature_grad, bool deterministic) -> (Tensor, Tensor, Tensor, "
    "Tensor, Tensor)")
PYFACE_REGISTER_INFERENCE_OP(
    keypoint_warp,
    "(Tensor feature, Tensor kp_source, Tensor kp_driving, Tensor mask, Tensor? jacobian, "
    "bool mask_logits, bool align_corners, int padding, bool return_deformation) -> (Tensor, Tensor)")

}  // namespace pyface::kpw
