// The d/d feature scatter of the warping kernels (keypoint_warp.h, FeatureScatter): a float
// atomic add, or an int64 fixed-point one whose result does not depend on the order.
#pragma once

#include <cstdint>

#include "keypoint_warp/keypoint_warp.h"

namespace pyface::kpw {

// Adds v to element `at` of plane `plane` (= n * C + c) of the sums, S_in elements a plane.
template <typename acc_t>
__device__ __forceinline__ void scatter_add(const FeatureScatter& scatter, int64_t plane, int64_t plane_size,
                                            int64_t at, acc_t v) {
  const int64_t i = plane * plane_size + at;
  if (scatter.scales == nullptr) {
    atomicAdd(static_cast<acc_t*>(scatter.sums) + i, v);
  } else {  // two's-complement wrap-around makes the unsigned add a signed one
    const long long fixed = llrint(double(v) * scatter.scales[plane]);
    atomicAdd(static_cast<unsigned long long*>(scatter.sums) + i, static_cast<unsigned long long>(fixed));
  }
}

}  // namespace pyface::kpw
