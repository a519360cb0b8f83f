// CUDA kernels of spatial softmax attention pooling. The softmax runs one block per row;
// the pooling reads each value once (a warp per channel row when channels-first, a thread
// per channel when channels-last); the backward reads the values once, writes their
// gradient and partial sums of d loss / d attention per chunk of channels, which a last
// kernel adds in a fixed order before the softmax backward. Nothing waits on the host.
#include "softmax_pool/softmax_pool.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>

#include "reduce.cuh"

namespace pyface::spool {
namespace {

using pyface::cuda::block_reduce;
using pyface::cuda::Max;
using pyface::cuda::warp_reduce;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kRowsPerChunk = 64;  // channels per backward block (channels-first)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename in_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) softmax_kernel(const in_t* scores, acc_t* attention, int64_t P) {
  const in_t* s = scores + blockIdx.x * P;
  acc_t* a = attention + blockIdx.x * P;
  acc_t high = -std::numeric_limits<acc_t>::infinity();
  for (int64_t p = threadIdx.x; p < P; p += kThreads) high = max(high, acc_t(s[p]));
  high = block_reduce<kThreads>(high, Max{});
  acc_t total = 0;
  for (int64_t p = threadIdx.x; p < P; p += kThreads) total += exp(acc_t(s[p]) - high);
  const acc_t inv_total = acc_t(1) / block_reduce<kThreads>(total);
  for (int64_t p = threadIdx.x; p < P; p += kThreads) a[p] = exp(acc_t(s[p]) - high) * inv_total;
}

// Channels-first: a warp per (sample, channel) row of P positions.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
pool_channels_first_kernel(const scalar_t* values, const acc_t* attention, scalar_t* pooled, int64_t rows, int64_t C,
                           int64_t P) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp leaves; nothing below synchronises the block
  const int lane = threadIdx.x & 31;
  const scalar_t* v = values + row * P;
  const acc_t* a = attention + (row / C) * P;
  acc_t sum = 0;
  for (int64_t p = lane; p < P; p += 32) sum += a[p] * acc_t(v[p]);
  sum = warp_reduce(sum);
  if (lane == 0) pooled[row] = scalar_t(sum);
}

// Channels-last: a thread per (sample, channel); neighbouring threads read neighbouring channels.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
pool_channels_last_kernel(const scalar_t* values, const acc_t* attention, scalar_t* pooled, int64_t C, int64_t P,
                          int64_t c_blocks) {
  const int64_t n = blockIdx.x / c_blocks;
  const int64_t c = (blockIdx.x % c_blocks) * kThreads + threadIdx.x;
  if (c >= C) return;
  const scalar_t* v = values + n * P * C + c;
  const acc_t* a = attention + n * P;
  acc_t sum = 0;
  for (int64_t p = 0; p < P; ++p) sum += a[p] * acc_t(v[p * C]);
  pooled[n * C + c] = scalar_t(sum);
}

// The backward's partial sums are of grad_pooled * (values at p - values at the first position):
// the score gradient keeps only how they vary over p, and a large value common to a channel's
// positions would otherwise leave its rounding in them (as it did in the CPU and Triton kernels).
//
// Channels-first backward: a thread per position, looping over a chunk of kRowsPerChunk
// channels; partial[n, chunk, p] = sum over the chunk of grad_pooled * shifted values.
template <typename scalar_t, typename acc_t>
__global__ void pool_backward_channels_first_kernel(const scalar_t* values, const acc_t* attention,
                                                    const scalar_t* grad_pooled, acc_t* partial,
                                                    scalar_t* grad_values, int64_t C, int64_t P, int64_t c_chunks,
                                                    int64_t p_blocks) {
  const int64_t p = (blockIdx.x % p_blocks) * blockDim.x + threadIdx.x;
  const int64_t chunk = (blockIdx.x / p_blocks) % c_chunks;
  const int64_t n = blockIdx.x / (p_blocks * c_chunks);
  if (p >= P) return;
  const acc_t a = attention[n * P + p];
  const int64_t c_end = std::min(C, (chunk + 1) * kRowsPerChunk);
  acc_t g = 0;
  for (int64_t c = chunk * kRowsPerChunk; c < c_end; ++c) {
    const acc_t gc = acc_t(grad_pooled[n * C + c]);
    const int64_t at = (n * C + c) * P + p;
    g += gc * (acc_t(values[at]) - acc_t(values[at - p]));
    if (grad_values != nullptr) grad_values[at] = scalar_t(gc * a);
  }
  partial[(n * c_chunks + chunk) * P + p] = g;
}

// Channels-last backward: a warp per (sample, position) row of C channels; one partial per row.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
pool_backward_channels_last_kernel(const scalar_t* values, const acc_t* attention, const scalar_t* grad_pooled,
                                   acc_t* partial, scalar_t* grad_values, int64_t rows, int64_t C, int64_t P) {
  const int64_t row = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int lane = threadIdx.x & 31;
  const scalar_t* gp = grad_pooled + (row / P) * C;
  const scalar_t* first = values + (row / P) * P * C;  // the sample's first position
  const acc_t a = attention[row];
  acc_t g = 0;
  for (int64_t c = lane; c < C; c += 32) {
    const acc_t gc = acc_t(gp[c]);
    g += gc * (acc_t(values[row * C + c]) - acc_t(first[c]));
    if (grad_values != nullptr) grad_values[row * C + c] = scalar_t(gc * a);
  }
  g = warp_reduce(g);
  if (lane == 0) partial[row] = g;
}

// One block per sample: g = grad_attention + the partials (fixed order), then the softmax
// backward grad_scores = a * (g - sum a * g). g and the sum are formed in double: they agree
// in most of their leading digits, and in float much of the difference would be rounding.
template <typename acc_t>
__device__ __forceinline__ double attention_gradient(const acc_t* partial, const acc_t* grad_attention, int64_t n,
                                                     int64_t p, int64_t c_chunks, int64_t P) {
  double g = grad_attention != nullptr ? double(grad_attention[n * P + p]) : 0.0;
  for (int64_t k = 0; k < c_chunks; ++k) g += double(partial[(n * c_chunks + k) * P + p]);
  return g;
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
softmax_backward_kernel(const acc_t* attention, const acc_t* partial, const acc_t* grad_attention,
                        acc_t* grad_scores, int64_t c_chunks, int64_t P) {
  const int64_t n = blockIdx.x;
  double local = 0;
  for (int64_t p = threadIdx.x; p < P; p += kThreads)
    local += double(attention[n * P + p]) * attention_gradient(partial, grad_attention, n, p, c_chunks, P);
  const double mean_g = block_reduce<kThreads>(local);
  for (int64_t p = threadIdx.x; p < P; p += kThreads) {
    const double g = attention_gradient(partial, grad_attention, n, p, c_chunks, P);
    grad_scores[n * P + p] = acc_t(double(attention[n * P + p]) * (g - mean_g));
  }
}

int64_t backward_chunks(const Values& v) { return v.channels_last ? 1 : ceil_div(v.C, kRowsPerChunk); }

}  // namespace

void softmax_cuda(ScalarKind scores_kind, const void* scores, void* attention, int64_t N, int64_t P, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scalar(scores_kind, [&](auto s, auto a) {
    using in_t = decltype(s);
    using acc_t = decltype(a);
    softmax_kernel<in_t, acc_t><<<N, kThreads, 0, stream>>>(static_cast<const in_t*>(scores),
                                                            static_cast<acc_t*>(attention), P);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void pool_cuda(const Values& v, const void* attention, void* pooled, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_scalar(v.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* values = static_cast<const scalar_t*>(v.data);
    const auto* att = static_cast<const acc_t*>(attention);
    auto* out = static_cast<scalar_t*>(pooled);
    if (v.channels_last) {
      const int64_t c_blocks = ceil_div(v.C, kThreads);
      pool_channels_last_kernel<<<v.N * c_blocks, kThreads, 0, stream>>>(values, att, out, v.C, v.P, c_blocks);
    } else {
      pool_channels_first_kernel<<<ceil_div(v.N * v.C, kWarps), kThreads, 0, stream>>>(values, att, out, v.N * v.C,
                                                                                      v.C, v.P);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

int64_t pool_backward_cuda_scratch_bytes(const Values& v) {
  return v.N * backward_chunks(v) * v.P * int64_t(sizeof(double));
}

void pool_backward_cuda(const Values& v, const void* attention, const void* grad_pooled, const void* grad_attention,
                        void* grad_scores, void* grad_values, void* scratch, int device) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t chunks = backward_chunks(v);
  dispatch_scalar(v.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const auto* values = static_cast<const scalar_t*>(v.data);
    const auto* att = static_cast<const acc_t*>(attention);
    const auto* gp = static_cast<const scalar_t*>(grad_pooled);
    auto* partial = static_cast<acc_t*>(scratch);
    auto* gv = static_cast<scalar_t*>(grad_values);
    if (v.channels_last) {
      pool_backward_channels_last_kernel<<<ceil_div(v.N * v.P, kWarps), kThreads, 0, stream>>>(
          values, att, gp, partial, gv, v.N * v.P, v.C, v.P);
    } else {
      // whole warps over the positions, at most kThreads: few idle threads for small P
      const int threads = static_cast<int>(std::min<int64_t>(kThreads, ceil_div(v.P, 32) * 32));
      const int64_t p_blocks = ceil_div(v.P, threads);
      pool_backward_channels_first_kernel<<<v.N * chunks * p_blocks, threads, 0, stream>>>(
          values, att, gp, partial, gv, v.C, v.P, chunks, p_blocks);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    softmax_backward_kernel<<<v.N, kThreads, 0, stream>>>(att, partial, static_cast<const acc_t*>(grad_attention),
                                                          static_cast<acc_t*>(grad_scores), chunks, v.P);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace pyface::spool
