// Host side of the masked weighted L1 loss: turns the op's tensors into a Problem
// (contiguous input/target, broadcast weight as strides, labels, class weights),
// allocates the outputs and runs the CPU or CUDA kernel. Argument errors a user can make
// are reported in Python (pyface/ops/weighted_l1_loss.py); the checks here guard the op.
#include "weighted_l1_loss/weighted_l1_loss.h"

#include "cpu_isa.h"
#include "huge_pages.h"
#include "register.h"
#include "tensor_kind.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

namespace pyface::wl1 {
namespace {

// The spatial dims (2..) of an expanded weight, read as one axis: stride 0 when the
// weight is broadcast over all of them, 1 when they are laid out contiguously; nullopt
// for anything else, which is then materialised.
std::optional<int64_t> flat_spatial_stride(const at::Tensor& w) {
  bool all_zero = true, contiguous = true;
  int64_t expected = 1;
  for (int64_t d = w.dim() - 1; d >= 2; --d) {
    if (w.size(d) == 1) continue;
    all_zero = all_zero && w.stride(d) == 0;
    contiguous = contiguous && w.stride(d) == expected;
    expected *= w.size(d);
  }
  if (all_zero) return 0;
  if (contiguous) return 1;
  return std::nullopt;
}

// Tensors the Problem points into, kept alive while the kernels run.
struct Prepared {
  at::Tensor input, target, weight, labels, class_weights;
  Problem pb{};
};

Prepared prepare(const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight,
                 const std::optional<at::Tensor>& labels, const std::optional<at::Tensor>& class_weights) {
  TORCH_CHECK_VALUE(input.dim() >= 3 && input.dim() <= 5, "weighted_l1_loss: input must be (N, C, *S) with 1 to 3 spatial dims");
  TORCH_CHECK_VALUE(input.sizes() == target.sizes(), "weighted_l1_loss: target shape must equal input shape");
  TORCH_CHECK_TYPE(target.scalar_type() == input.scalar_type(), "weighted_l1_loss: target dtype must equal input dtype");
  TORCH_CHECK_VALUE(labels.has_value() == class_weights.has_value(), "weighted_l1_loss: labels and class_weights go together");

  Prepared p;
  Problem& pb = p.pb;
  pb.scalar = scalar_kind(input, "weighted_l1_loss", "input");
  p.input = input.contiguous();
  p.target = target.contiguous();
  pb.N = input.size(0);
  pb.C = input.size(1);
  pb.P = 1;
  for (int64_t d = 2; d < input.dim(); ++d) pb.P *= input.size(d);
  pb.input = p.input.const_data_ptr();
  pb.target = p.target.const_data_ptr();

  if (weight.has_value()) {
    TORCH_CHECK_TYPE(weight->scalar_type() == input.scalar_type(), "weighted_l1_loss: weight dtype must equal input dtype");
    at::Tensor w = weight->expand(input.sizes());
    std::optional<int64_t> sp = flat_spatial_stride(w);
    if (!sp.has_value()) {
      w = w.contiguous();
      sp = 1;
    }
    p.weight = w;
    pb.weight = w.const_data_ptr();
    pb.w_stride_n = pb.N > 1 ? w.stride(0) : 0;
    pb.w_stride_c = pb.C > 1 ? w.stride(1) : 0;
    pb.w_stride_p = *sp;
  }

  if (labels.has_value()) {
    const auto lt = labels->scalar_type();
    TORCH_CHECK_TYPE(lt == at::kByte || lt == at::kInt || lt == at::kLong, "weighted_l1_loss: labels must be uint8, int32 or int64");
    TORCH_CHECK_VALUE(labels->dim() == input.dim() - 1 && labels->size(0) == pb.N &&
                          labels->sizes().slice(1) == input.sizes().slice(2),
                      "weighted_l1_loss: labels must be (N, *S) of input");
    const auto acc = accumulate_type(input.scalar_type());
    p.labels = labels->contiguous();
    p.class_weights = class_weights->to(acc).contiguous();
    pb.labels = p.labels.const_data_ptr();
    pb.label_bytes = static_cast<int>(p.labels.element_size());
    pb.class_weights = p.class_weights.const_data_ptr();
    pb.num_classes = p.class_weights.numel();
  }
  return p;
}

// The CUDA kernels trust the labels, so they are checked here (one reduction and a sync);
// the CPU kernel checks them as it reads them, which an empty input never does.
void check_label_range(const Prepared& p) {
  if (!p.labels.defined() || p.labels.numel() == 0) return;
  auto [lo, hi] = at::aminmax(p.labels);
  const int64_t low = lo.item<int64_t>(), high = hi.item<int64_t>();
  const int64_t bad = low < 0 ? low : high;
  TORCH_CHECK_VALUE(low >= 0 && high < p.pb.num_classes, "weighted_l1_loss: labels holds ", bad,
                    ", outside [0, num_classes=", p.pb.num_classes, ")");
}

// The kernels of each device, as the host functions below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void forward(const Prepared& p, int64_t reduction, bool weight_normalize, const Outputs& out) {
    PYFACE_CPU_CALL(forward_cpu)(p.pb, reduction, weight_normalize, out);
  }
  static void backward(const Prepared& p, const void* grad_output, void* grad_input) {
    PYFACE_CPU_CALL(backward_cpu)(p.pb, grad_output, grad_input);
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void forward(const Prepared& p, int64_t reduction, bool weight_normalize, const Outputs& out) {
    check_label_range(p);
    at::Tensor scratch = at::empty({forward_cuda_scratch_bytes(p.pb)}, p.input.options().dtype(at::kByte));
    forward_cuda(p.pb, reduction, weight_normalize, out, scratch.data_ptr(), p.input.get_device());
  }
  static void backward(const Prepared& p, const void* grad_output, void* grad_input) {
    check_label_range(p);
    backward_cuda(p.pb, grad_output, grad_input, p.input.get_device());
  }
};
#endif

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& input, const at::Tensor& target,
                                           const std::optional<at::Tensor>& weight,
                                           const std::optional<at::Tensor>& labels,
                                           const std::optional<at::Tensor>& class_weights, int64_t reduction,
                                           bool weight_normalize, bool compute_grad) {
  TORCH_CHECK_VALUE(reduction >= kNone && reduction <= kMean, "weighted_l1_loss: bad reduction code ", reduction);
  const Prepared p = prepare(input, target, weight, labels, class_weights);
  const auto opts = input.options();
  at::Tensor loss, grad = at::empty({0}, opts);
  Outputs out{};
  if (reduction == kNone) {
    loss = on_huge_pages(at::empty(input.sizes(), opts));
    out.out_map = loss.data_ptr();
  } else {
    loss = at::empty({}, opts);
    out.out_loss = loss.data_ptr();
    if (compute_grad) {
      grad = on_huge_pages(at::empty(input.sizes(), opts));
      out.grad = grad.data_ptr();
    }
  }
  if (input.numel() == 0) {
    // nothing to read; an empty sum or weighted mean is 0, an empty mean 0/0 as in torch's l1_loss
    check_label_range(p);  // no channels, yet labels (N, *S) to check
    if (reduction != kNone) loss.fill_(reduction == kMean && !weight_normalize ? NAN : 0.0);
  } else {
    Kernels<kDevice>::forward(p, reduction, weight_normalize, out);
  }
  return {loss, grad};
}

template <c10::DeviceType kDevice>
at::Tensor backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& target,
                    const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& labels,
                    const std::optional<at::Tensor>& class_weights) {
  TORCH_CHECK_VALUE(grad_output.sizes() == input.sizes(), "weighted_l1_loss: grad_output must have input's shape");
  const Prepared p = prepare(input, target, weight, labels, class_weights);
  const at::Tensor go = grad_output.to(input.scalar_type()).contiguous();
  at::Tensor grad = on_huge_pages(at::empty(input.sizes(), input.options()));
  if (input.numel() > 0) Kernels<kDevice>::backward(p, go.const_data_ptr(), grad.data_ptr());
  return grad;
}

}  // namespace

PYFACE_REGISTER_OP(
    weighted_l1_loss,
    "(Tensor input, Tensor target, Tensor? weight, Tensor? labels, Tensor? class_weights, int reduction, "
    "bool weight_normalize, bool compute_grad) -> (Tensor, Tensor)",
    "(Tensor grad_output, Tensor input, Tensor target, Tensor? weight, Tensor? labels, "
    "Tensor? class_weights) -> Tensor")

}  // namespace pyface::wl1
