// Registration of an op: its schemas once, and its implementations once per device this build
// has kernels for. Each op's host file writes its host functions `forward` and `backward`
// once, as templates over the device, and ends with
//   PYFACE_REGISTER_OP(name, "(forward's arguments) -> (returns)", "(backward's ...) -> ...")
// which defines pyface::name_forward and pyface::name_backward and registers the CPU
// instances, and the CUDA instances in a build with the CUDA kernels (a CPU-only build has
// no CUDA implementation to reach). An op whose forward keeps tensors for the backward also
// writes `inference` and registers it as pyface::name_inference with
//   PYFACE_REGISTER_INFERENCE_OP(name, "(arguments) -> (returns)")
#pragma once

#include <c10/core/DeviceType.h>
#include <torch/library.h>

#ifdef PYFACE_WITH_CUDA
#define PYFACE_IMPL_CUDA(register_impls) \
  TORCH_LIBRARY_IMPL(pyface, CUDA, m) { register_impls<c10::DeviceType::CUDA>(m); }
#else
#define PYFACE_IMPL_CUDA(register_impls)
#endif

#define PYFACE_REGISTER_OP(name, forward_schema, backward_schema)                     \
  TORCH_LIBRARY_FRAGMENT(pyface, m) {                                                 \
    m.def(#name "_forward" forward_schema);                                           \
    m.def(#name "_backward" backward_schema);                                         \
  }                                                                                   \
  namespace {                                                                         \
  template <c10::DeviceType kDevice>                                                  \
  void register_impls(torch::Library& m) {                                            \
    m.impl(#name "_forward", &forward<kDevice>);                                      \
    m.impl(#name "_backward", &backward<kDevice>);                                    \
  }                                                                                   \
  }                                                                                   \
  TORCH_LIBRARY_IMPL(pyface, CPU, m) { register_impls<c10::DeviceType::CPU>(m); }     \
  PYFACE_IMPL_CUDA(register_impls)

#define PYFACE_REGISTER_INFERENCE_OP(name, schema)                                            \
  TORCH_LIBRARY_FRAGMENT(pyface, m) { m.def(#name "_inference" schema); }                     \
  namespace {                                                                               \
  template <c10::DeviceType kDevice>                                                        \
  void register_inference_impls(torch::Library& m) {                                        \
    m.impl(#name "_inference", &inference<kDevice>);                                        \
  }                                                                                         \
  }                                                                                         \
  TORCH_LIBRARY_IMPL(pyface, CPU, m) { register_inference_impls<c10::DeviceType::CPU>(m); } \
  PYFACE_IMPL_CUDA(register_inference_impls)
