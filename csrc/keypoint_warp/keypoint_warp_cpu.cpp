// CPU kernels of keypoint-driven warping. Each output position forms its deformation from
// the K+1 motion weights and keypoints on the spot (no sparse-motion tensor), then samples
// the feature with grid_sample's bilinear / trilinear stencil. Tasks are (sample, block of
// positions); the block's stencils (stencil_block.h) are built once, vectorised over the
// positions, and reused over the channels. The backward sums d/d deformation over the
// channels, differentiates the motions, reduces the keypoint and jacobian gradients per
// task in a fixed order, and scatters d/d feature with tasks that own blocks of channels
// (deterministic, no atomics). The number of spatial dims is a template parameter, so the
// per-axis and per-corner loops unroll.
#include "keypoint_warp/keypoint_warp.h"

#include "cpu_isa.h"
#include "scalar_cast.h"
#include "keypoint_warp/stencil_block.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

// exp for the softmax, in a form GCC vectorises (glibc's expf has no vector variant without
// -ffast-math): 2^n * p(r) with r = x - n ln 2, |r| <= ln2 / 2, p a degree-6 polynomial
// (relative error ~2e-7 on float); arguments here are <= 0. Below -87 the result is 0, as
// expf's underflows there (so a -inf logit weighs exactly 0: 0 * an inf motion is NaN, as in
// torch's softmax, not inf).
inline float vector_exp(float x) {
  const bool underflows = x < -87.0f;
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
  return underflows ? 0.0f : p * std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
}
inline double vector_exp(double x) { return std::exp(x); }

// The K+1 motion weights of a block of positions, weights[k * kBlock + j] for position
// s0 + j: the mask, or its softmax over the motions, vectorised over the positions.
template <typename scalar_t, typename acc_t>
void block_weights(const Problem& pb, int64_t n, int64_t s0, int64_t len, acc_t* weights) {
  const int64_t S = pb.out_size();
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

// The deformation at a block of positions from its motion weights and the identity grid:
// pos[a * kBlock + j] = sum_k m_k(j) T_k(z_j).
template <int DIMS, typename scalar_t, typename acc_t>
void deformation_block(const Problem& pb, int64_t n, const acc_t* weights, const acc_t* z, int64_t len, acc_t* pos) {
  for (int a = 0; a < DIMS; ++a)
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) pos[a * kBlock + j] = weights[j] * z[a * kBlock + j];
  for (int64_t k = 0; k < pb.K; ++k) {
    KeypointMotion<DIMS, acc_t> motion;
    motion.template load<scalar_t>(pb, n, k);
    const acc_t* m = weights + (k + 1) * kBlock;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      acc_t moved[3], rel[3];
      motion.apply(z, j, moved, rel);
      for (int a = 0; a < DIMS; ++a) pos[a * kBlock + j] += m[j] * moved[a];
    }
  }
}

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void forward_tasks(const Problem& pb, scalar_t* output, acc_t* deformation, acc_t* motion_weights, acc_t* plane_cl) {
  const int64_t S = pb.out_size(), S_in = pb.in_size(), blocks = (S + kBlock - 1) / kBlock;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  auto run_tasks = [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> weights((pb.K + 1) * kBlock), z(3 * kBlock), pos(3 * kBlock);
    std::vector<acc_t> tile(plane_cl != nullptr ? kBlock * std::min(kTileChannels, pb.C) : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      block_weights<scalar_t, acc_t>(pb, n, s0, len, weights.data());
      if (motion_weights != nullptr)  // kept for the backward
        for (int64_t k = 0; k <= pb.K; ++k)
          std::copy(weights.data() + k * kBlock, weights.data() + k * kBlock + len,
                    motion_weights + (n * (pb.K + 1) + k) * S + s0);
      identity_block(pb, s0, len, z.data());
      deformation_block<DIMS, scalar_t>(pb, n, weights.data(), z.data(), len, pos.data());
      if (deformation != nullptr)
        for (int64_t j = 0; j < len; ++j)
          for (int a = 0; a < DIMS; ++a) deformation[(n * S + s0 + j) * DIMS + a] = pos[a * kBlock + j];
      stencils->build(pb, pos.data(), len, false);
      sample_channels(*stencils, feature + n * pb.C * S_in, plane_cl, pb.C, S_in, len, output + n * pb.C * S + s0, S,
                      tile.data());
    }
  };
  for_each_sample_plane<scalar_t>(pb, plane_cl, blocks, run_tasks);
}

// A block of the saved deformation, as pos[a * kBlock + j].
template <int DIMS, typename acc_t>
void load_deformation(const acc_t* deformation, int64_t at, int64_t len, acc_t* pos) {
  for (int64_t j = 0; j < len; ++j)
    for (int a = 0; a < DIMS; ++a) pos[a * kBlock + j] = deformation[(at + j) * DIMS + a];
}

// Per task: d/d kp_source (K, dims), d/d kp_driving (K, dims), d/d jacobian (K, dims, dims).
int64_t partial_width(const Problem& pb) { return pb.K * (2 * pb.dims + pb.dims * pb.dims); }

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void motion_backward_tasks(const Problem& pb, const acc_t* deformation, const acc_t* motion_weights, const Grads& grads,
                           std::vector<acc_t>& partials, acc_t* plane_cl) {
  const int64_t S = pb.out_size(), blocks = (S + kBlock - 1) / kBlock, slots = pb.K + 1;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  const auto* grad_deformation = static_cast<const acc_t*>(grads.grad_deformation);
  auto* grad_mask = static_cast<scalar_t*>(grads.grad_mask);
  const int64_t width = partial_width(pb);
  for_each_sample_plane<scalar_t>(pb, plane_cl, blocks, [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> pos(3 * kBlock), g(3 * kBlock), z(3 * kBlock), dm(slots * kBlock), mean(kBlock);
    std::vector<acc_t> go_cl(plane_cl != nullptr ? kBlock * pb.C : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      load_deformation<DIMS>(deformation, n * S + s0, len, pos.data());
      stencils->build(pb, pos.data(), len, true);
      // d loss / d deformation, summed over the channels
      std::fill(g.begin(), g.end(), acc_t(0));
      if (plane_cl != nullptr) {
        channels_last_rows(grad_output + n * pb.C * S, pb.C, S, s0, len, go_cl.data());
        stencils->accumulate_position_grad_channels_last(plane_cl, go_cl.data(), pb.C, g.data(), len);
      } else {
        for (int64_t c = 0; c < pb.C; ++c)
          stencils->accumulate_position_grad(feature + (n * pb.C + c) * pb.in_size(),
                                             grad_output + (n * pb.C + c) * S + s0, g.data(), len);
      }
      for (int a = 0; a < DIMS; ++a)
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) g[a * kBlock + j] *= stencils->factor[a][j];
      if (grad_deformation != nullptr)
        for (int64_t j = 0; j < len; ++j)
          for (int a = 0; a < DIMS; ++a) g[a * kBlock + j] += grad_deformation[(n * S + s0 + j) * DIMS + a];
      // through the motions: d/d m_k = g . T_k(z); the keypoint sums use that T_k is linear
      identity_block(pb, s0, len, z.data());
      const acc_t* m = motion_weights + n * slots * S + s0;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        acc_t dot = 0;
        for (int a = 0; a < DIMS; ++a) dot += g[a * kBlock + j] * z[a * kBlock + j];
        dm[j] = dot;
        mean[j] = m[j] * dot;
      }
      acc_t* partial = partials.data() + task * width;
      for (int64_t k = 0; k < pb.K; ++k) {
        KeypointMotion<DIMS, acc_t> motion;
        motion.template load<scalar_t>(pb, n, k);
        const acc_t* mk = m + (k + 1) * S;
        acc_t* dmk = dm.data() + (k + 1) * kBlock;
        acc_t sg[DIMS] = {}, sgr[DIMS * DIMS] = {};
#pragma omp simd reduction(+ : sg[:DIMS], sgr[:DIMS * DIMS])
        for (int64_t j = 0; j < len; ++j) {
          acc_t moved[3], rel[3], dot = 0;
          motion.apply(z.data(), j, moved, rel);
          for (int a = 0; a < DIMS; ++a) {
            const acc_t ga = g[a * kBlock + j];
            dot += ga * moved[a];
            sg[a] += mk[j] * ga;
            for (int b = 0; b < DIMS; ++b) sgr[a * DIMS + b] += mk[j] * ga * rel[b];
          }
          dmk[j] = dot;
          mean[j] += mk[j] * dot;
        }
        // d/d kp_source = sg, d/d kp_driving = -J^T sg, d/d J = sgr
        acc_t* grad_source = partial + k * DIMS;
        acc_t* grad_driving = partial + (pb.K + k) * DIMS;
        acc_t* grad_jac = partial + 2 * pb.K * DIMS + k * DIMS * DIMS;
        std::copy(sg, sg + DIMS, grad_source);
        motion.driving_gradient(sg, grad_driving);
        std::copy(sgr, sgr + DIMS * DIMS, grad_jac);
      }
      for (int64_t k = 0; k < slots; ++k) {
        scalar_t* out = grad_mask + (n * slots + k) * S + s0;
        const acc_t* mk = m + k * S;
        const acc_t* dmk = dm.data() + k * kBlock;
        if (pb.mask_logits) {
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) out[j] = to_scalar<scalar_t>(mk[j] * (dmk[j] - mean[j]));
        } else {
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) out[j] = to_scalar<scalar_t>(dmk[j]);
        }
      }
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void feature_backward_tasks(const Problem& pb, const acc_t* deformation, const Grads& grads) {
  const int64_t S = pb.out_size(), lanes = scatter_lanes(pb.N, pb.C), blocks = (pb.C + lanes - 1) / lanes;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  auto* grad_feature = static_cast<scalar_t*>(grads.grad_feature);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> sums(pb.in_size() * lanes), pos(3 * kBlock), go_t(kBlock * lanes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * lanes, width = std::min(lanes, pb.C - c0);
      std::fill(sums.begin(), sums.begin() + pb.in_size() * width, acc_t(0));
      for (int64_t s0 = 0; s0 < S; s0 += kBlock) {
        const int64_t len = std::min(kBlock, S - s0);
        load_deformation<DIMS>(deformation, n * S + s0, len, pos.data());
        stencils->build(pb, pos.data(), len, false);
        channels_last_rows(grad_output + (n * pb.C + c0) * S, width, S, s0, len, go_t.data());
        stencils->scatter(go_t.data(), width, sums.data(), len);
      }
      store_tile(sums.data(), pb.in_size(), width, pb.in_size(), grad_feature + (n * pb.C + c0) * pb.in_size());
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void backward_all(const Problem& pb, const acc_t* deformation, const acc_t* motion_weights, const Grads& grads,
                  acc_t* plane_cl) {
  const int64_t S = pb.out_size(), blocks = (S + kBlock - 1) / kBlock, width = partial_width(pb), dims = DIMS;
  std::vector<acc_t> partials(pb.N * blocks * width);
  motion_backward_tasks<DIMS, scalar_t, acc_t, index_t>(pb, deformation, motion_weights, grads, partials, plane_cl);
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
  if (grads.grad_feature != nullptr) feature_backward_tasks<DIMS, scalar_t, acc_t, index_t>(pb, deformation, grads);
}

}  // namespace

void forward_cpu(const Problem& pb, void* output, void* deformation, void* motion_weights, void* scratch) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto run = [&](auto dims) {
      with_index_type(pb, [&](auto index) {
        forward_tasks<decltype(dims)::value, scalar_t, acc_t, decltype(index)>(
            pb, static_cast<scalar_t*>(output), static_cast<acc_t*>(deformation), static_cast<acc_t*>(motion_weights),
            static_cast<acc_t*>(scratch));
      });
    };
    if (pb.dims == 3)
      run(std::integral_constant<int, 3>{});
    else
      run(std::integral_constant<int, 2>{});
  });
}

void backward_cpu(const Problem& pb, const void* deformation, const void* motion_weights, const Grads& grads,
                  void* scratch) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    auto run = [&](auto dims) {
      with_index_type(pb, [&](auto index) {
        backward_all<decltype(dims)::value, scalar_t, acc_t, decltype(index)>(
            pb, static_cast<const acc_t*>(deformation), static_cast<const acc_t*>(motion_weights), grads,
            static_cast<acc_t*>(scratch));
      });
    };
    if (pb.dims == 3)
      run(std::integral_constant<int, 3>{});
    else
      run(std::integral_constant<int, 2>{});
  });
}

}  // namespace pyface::kpw::PYFACE_CPU_NS
