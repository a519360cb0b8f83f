// Host side of the keypoint heatmaps and the registration of their ops. Argument errors a
// user can make are reported in Python (pyface/ops/keypoint_heatmaps.py); the checks here
// guard the op.
#include "keypoint_heatmaps/keypoint_heatmaps.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cpu_isa.h"
#include "huge_pages.h"
#include "register.h"
#include "tensor_kind.h"

namespace pyface::kph {
namespace {

constexpr const char* kOp = "keypoint_heatmaps";

// The keypoints (kept alive) and the Problem pointing into them.
struct Prepared {
  at::Tensor kp_driving, kp_source;
  Problem pb{};
};

Prepared prepare(const at::Tensor& kp_driving, const at::Tensor& kp_source, at::IntArrayRef spatial_size,
                 double variance) {
  TORCH_CHECK_VALUE(kp_driving.dim() == 3 && (kp_driving.size(2) == 2 || kp_driving.size(2) == 3), kOp,
                    ": kp_driving must be (N, K, 2 or 3)");
  TORCH_CHECK_VALUE(kp_source.sizes() == kp_driving.sizes(), kOp, ": kp_source must have kp_driving's shape");
  TORCH_CHECK_TYPE(kp_source.scalar_type() == kp_driving.scalar_type(), kOp, ": kp_source must have kp_driving's dtype");
  TORCH_CHECK_VALUE(static_cast<int64_t>(spatial_size.size()) == kp_driving.size(2), kOp,
                    ": spatial_size must have one size per keypoint coordinate");
  TORCH_CHECK_VALUE(variance > 0, kOp, ": variance must be positive");
  Prepared p;
  p.kp_driving = kp_driving.contiguous();
  p.kp_source = kp_source.contiguous();
  const bool volume = spatial_size.size() == 3;
  p.pb = Problem{scalar_kind(kp_driving, kOp, "kp_driving"),
                 kp_driving.size(0),
                 kp_driving.size(1),
                 kp_driving.size(2),
                 volume ? spatial_size[0] : 1,
                 spatial_size[volume ? 1 : 0],
                 spatial_size[volume ? 2 : 1],
                 p.kp_driving.const_data_ptr(),
                 p.kp_source.const_data_ptr(),
                 variance};
  return p;
}

// The kernels of each device, as the host functions below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void forward(const Prepared& p, void* heatmaps) { PYFACE_CPU_CALL(forward_cpu)(p.pb, heatmaps); }
  static void backward(const Prepared& p, const void* grad, void* grad_driving, void* grad_source) {
    PYFACE_CPU_CALL(backward_cpu)(p.pb, grad, grad_driving, grad_source);
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void forward(const Prepared& p, void* heatmaps) { forward_cuda(p.pb, heatmaps, p.kp_driving.get_device()); }
  static void backward(const Prepared& p, const void* grad, void* grad_driving, void* grad_source) {
    backward_cuda(p.pb, grad, grad_driving, grad_source, p.kp_driving.get_device());
  }
};
#endif

template <c10::DeviceType kDevice>
at::Tensor forward(const at::Tensor& kp_driving, const at::Tensor& kp_source, at::IntArrayRef spatial_size,
                   double variance) {
  const Prepared p = prepare(kp_driving, kp_source, spatial_size, variance);
  std::vector<int64_t> shape{p.pb.N, p.pb.K + 1};
  shape.insert(shape.end(), spatial_size.begin(), spatial_size.end());
  at::Tensor heatmaps = on_huge_pages(at::empty(shape, kp_driving.options()));
  if (heatmaps.numel() > 0) Kernels<kDevice>::forward(p, heatmaps.data_ptr());
  return heatmaps;
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad, const at::Tensor& kp_driving,
                                            const at::Tensor& kp_source, double variance) {
  TORCH_CHECK_VALUE(grad.dim() == kp_driving.size(2) + 2 && grad.size(0) == kp_driving.size(0) &&
                        grad.size(1) == kp_driving.size(1) + 1,
                    kOp, ": grad must be (N, K+1, *spatial_size)");
  const Prepared p = prepare(kp_driving, kp_source, grad.sizes().slice(2), variance);
  const at::Tensor g = grad.to(kp_driving.scalar_type()).contiguous();
  at::Tensor grad_driving = at::empty(kp_driving.sizes(), kp_driving.options());
  at::Tensor grad_source = at::empty(kp_driving.sizes(), kp_driving.options());
  if (grad_driving.numel() == 0) return {grad_driving, grad_source};
  if (g.numel() == 0) {  // an empty grid: nothing depends on the keypoints
    grad_driving.zero_();
    grad_source.zero_();
  } else {
    Kernels<kDevice>::backward(p, g.const_data_ptr(), grad_driving.data_ptr(), grad_source.data_ptr());
  }
  return {grad_driving, grad_source};
}

}  // namespace

PYFACE_REGISTER_OP(
    keypoint_heatmaps,
    "(Tensor kp_driving, Tensor kp_source, int[] spatial_size, float variance) -> Tensor",
    "(Tensor grad, Tensor kp_driving, Tensor kp_source, float variance) -> (Tensor, Tensor)")

}  // namespace pyface::kph
