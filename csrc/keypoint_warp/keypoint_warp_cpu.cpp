// CPU kernels of keypoint-driven warping. Each output position forms its deformation from
// the K+1 motion weights and keypoints on the spot (no sparse-motion tensor), then samples
// the feature with grid_sample's bilinear / trilinear stencil. Tasks are (sample, block of
// positions); the stencils of a block are built once and reused over the channels. The
// backward sums d/d deformation over the channels, differentiates the motions, reduces the
// keypoint and jacobian gradients per task in a fixed order, and scatters d/d feature with
// tasks that own blocks of channels (deterministic, no atomics). The number of spatial
// dims is a template parameter, so the per-axis and per-corner loops unroll.
#include "keypoint_warp/keypoint_warp.h"

#include "cpu_isa.h"
#include "keypoint_warp/motion_sampling.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

constexpr int64_t kBlock = 256;         // output positions per task
constexpr int64_t kChannelBlock = 8;    // channels per task of the d/d feature scatter

// exp for the softmax, in a form GCC vectorises (glibc's expf has no vector variant without
// -ffast-math): 2^n * p(r) with r = x - n ln 2, |r| <= ln2 / 2, p a degree-6 polynomial
// (relative error ~2e-7 on float); arguments here are <= 0 and clamped where exp underflows.
inline float vector_exp(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}
inline double vector_exp(double x) { return std::exp(x); }

// The K+1 motion weights of a block of positions, weights[k * kBlock + j] for position
// s0 + j: the mask, or its softmax over the motions, vectorised over the positions.
template <typename scalar_t, typename acc_t>
void block_weights(const Problem& pb, int64_t n, int64_t s0, int64_t len, acc_t* weights) {
  const int64_t S = out_size(pb);
  const scalar_t* mask = static_cast<const scalar_t*>(pb.mask) + n * (pb.K + 1) * S + s0;
  for (int64_t k = 0; k <= pb.K; ++k) {
    acc_t* w = weights + k * kBlock;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) w[j] = acc_t(mask[k * S + j]);
  }
  if (!pb.mask_logits) return;
  acc_t high[kBlock], total[kBlock];
  std::copy(weights, weights + len, high);
  for (int64_t k = 1; k <= pb.K; ++k) {
    const acc_t* w = weights + k * kBlock;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) high[j] = std::max(high[j], w[j]);
  }
  std::fill(total, total + len, acc_t(0));
  for (int64_t k = 0; k <= pb.K; ++k) {
    acc_t* w = weights + k * kBlock;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      w[j] = vector_exp(w[j] - high[j]);
      total[j] += w[j];
    }
  }
  for (int64_t k = 0; k <= pb.K; ++k) {
    acc_t* w = weights + k * kBlock;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) w[j] /= total[j];
  }
}

// The deformation at (n, s) from its motion weights m_k = weights[k * stride].
template <int DIMS, typename scalar_t, typename acc_t>
void deformation_at(const Problem& pb, int64_t n, int64_t s, const acc_t* weights, int64_t stride, acc_t def[3]) {
  acc_t z[3], motion[3], rel[3];
  identity_point(pb, s, z);
  for (int64_t a = 0; a < DIMS; ++a) def[a] = weights[0] * z[a];
  for (int64_t k = 0; k < pb.K; ++k) {
    keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, k, z, motion, rel);
    for (int64_t a = 0; a < DIMS; ++a) def[a] += weights[(k + 1) * stride] * motion[a];
  }
}

template <int DIMS, typename scalar_t, typename acc_t>
void forward_tasks(const Problem& pb, scalar_t* output, acc_t* deformation, acc_t* motion_weights) {
  const int64_t S = out_size(pb), blocks = (S + kBlock - 1) / kBlock;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Stencil<DIMS, acc_t>> stencils(kBlock);
    std::vector<acc_t> weights((pb.K + 1) * kBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      block_weights<scalar_t, acc_t>(pb, n, s0, len, weights.data());
      for (int64_t k = 0; k <= pb.K; ++k)  // kept for the backward
        std::copy(weights.data() + k * kBlock, weights.data() + k * kBlock + len,
                  motion_weights + (n * (pb.K + 1) + k) * S + s0);
      for (int64_t j = 0; j < len; ++j) {
        acc_t d3[3] = {0, 0, 0};
        deformation_at<DIMS, scalar_t, acc_t>(pb, n, s0 + j, weights.data() + j, kBlock, d3);
        std::copy(d3, d3 + DIMS, deformation + (n * S + s0 + j) * DIMS);
        stencils[j].build(pb, d3);
      }
      for (int64_t c = 0; c < pb.C; ++c) {
        const scalar_t* plane = feature + (n * pb.C + c) * in_size(pb);
        scalar_t* out = output + (n * pb.C + c) * S + s0;
        for (int64_t j = 0; j < len; ++j) {
          const Stencil<DIMS, acc_t>& st = stencils[j];
          acc_t sum = 0;
          for (int o = 0; o < st.corners; ++o)
            if (st.inside[o]) sum += st.weight[o] * acc_t(plane[st.offset[o]]);
          out[j] = scalar_t(sum);
        }
      }
    }
  });
}

// Per task: d/d kp_source (K, dims), d/d kp_driving (K, dims), d/d jacobian (K, dims, dims).
int64_t partial_width(const Problem& pb) { return pb.K * (2 * pb.dims + pb.dims * pb.dims); }

template <int DIMS, typename scalar_t, typename acc_t>
void motion_backward_tasks(const Problem& pb, const acc_t* deformation, const acc_t* motion_weights, const Grads& grads,
                           std::vector<acc_t>& partials) {
  const int64_t S = out_size(pb), blocks = (S + kBlock - 1) / kBlock, dims = DIMS;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  const auto* grad_deformation = static_cast<const acc_t*>(grads.grad_deformation);
  auto* grad_mask = static_cast<scalar_t*>(grads.grad_mask);
  const auto* jac = static_cast<const scalar_t*>(pb.jacobian);
  const int64_t width = partial_width(pb);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Stencil<DIMS, acc_t>> stencils(kBlock);
    std::vector<acc_t> gdef(kBlock * 3), m(pb.K + 1), dm(pb.K + 1);
    const acc_t* sample_weights = nullptr;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      for (int64_t j = 0; j < len; ++j) {
        acc_t d3[3] = {0, 0, 0};
        std::copy(deformation + (n * S + s0 + j) * dims, deformation + (n * S + s0 + j + 1) * dims, d3);
        stencils[j].build(pb, d3);
      }
      // d loss / d deformation, summed over the channels
      std::fill(gdef.begin(), gdef.end(), acc_t(0));
      for (int64_t c = 0; c < pb.C; ++c) {
        const scalar_t* plane = feature + (n * pb.C + c) * in_size(pb);
        const scalar_t* go = grad_output + (n * pb.C + c) * S + s0;
        for (int64_t j = 0; j < len; ++j) {
          const acc_t g = acc_t(go[j]);
          const Stencil<DIMS, acc_t>& st = stencils[j];
          for (int o = 0; o < st.corners; ++o) {
            if (!st.inside[o]) continue;
            const acc_t v = g * acc_t(plane[st.offset[o]]);
            for (int64_t a = 0; a < dims; ++a) gdef[j * 3 + a] += v * st.dweight[o][a];
          }
        }
      }
      // through the motions, one position at a time
      acc_t* partial = partials.data() + task * width;
      std::fill(partial, partial + width, acc_t(0));
      acc_t* grad_source = partial;
      acc_t* grad_driving = partial + pb.K * dims;
      acc_t* grad_jac = partial + 2 * pb.K * dims;
      for (int64_t j = 0; j < len; ++j) {
        const int64_t s = s0 + j;
        acc_t g[3] = {0, 0, 0}, z[3], motion[3], rel[3];
        for (int64_t a = 0; a < dims; ++a) {
          g[a] = gdef[j * 3 + a] * stencils[j].factor[a];
          if (grad_deformation != nullptr) g[a] += grad_deformation[(n * S + s) * dims + a];
        }
        sample_weights = motion_weights + n * (pb.K + 1) * S + s;
        for (int64_t k = 0; k <= pb.K; ++k) m[k] = sample_weights[k * S];
        identity_point(pb, s, z);
        dm[0] = 0;
        for (int64_t a = 0; a < dims; ++a) dm[0] += g[a] * z[a];
        for (int64_t k = 0; k < pb.K; ++k) {
          keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, k, z, motion, rel);
          const acc_t mk = m[k + 1];
          acc_t dot = 0;
          for (int64_t a = 0; a < dims; ++a) {
            dot += g[a] * motion[a];
            grad_source[k * dims + a] += mk * g[a];
          }
          dm[k + 1] = dot;
          for (int64_t b = 0; b < dims; ++b) {
            acc_t jt_g = g[b];  // (J^T g)[b]
            if (jac != nullptr) {
              jt_g = 0;
              for (int64_t a = 0; a < dims; ++a) jt_g += acc_t(jac[((n * pb.K + k) * dims + a) * dims + b]) * g[a];
            }
            grad_driving[k * dims + b] -= mk * jt_g;
          }
          if (jac != nullptr)
            for (int64_t a = 0; a < dims; ++a)
              for (int64_t b = 0; b < dims; ++b) grad_jac[(k * dims + a) * dims + b] += mk * g[a] * rel[b];
        }
        acc_t mean_dm = 0;
        if (pb.mask_logits)
          for (int64_t k = 0; k <= pb.K; ++k) mean_dm += m[k] * dm[k];
        scalar_t* column = grad_mask + n * (pb.K + 1) * S + s;
        for (int64_t k = 0; k <= pb.K; ++k)
          column[k * S] = scalar_t(pb.mask_logits ? m[k] * (dm[k] - mean_dm) : dm[k]);
      }
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t>
void feature_backward_tasks(const Problem& pb, const acc_t* deformation, const Grads& grads) {
  const int64_t S = out_size(pb), blocks = (pb.C + kChannelBlock - 1) / kChannelBlock;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  auto* grad_feature = static_cast<scalar_t*>(grads.grad_feature);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sums(kChannelBlock * in_size(pb));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock, width = std::min(kChannelBlock, pb.C - c0);
      std::fill(sums.begin(), sums.end(), acc_t(0));
      Stencil<DIMS, acc_t> st;
      for (int64_t s = 0; s < S; ++s) {
        acc_t d3[3] = {0, 0, 0};
        std::copy(deformation + (n * S + s) * DIMS, deformation + (n * S + s + 1) * DIMS, d3);
        st.build(pb, d3);
        for (int64_t j = 0; j < width; ++j) {
          const acc_t g = acc_t(grad_output[(n * pb.C + c0 + j) * S + s]);
          acc_t* plane = sums.data() + j * in_size(pb);
          for (int o = 0; o < st.corners; ++o)
            if (st.inside[o]) plane[st.offset[o]] += st.weight[o] * g;
        }
      }
      scalar_t* out = grad_feature + (n * pb.C + c0) * in_size(pb);
      for (int64_t i = 0; i < width * in_size(pb); ++i) out[i] = scalar_t(sums[i]);
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t>
void backward_all(const Problem& pb, const acc_t* deformation, const acc_t* motion_weights, const Grads& grads) {
  const int64_t S = out_size(pb), blocks = (S + kBlock - 1) / kBlock, width = partial_width(pb), dims = DIMS;
  std::vector<acc_t> partials(pb.N * blocks * width);
  motion_backward_tasks<DIMS, scalar_t, acc_t>(pb, deformation, motion_weights, grads, partials);
  // the tasks' keypoint and jacobian sums, added in task order
  auto* grad_source = static_cast<scalar_t*>(grads.grad_kp_source);
  auto* grad_driving = static_cast<scalar_t*>(grads.grad_kp_driving);
  auto* grad_jac = static_cast<scalar_t*>(grads.grad_jacobian);
  for (int64_t n = 0; n < pb.N; ++n) {
    std::vector<acc_t> total(width, acc_t(0));
    for (int64_t b = 0; b < blocks; ++b) {
      const acc_t* partial = partials.data() + (n * blocks + b) * width;
      for (int64_t i = 0; i < width; ++i) total[i] += partial[i];
    }
    const int64_t kp = pb.K * dims;
    for (int64_t i = 0; i < kp; ++i) {
      grad_source[n * kp + i] = scalar_t(total[i]);
      grad_driving[n * kp + i] = scalar_t(total[kp + i]);
    }
    if (grad_jac != nullptr)
      for (int64_t i = 0; i < kp * dims; ++i) grad_jac[n * kp * dims + i] = scalar_t(total[2 * kp + i]);
  }
  if (grads.grad_feature != nullptr) feature_backward_tasks<DIMS, scalar_t, acc_t>(pb, deformation, grads);
}

}  // namespace

void forward_cpu(const Problem& pb, void* output, void* deformation, void* motion_weights) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto run = [&](auto dims) {
      forward_tasks<decltype(dims)::value, scalar_t, acc_t>(pb, static_cast<scalar_t*>(output),
                                                            static_cast<acc_t*>(deformation),
                                                            static_cast<acc_t*>(motion_weights));
    };
    if (pb.dims == 3)
      run(std::integral_constant<int, 3>{});
    else
      run(std::integral_constant<int, 2>{});
  });
}

void backward_cpu(const Problem& pb, const void* deformation, const void* motion_weights, const Grads& grads) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto run = [&](auto dims) {
      backward_all<decltype(dims)::value, scalar_t, acc_t>(pb, static_cast<const acc_t*>(deformation),
                                                           static_cast<const acc_t*>(motion_weights), grads);
    };
    if (pb.dims == 3)
      run(std::integral_constant<int, 3>{});
    else
      run(std::integral_constant<int, 2>{});
  });
}

}  // namespace pyface::kpw::PYFACE_CPU_NS
