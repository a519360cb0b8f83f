// The identity grid the keypoint ops share with grid_sample (docs/ops.md, "Coordinates";
// pyface/contracts/grid.py): along an axis of `size` points, coordinate i is
// torch.linspace(-1, 1, size)[i]. Host and device.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace pyface {

template <typename acc_t>
C10_HOST_DEVICE inline acc_t grid_coordinate(int64_t i, int64_t size) {
  return size == 1 ? acc_t(-1) : acc_t(-1) + acc_t(2) * acc_t(i) / acc_t(size - 1);
}

}  // namespace pyface
