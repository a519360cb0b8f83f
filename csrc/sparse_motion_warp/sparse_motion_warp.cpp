// Host side of the dense-motion network's input and the registration of its ops. Argument
// errors a user can make are reported in Python (pyface/ops/sparse_motion_warp.py); the
// checks here guard the op.
#include "sparse_motion_warp/sparse_motion_warp.h"

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

constexpr const char* kOp = "sparse_motion_warp";

PreparedKeypoints prepare(const at::Tensor& feature, const at::Tensor& kp_source, const at::Tensor& kp_driving,
                          const std::optional<at::Tensor>& jacobian, bool align_corners, int64_t padding) {
  return prepare_keypoints(kOp, feature, kp_source, kp_driving, jacobian, align_corners, padding);
}

// The kernels of each device, as the host functions below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void forward(const PreparedKeypoints& p, void* output) {
    at::Tensor plane;
    PYFACE_CPU_CALL(sparse_forward_cpu)(p.pb, output, scratch(p, plane));
  }
  // always deterministic: tasks own blocks of channels
  static void backward(const PreparedKeypoints& p, const Grads& grads, const at::Tensor&, bool, bool, at::Tensor&) {
    at::Tensor plane;
    PYFACE_CPU_CALL(sparse_backward_cpu)(p.pb, grads, scratch(p, plane));
  }
  // Without a jacobian the separable kernels need no channels-last copy (sparse_motion_warp.h).
  static void* scratch(const PreparedKeypoints& p, at::Tensor& holder) {
    return p.pb.jacobian == nullptr ? nullptr : cpu_channels_last_scratch(p, holder);
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void forward(const PreparedKeypoints& p, void* output) {
    sparse_forward_cuda(p.pb, output, p.feature.get_device());
  }
  // d/d feature is scattered into `sums` and converted into grad_feature afterwards
  static void backward(const PreparedKeypoints& p, const Grads& grads, const at::Tensor& grad_output,
                       bool feature_grad, bool deterministic, at::Tensor& grad_feature) {
    const at::Tensor& feature = p.feature;
    at::Tensor partials = keypoint_partials(p.pb, feature.options().dtype(accumulate_type(feature.scalar_type())));
    // every motion's samples reach plane (n, c)
    const ScatterSums sums(feature, grad_output.transpose(1, 2), feature_grad, deterministic);
    sparse_backward_cuda(p.pb, grads, sums.view(), partials.data_ptr(), feature.get_device());
    if (feature_grad) grad_feature = sums.gradient(feature.scalar_type());
  }
};
#endif

template <c10::DeviceType kDevice>
at::Tensor forward(const at::Tensor& feature, const at::Tensor& kp_source, const at::Tensor& kp_driving,
                   const std::optional<at::Tensor>& jacobian, bool align_corners, int64_t padding) {
  const PreparedKeypoints p = prepare(feature, kp_source, kp_driving, jacobian, align_corners, padding);
  std::vector<int64_t> shape{p.pb.N, p.pb.K + 1, p.pb.C};
  for (int64_t d = 2; d < feature.dim(); ++d) shape.push_back(feature.size(d));
  at::Tensor output = on_huge_pages(at::empty(shape, feature.options()));
  if (output.numel() > 0) Kernels<kDevice>::forward(p, output.data_ptr());
  return output;
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_output, const at::Tensor& feature, const at::Tensor& kp_source,
    const at::Tensor& kp_driving, const std::optional<at::Tensor>& jacobian, bool align_corners, int64_t padding,
    bool feature_grad, bool deterministic) {
  const PreparedKeypoints p = prepare(feature, kp_source, kp_driving, jacobian, align_corners, padding);
  const at::Tensor go = grad_output.to(feature.scalar_type()).contiguous();
  TORCH_CHECK_VALUE(go.dim() == feature.dim() + 1 && go.size(0) == p.pb.N && go.size(1) == p.pb.K + 1 &&
                        go.sizes().slice(2) == feature.sizes().slice(1),
                    kOp, ": grad_output must be (N, K+1, C, *S)");
  at::Tensor grad_feature = on_huge_pages(at::empty(feature_grad ? feature.sizes() : at::IntArrayRef({0}), feature.options()));
  at::Tensor grad_source = at::empty(kp_source.sizes(), feature.options());
  at::Tensor grad_driving = at::empty(kp_source.sizes(), feature.options());
  at::Tensor grad_jacobian = at::empty(jacobian.has_value() ? jacobian->sizes() : at::IntArrayRef({0}), feature.options());
  if (feature.numel() == 0) {  // nothing is sampled: every gradient is zero
    for (at::Tensor* t : {&grad_feature, &grad_source, &grad_driving, &grad_jacobian}) t->zero_();
    return {grad_feature, grad_source, grad_driving, grad_jacobian};
  }
  const Grads grads{go.const_data_ptr(),
                    nullptr,
                    feature_grad ? grad_feature.data_ptr() : nullptr,
                    grad_source.data_ptr(),
                    grad_driving.data_ptr(),
                    nullptr,
                    jacobian.has_value() ? grad_jacobian.data_ptr() : nullptr};
  Kernels<kDevice>::backward(p, grads, go, feature_grad, deterministic, grad_feature);
  return {grad_feature, grad_source, grad_driving, grad_jacobian};
}

}  // namespace

PYFACE_REGISTER_OP(
    sparse_motion_warp,
    "(Tensor feature, Tensor kp_source, Tensor kp_driving, Tensor? jacobian, bool align_corners, "
    "int padding) -> Tensor",
    "(Tensor grad_output, Tensor feature, Tensor kp_source, Tensor kp_driving, Tensor? jacobian, "
    "bool align_corners, int padding, bool feature_grad, bool deterministic) -> (Tensor, Tensor, Tensor, "
    "Tensor)")

}  // namespace pyface::kpw
