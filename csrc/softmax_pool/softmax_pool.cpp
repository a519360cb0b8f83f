// Host side of spatial softmax attention pooling: the building blocks declared in
// softmax_pool_ops.h and the registration of the softmax_pool ops. Argument errors a user can
// make are reported in Python (pyface/ops/softmax_pool.py); the checks here guard the op.
#include "softmax_pool/softmax_pool_ops.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "cpu_isa.h"
#include "huge_pages.h"
#include "register.h"
#include "tensor_kind.h"

namespace pyface::spool {

PreparedValues prepare_values(const at::Tensor& values, const char* op) {
  TORCH_CHECK_VALUE(values.dim() == 3, op, ": values must be viewed as (N, C, P)");
  PreparedValues prepared;
  // (N, P, C) contiguous read as (N, C, P) is channels-last; take channels-first when both hold
  const bool channels_last = !values.is_contiguous() && values.transpose(1, 2).is_contiguous();
  prepared.tensor = channels_last ? values : values.contiguous();
  prepared.v = Values{scalar_kind(values, op, "values"), prepared.tensor.const_data_ptr(),
                      values.size(0), values.size(1), values.size(2), channels_last};
  return prepared;
}

namespace {

// The kernels of each device, as the building blocks below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void softmax(ScalarKind kind, const at::Tensor& scores, at::Tensor& attention) {
    PYFACE_CPU_CALL(softmax_cpu)(kind, scores.const_data_ptr(), attention.data_ptr(), scores.size(0), scores.size(1));
  }
  static void pool(const PreparedValues& values, const at::Tensor& attention, at::Tensor& pooled) {
    PYFACE_CPU_CALL(pool_cpu)(values.v, attention.const_data_ptr(), pooled.data_ptr());
  }
  static void pool_backward(const PreparedValues& values, const at::Tensor& attention, const at::Tensor& grad_pooled,
                            const void* grad_attention, at::Tensor& grad_scores, void* grad_values) {
    PYFACE_CPU_CALL(pool_backward_cpu)(values.v, attention.const_data_ptr(), grad_pooled.const_data_ptr(),
                                       grad_attention, grad_scores.data_ptr(), grad_values);
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void softmax(ScalarKind kind, const at::Tensor& scores, at::Tensor& attention) {
    softmax_cuda(kind, scores.const_data_ptr(), attention.data_ptr(), scores.size(0), scores.size(1),
                 scores.get_device());
  }
  static void pool(const PreparedValues& values, const at::Tensor& attention, at::Tensor& pooled) {
    pool_cuda(values.v, attention.const_data_ptr(), pooled.data_ptr(), values.tensor.get_device());
  }
  static void pool_backward(const PreparedValues& values, const at::Tensor& attention, const at::Tensor& grad_pooled,
                            const void* grad_attention, at::Tensor& grad_scores, void* grad_values) {
    at::Tensor scratch =
        at::empty({pool_backward_cuda_scratch_bytes(values.v)}, values.tensor.options().dtype(at::kByte));
    pool_backward_cuda(values.v, attention.const_data_ptr(), grad_pooled.const_data_ptr(), grad_attention,
                       grad_scores.data_ptr(), grad_values, scratch.data_ptr(), values.tensor.get_device());
  }
};
#endif

}  // namespace

template <c10::DeviceType kDevice>
at::Tensor softmax(const at::Tensor& scores) {
  TORCH_CHECK_VALUE(scores.dim() == 2, "softmax_pool: scores must be viewed as (N, P)");
  const at::Tensor s = scores.contiguous();
  const ScalarKind kind = scalar_kind(s, "softmax_pool", "scores");
  at::Tensor attention = at::empty(s.sizes(), s.options().dtype(accumulate_type(s.scalar_type())));
  if (s.numel() == 0) return attention;
  Kernels<kDevice>::softmax(kind, s, attention);
  return attention;
}

namespace {

void check_attention(const PreparedValues& values, const at::Tensor& attention) {
  const Values& v = values.v;
  TORCH_CHECK_VALUE(attention.dim() == 2 && attention.size(0) == v.N && attention.size(1) == v.P,
                    "softmax_pool: attention must be (N, P) of the values");
  TORCH_CHECK_TYPE(attention.scalar_type() == accumulate_type(values.tensor.scalar_type()) && attention.is_contiguous(),
                   "softmax_pool: attention must be contiguous in the accumulation dtype");
}

}  // namespace

template <c10::DeviceType kDevice>
at::Tensor pool(const PreparedValues& values, const at::Tensor& attention) {
  check_attention(values, attention);
  const Values& v = values.v;
  if (v.N * v.C == 0 || v.P == 0) return at::zeros({v.N, v.C}, values.tensor.options());
  at::Tensor pooled = at::empty({v.N, v.C}, values.tensor.options());
  Kernels<kDevice>::pool(values, attention, pooled);
  return pooled;
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> pool_backward(const PreparedValues& values, const at::Tensor& attention,
                                                 const at::Tensor& grad_pooled,
                                                 const std::optional<at::Tensor>& grad_attention, bool values_grad) {
  check_attention(values, attention);
  const Values& v = values.v;
  TORCH_CHECK_VALUE(grad_pooled.dim() == 2 && grad_pooled.size(0) == v.N && grad_pooled.size(1) == v.C,
                    "softmax_pool: grad_pooled must be (N, C)");
  const at::Tensor gp = grad_pooled.to(values.tensor.scalar_type()).contiguous();
  at::Tensor ga;
  if (grad_attention.has_value()) {
    TORCH_CHECK_VALUE(grad_attention->sizes() == attention.sizes(), "softmax_pool: grad_attention must be (N, P)");
    ga = grad_attention->to(attention.scalar_type()).contiguous();
  }
  at::Tensor grad_scores = at::empty(attention.sizes(), attention.options());
  at::Tensor grad_values = values_grad ? on_huge_pages(at::empty_like(values.tensor)) : at::Tensor();
  if (v.N * v.C * v.P == 0) {  // no values to read: only the attention's own gradient reaches the scores
    if (ga.defined() && grad_scores.numel() > 0)
      grad_scores.copy_(at::mul(attention, at::sub(ga, at::sum(at::mul(attention, ga), {1}, /*keepdim=*/true))));
    else
      grad_scores.zero_();
    if (values_grad) grad_values.zero_();
    return {grad_scores, grad_values};
  }
  const void* ga_ptr = ga.defined() ? ga.const_data_ptr() : nullptr;
  void* gv_ptr = values_grad ? grad_values.data_ptr() : nullptr;
  Kernels<kDevice>::pool_backward(values, attention, gp, ga_ptr, grad_scores, gv_ptr);
  return {grad_scores, grad_values};
}

namespace {

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> forward(const at::Tensor& scores, const at::Tensor& values) {
  TORCH_CHECK_VALUE(scores.dim() == 2 && values.dim() == 3 && scores.size(0) == values.size(0) &&
                        scores.size(1) == values.size(2),
                    "softmax_pool: scores (N, P) and values (N, C, P) must agree");
  TORCH_CHECK_TYPE(scores.scalar_type() == values.scalar_type(), "softmax_pool: scores and values must share a dtype");
  const PreparedValues prepared = prepare_values(values, "softmax_pool");
  at::Tensor attention = softmax<kDevice>(scores);
  return {pool<kDevice>(prepared, attention), attention};
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> backward(const at::Tensor& grad_pooled, const std::optional<at::Tensor>& grad_attention,
                                            const at::Tensor& values, const at::Tensor& attention, bool values_grad) {
  const PreparedValues prepared = prepare_values(values, "softmax_pool");
  auto [grad_scores, grad_values] = pool_backward<kDevice>(prepared, attention, grad_pooled, grad_attention, values_grad);
  if (!values_grad) grad_values = at::empty({0}, values.options());
  return {grad_scores, grad_values};
}

}  // namespace

// The building blocks for each device with kernels (the global-local attention op uses them too).
#define PYFACE_SPOOL_INSTANTIATE(device)                                                                       \
  template at::Tensor softmax<device>(const at::Tensor&);                                                       \
  template at::Tensor pool<device>(const PreparedValues&, const at::Tensor&);                                  \
  template std::tuple<at::Tensor, at::Tensor> pool_backward<device>(const PreparedValues&, const at::Tensor&, \
                                                                    const at::Tensor&,                          \
                                                                    const std::optional<at::Tensor>&, bool);
PYFACE_SPOOL_INSTANTIATE(c10::DeviceType::CPU)
#ifdef PYFACE_WITH_CUDA
PYFACE_SPOOL_INSTANTIATE(c10::DeviceType::CUDA)
#endif

PYFACE_REGISTER_OP(
    softmax_pool,
    "(Tensor scores, Tensor values) -> (Tensor, Tensor)",
    "(Tensor grad_pooled, Tensor? grad_attention, Tensor values, Tensor attention, "
    "bool values_grad) -> (Tensor, Tensor)")

}  // namespace pyface::spool
