// Calls fn(scalar_t{}, acc_t{}) for a kernel's element type and its accumulation type
// (float for the half types), shared by the CPU and CUDA kernels.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace pyface {

enum class ScalarKind { Float, Double, Half, BFloat16 };

template <typename Fn>
void dispatch_scalar(ScalarKind kind, Fn fn) {
  switch (kind) {
    case ScalarKind::Float: fn(float{}, float{}); break;
    case ScalarKind::Double: fn(double{}, double{}); break;
    case ScalarKind::Half: fn(c10::Half{}, float{}); break;
    case ScalarKind::BFloat16: fn(c10::BFloat16{}, float{}); break;
  }
}

}  // namespace pyface
