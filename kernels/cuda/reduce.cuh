// Warp and block reductions shared by the CUDA kernels, in a fixed order (deterministic).
#pragma once

#include <cuda_runtime.h>

namespace pyface::cuda {

struct Sum {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};

// The result is valid in every lane.
template <typename T, typename Op = Sum>
__device__ __forceinline__ T warp_reduce(T v, Op op = {}) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Over a block of kThreads threads (a multiple of 32); the result is valid in every thread.
// Safe to call repeatedly in one kernel: it synchronises before reusing its shared memory.
template <int kThreads, typename T, typename Op = Sum>
__device__ T block_reduce(T v, Op op = {}) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 1024 threads");
  __shared__ T warp_results[kThreads / 32];
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call may still be reading warp_results
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  T result = warp_results[0];
  for (int w = 1; w < kThreads / 32; ++w) result = op(result, warp_results[w]);
  return result;
}

}  // namespace pyface::cuda
