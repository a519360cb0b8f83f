// The pyface._C extension module. Importing it registers the torch.ops.pyface.* kernels
// (each op's file registers its own); this file tells Python what was built, and holds the
// one host helper that Python cannot reach by itself.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <pybind11/pybind11.h>

#include "cpu_isa.h"

namespace py = pybind11;

namespace {

// torch.set_flush_denormal sets the calling thread's floating-point mode only; ATen's
// intra-op threads keep theirs, so half of a parallel op on 2 threads still ran at the
// subnormal speed. One chunk per thread sets the mode in each of them, then in the caller.
bool set_flush_denormal_all_threads(bool on) {
  at::parallel_for(0, at::get_num_threads(), 1, [on](int64_t, int64_t) { at::globalContext().setFlushDenormal(on); });
  return at::globalContext().setFlushDenormal(on);
}

}  // namespace

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
  info["cpu_isa"] = pyface::cpu_isa_name(pyface::cpu_isa());  // the CPU kernels in use
#ifdef PYFACE_HAVE_X86_KERNELS
  info["cpu_kernels_built"] = py::make_tuple("baseline", "avx2", "avx512");
#else
  info["cpu_kernels_built"] = py::make_tuple("baseline");
#endif
  m.attr("build_info") = info;
  m.def("set_flush_denormal_all_threads", &set_flush_denormal_all_threads, py::arg("on"),
        "torch.set_flush_denormal in every ATen intra-op thread as well as the caller's; False where the CPU "
        "cannot flush subnormals");
}
