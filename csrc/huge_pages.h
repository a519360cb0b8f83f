// Large CPU outputs on transparent huge pages.
#pragma once

#include <ATen/core/Tensor.h>

namespace pyface {

// `fresh`, a tensor just allocated and not yet written; where it is a CPU tensor of 4 MB or
// more, Linux is first asked to back the 2 MB aligned pages inside it with transparent huge
// pages (madvise), which takes effect on their first write.
// glibc gives allocations this large fresh memory from the kernel whenever it has returned
// the last one (it does, once other allocations free enough), and a fresh 16 MB output then
// page-faults 4096 times on its first write: 9 ms on the 2-core VM, against a 5.7 ms
// keypoint_warp. With THP in "madvise" mode (the usual default) 2 MB pages take 8 faults:
// 16 MB written fresh in 1-2.4 ms instead of 9-10 (one thread, measured on that VM).
// PYFACE_CPU_HUGE_PAGES=0 in the environment turns it off; elsewhere than Linux it is
// `fresh` as it is.
at::Tensor on_huge_pages(at::Tensor fresh);

}  // namespace pyface
