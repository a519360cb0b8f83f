// The pyface._C extension module. Importing it registers the torch.ops.pyface.* kernels
// (each op's file registers its own); this file only tells Python what was built.
#include <pybind11/pybind11.h>

#include "cpu_isa.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyface compiled kernels (C++ CPU, and CUDA when built with it)";
#ifdef PYFACE_WITH_CUDA
  constexpr bool with_cuda = true;
#else
  constexpr bool with_cuda = false;
#endif
  py::dict info;
  info["cuda"] = with_cuda;
  info["torch_version"] = PYFACE_TORCH_VERSION;
  info["cpu_isa"] = pyface::cpu_uses_avx2() ? "avx2" : "baseline";  // the CPU kernels in use
  m.attr("build_info") = info;
}
