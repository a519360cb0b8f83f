// Registration of an op's implementations, one per device this build has kernels for. An
// op's host file writes its host functions once, as templates over the device, and a
// `template <c10::DeviceType> void register_impls(torch::Library&)` that names them;
// PYFACE_IMPL_EACH_DEVICE(register_impls) registers its CPU instance, and its CUDA instance
// in a build with the CUDA kernels (a CPU-only build has no CUDA implementation to reach).
#pragma once

#include <c10/core/DeviceType.h>
#include <torch/library.h>

#define PYFACE_IMPL_CPU(register_impls) \
  TORCH_LIBRARY_IMPL(pyface, CPU, m) { register_impls<c10::DeviceType::CPU>(m); }

#ifdef PYFACE_WITH_CUDA
#define PYFACE_IMPL_CUDA(register_impls) \
  TORCH_LIBRARY_IMPL(pyface, CUDA, m) { register_impls<c10::DeviceType::CUDA>(m); }
#else
#define PYFACE_IMPL_CUDA(register_impls)
#endif

#define PYFACE_IMPL_EACH_DEVICE(register_impls) PYFACE_IMPL_CPU(register_impls) PYFACE_IMPL_CUDA(register_impls)
