// Host-side helpers shared by the ops: a tensor's dtype as the kernels' ScalarKind.
#pragma once

#include <ATen/core/Tensor.h>

#include "dispatch.h"

namespace pyface {

inline ScalarKind scalar_kind(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return ScalarKind::Float;
    case at::kDouble: return ScalarKind::Double;
    case at::kHalf: return ScalarKind::Half;
    case at::kBFloat16: return ScalarKind::BFloat16;
    default:
      TORCH_CHECK_TYPE(false, op, ": ", name, " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
  }
}

// float for float/half/bfloat16, double for double: the type kernels accumulate in.
inline at::ScalarType accumulate_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace pyface
