// Host-side building blocks of softmax pooling on at::Tensors, one instance per device
// (the tensors' device; instantiated in softmax_pool.cpp for CPU and, in a CUDA build, CUDA).
// softmax_pool.cpp registers the op with them and the global-local attention op reuses them
// for its softmax and pooling.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>

#include <optional>
#include <tuple>

#include "softmax_pool/softmax_pool.h"

namespace pyface::spool {

// Values (N, C, P) as the kernels read them: kept as they are when channels-first or
// channels-last dense, copied to channels-first otherwise.
struct PreparedValues {
  at::Tensor tensor;
  Values v;
};
PreparedValues prepare_values(const at::Tensor& values, const char* op);

// (N, P) scores of any float dtype -> (N, P) attention in the accumulation dtype.
template <c10::DeviceType kDevice>
at::Tensor softmax(const at::Tensor& scores);
// -> pooled (N, C) in the values' dtype.
template <c10::DeviceType kDevice>
at::Tensor pool(const PreparedValues& values, const at::Tensor& attention);
// -> grad_scores (N, P) in the accumulation dtype, and grad_values (N, C, P) in the values'
// dtype and layout (undefined unless values_grad).
template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor> pool_backward(const PreparedValues& values, const at::Tensor& attention,
                                                 const at::Tensor& grad_pooled,
                                                 const std::optional<at::Tensor>& grad_attention, bool values_grad);

}  // namespace pyface::spool
