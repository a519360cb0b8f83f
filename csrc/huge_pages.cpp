#include "huge_pages.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace pyface {
namespace {

constexpr std::uintptr_t kHugePage = std::uintptr_t{2} << 20;
constexpr int64_t kMinBytes = int64_t{4} << 20;  // below this, at most one aligned 2 MB page fits

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("PYFACE_CPU_HUGE_PAGES");
    return value == nullptr || std::strcmp(value, "0") != 0;
  }();
  return enabled;
}

// The 2 MB pages wholly inside [data, data + bytes): the ends stay on 4 KB pages, which the
// allocator may share with other blocks.
void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t last = (begin + static_cast<std::uintptr_t>(bytes)) & ~(kHugePage - 1);
  // advice only: a kernel without THP (EINVAL) leaves the memory as it was
  if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace

at::Tensor on_huge_pages(at::Tensor fresh) {
  const auto bytes = static_cast<int64_t>(fresh.nbytes());
  if (fresh.is_cpu() && bytes >= kMinBytes && huge_pages_enabled()) advise_huge_pages(fresh.data_ptr(), bytes);
  return fresh;
}

}  // namespace pyface
