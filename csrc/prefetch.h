// prefetch_ahead(p, bytes): asks for the cache lines a page past [p, p + bytes) of a long
// sequential read, as the read reaches p. The hardware prefetchers stop at every 4 KB page
// boundary and start again only after misses in the next page; on the 2-core AVX-512 EPYC VM
// the loss and pooling kernels, reading their inputs from memory, waited on those misses.
// Timed in turns with eager and torch.compile (the bench's rotation), without and with a
// prefetch a page ahead: weighted_l1_loss style-aware 512 float32 forward 2.04-2.22 ->
// 1.46-1.78 ms, ATVGnet bfloat16 inference 0.81-0.99 -> 0.59-0.80 ms; softmax_pool CLIP-size
// float32 forward+backward 1.74-1.91x -> 1.92-2.02x eager. Distances of 2 to 8 KB did alike.
// Those runs fell in a spell of slow memory on the VM (every kernel 1.5-2x its usual time);
// the same A/B half an hour later, at the usual speed, found no difference either way.
// A prefetch never faults, so the lines past the end of a buffer may be asked for.
#pragma once

#include <cstdint>

namespace pyface {
namespace {

constexpr int64_t kPrefetchAhead = 4096;
constexpr int64_t kCacheLine = 64;

inline void prefetch_ahead(const void* p, int64_t bytes) {
#if defined(__GNUC__)
  // the address is formed as an integer: a pointer past the end of its object is undefined
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(p) + kPrefetchAhead;
  for (int64_t b = 0; b < bytes; b += kCacheLine) __builtin_prefetch(reinterpret_cast<const void*>(ahead + b), 0, 3);
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace
}  // namespace pyface
