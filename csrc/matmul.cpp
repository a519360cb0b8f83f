#include "matmul.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <ATen/ops/mm.h>

#include <optional>

namespace pyface {
namespace {

// The oneDNN linear op, or none when this torch was built without it.
const std::optional<c10::OperatorHandle>& onednn_linear() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  return op;
}

// The CPU features oneDNN needs to run bfloat16 and float16 products natively (decided once).
// Elsewhere than x86-64, torch's own products are kept.
struct ReducedPrecisionProducts {
  bool bfloat16 = true, float16 = true;
};

const ReducedPrecisionProducts& native_reduced_precision_products() {
  static const ReducedPrecisionProducts native = [] {
    ReducedPrecisionProducts n;
#if defined(__x86_64__) && defined(__GNUC__)
    n.bfloat16 = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq");
    n.float16 = __builtin_cpu_supports("avx512fp16");
#endif
    return n;
  }();
  return native;
}

}  // namespace

bool widened_for_product(const at::Tensor& t) {
  if (!t.is_cpu()) return false;
  const ReducedPrecisionProducts& native = native_reduced_precision_products();
  return (t.scalar_type() == at::kBFloat16 && !native.bfloat16) || (t.scalar_type() == at::kHalf && !native.float16);
}

at::Tensor product_operand(const at::Tensor& t) {
  return widened_for_product(t) ? t.to(at::kFloat) : t;
}

bool mm_nt_uses_onednn(const at::Tensor& a) {
  return a.is_cpu() && (a.scalar_type() == at::kFloat || widened_for_product(a)) && at::hasMKLDNN() &&
         at::globalContext().userEnabledMkldnn() && onednn_linear().has_value();
}

at::Tensor mm_nt(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(1), "mm_nt: a (M, K) and b (N, K)");
  if (widened_for_product(a)) {
    const at::Tensor a_wide = a.to(at::kFloat, false, false, at::MemoryFormat::Contiguous);
    return mm_nt(a_wide, product_operand(b)).to(a.scalar_type());
  }
  if (!mm_nt_uses_onednn(a) || b.scalar_type() != at::kFloat || a.numel() == 0 || b.numel() == 0)
    return at::mm(a, b.t());
  // a linear layer without bias or activation: input a, weight b. oneDNN reads a weight in
  // either order at full speed (a transposed view costs no copy), but any other strides (a
  // column block of a wider matrix) take a path thousands of times slower, and a strided
  // input is copied anyway
  const at::Tensor weight = b.is_contiguous() || b.t().is_contiguous() ? b : b.contiguous();
  torch::jit::Stack stack{a.contiguous(), weight, c10::IValue(), c10::IValue("none"),
                          c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue("")};
  onednn_linear()->callBoxed(stack);
  return stack[0].toTensor();
}

}  // namespace pyface
