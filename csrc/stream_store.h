// stream_store(dst, src, bytes): copies a block a kernel staged in cache to its place in a large
// output with non-temporal stores on x86-64: the output's cache lines are written without being
// read first (a plain store reads each line before writing it) and do not push the kernel's
// inputs out of the cache. memcpy elsewhere. stream_store_fence() makes those stores visible
// in order; call it before the work item ends (before at::parallel_for's threads join).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PYFACE_STREAM_STORES 1
#endif

namespace pyface {
namespace {

// Below this an output may well still be in cache when it is next read: plain stores.
constexpr int64_t kStreamStoreMinBytes = int64_t(4) << 20;

inline void stream_store(void* dst, const void* src, size_t bytes) {
#ifdef PYFACE_STREAM_STORES
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  const size_t head = std::min(bytes, size_t((16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15));
  std::memcpy(d, s, head);
  d += head, s += head, bytes -= head;
  for (; bytes >= 16; d += 16, s += 16, bytes -= 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  std::memcpy(d, s, bytes);
#else
  std::memcpy(dst, src, bytes);
#endif
}

inline void stream_store_fence() {
#ifdef PYFACE_STREAM_STORES
  _mm_sfence();
#endif
}

}  // namespace
}  // namespace pyface
