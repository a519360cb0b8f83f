// CPU kernels of the dense-motion network's input. Forward tasks are (sample, motion, block
// of positions): the block's stencils at T_k(z) (stencil_block.h) are built once and reused
// over the channels; the feature is read in place, never repeated per motion. The backward
// sums d/d sample position over the channels, differentiates T_k per keypoint, reduces
// those sums per task in a fixed order, and scatters d/d feature from every motion with
// tasks that own blocks of channels (deterministic, no atomics). Without a jacobian the
// motions are separable and separable_warp.h's kernels run instead.
#include "sparse_motion_warp/sparse_motion_warp.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu_isa.h"
#include "keypoint_warp/stencil_block.h"
#include "sparse_motion_warp/separable_warp.h"

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

// The sample positions of motion `slot` (0 = identity) at a block of identity points z.
template <int DIMS, typename scalar_t, typename acc_t>
void motion_block(const Problem& pb, int64_t n, int64_t slot, const acc_t* z, int64_t len, acc_t* pos) {
  if (slot == 0) {
    std::copy(z, z + DIMS * kBlock, pos);
    return;
  }
  KeypointMotion<DIMS, acc_t> motion;
  motion.template load<scalar_t>(pb, n, slot - 1);
#pragma omp simd
  for (int64_t j = 0; j < len; ++j) {
    acc_t moved[3], rel[3];
    motion.apply(z, j, moved, rel);
    for (int a = 0; a < DIMS; ++a) pos[a * kBlock + j] = moved[a];
  }
}

// plane_cl: scratch for a channels-last copy of each sample's feature (keypoint_warp.h), or null.
template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void forward_tasks(const Problem& pb, scalar_t* output, acc_t* plane_cl) {
  const int64_t S = pb.in_size(), blocks = (S + kBlock - 1) / kBlock, slots = pb.K + 1;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  for_each_sample_plane<scalar_t>(pb, plane_cl, slots * blocks, [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> z(3 * kBlock), pos(3 * kBlock);
    std::vector<acc_t> tile(plane_cl != nullptr ? kBlock * std::min(kTileChannels, pb.C) : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (slots * blocks), slot = (task / blocks) % slots;
      const int64_t s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      identity_block(pb, s0, len, z.data());
      motion_block<DIMS, scalar_t>(pb, n, slot, z.data(), len, pos.data());
      stencils->build(pb, pos.data(), len, false);
      sample_channels(*stencils, feature + n * pb.C * S, plane_cl, pb.C, S, len,
                      output + (n * slots + slot) * pb.C * S + s0, S, tile.data());
    }
  });
}

// Per task (one keypoint): sg = sum g (dims), then sgr = sum g (z - kp_driving)^T (dims^2),
// g = d loss / d sample position.
constexpr int64_t partial_width(int64_t dims) { return dims + dims * dims; }

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void keypoint_backward_tasks(const Problem& pb, const Grads& grads, std::vector<acc_t>& partials, acc_t* plane_cl) {
  const int64_t S = pb.in_size(), blocks = (S + kBlock - 1) / kBlock, width = partial_width(DIMS);
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  for_each_sample_plane<scalar_t>(pb, plane_cl, pb.K * blocks, [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> z(3 * kBlock), pos(3 * kBlock), g(3 * kBlock);
    std::vector<acc_t> go_cl(plane_cl != nullptr ? kBlock * pb.C : 0);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (pb.K * blocks), k = (task / blocks) % pb.K;
      const int64_t s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      identity_block(pb, s0, len, z.data());
      motion_block<DIMS, scalar_t>(pb, n, k + 1, z.data(), len, pos.data());
      stencils->build(pb, pos.data(), len, true);
      std::fill(g.begin(), g.end(), acc_t(0));
      const scalar_t* go = grad_output + (n * (pb.K + 1) + k + 1) * pb.C * S;
      if (plane_cl != nullptr) {
        channels_last_rows(go, pb.C, S, s0, len, go_cl.data());
        stencils->accumulate_position_grad_channels_last(plane_cl, go_cl.data(), pb.C, g.data(), len);
      } else {
        for (int64_t c = 0; c < pb.C; ++c)
          stencils->accumulate_position_grad(feature + (n * pb.C + c) * S, go + c * S + s0, g.data(), len);
      }
      KeypointMotion<DIMS, acc_t> motion;
      motion.template load<scalar_t>(pb, n, k);
      const acc_t* driving = motion.driving;
      acc_t sg[DIMS] = {}, sgr[DIMS * DIMS] = {};
#pragma omp simd reduction(+ : sg[:DIMS], sgr[:DIMS * DIMS])
      for (int64_t j = 0; j < len; ++j)
        for (int a = 0; a < DIMS; ++a) {
          const acc_t ga = g[a * kBlock + j] * stencils->factor[a][j];
          sg[a] += ga;
          for (int b = 0; b < DIMS; ++b) sgr[a * DIMS + b] += ga * (z[b * kBlock + j] - driving[b]);
        }
      acc_t* partial = partials.data() + task * width;
      std::copy(sg, sg + DIMS, partial);
      std::copy(sgr, sgr + DIMS * DIMS, partial + DIMS);
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void feature_backward_tasks(const Problem& pb, const Grads& grads) {
  const int64_t S = pb.in_size(), slots = pb.K + 1;
  const int64_t lanes = scatter_lanes(pb.N, pb.C), blocks = (pb.C + lanes - 1) / lanes;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  auto* grad_feature = static_cast<scalar_t*>(grads.grad_feature);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    auto stencils = std::make_unique<StencilBlock<DIMS, acc_t, index_t>>();
    std::vector<acc_t> sums(S * lanes), z(3 * kBlock), pos(3 * kBlock), go_t(kBlock * lanes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * lanes, width = std::min(lanes, pb.C - c0);
      std::fill(sums.begin(), sums.begin() + S * width, acc_t(0));
      for (int64_t s0 = 0; s0 < S; s0 += kBlock) {
        const int64_t len = std::min(kBlock, S - s0);
        identity_block(pb, s0, len, z.data());
        for (int64_t slot = 0; slot < slots; ++slot) {
          motion_block<DIMS, scalar_t>(pb, n, slot, z.data(), len, pos.data());
          stencils->build(pb, pos.data(), len, false);
          channels_last_rows(grad_output + ((n * slots + slot) * pb.C + c0) * S, width, S, s0, len, go_t.data());
          stencils->scatter(go_t.data(), width, sums.data(), len);
        }
      }
      store_tile(sums.data(), S, width, S, grad_feature + (n * pb.C + c0) * S);
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void backward_all(const Problem& pb, const Grads& grads, acc_t* plane_cl) {
  const int64_t S = pb.in_size(), blocks = (S + kBlock - 1) / kBlock, width = partial_width(DIMS);
  std::vector<acc_t> partials(pb.N * pb.K * blocks * width);
  keypoint_backward_tasks<DIMS, scalar_t, acc_t, index_t>(pb, grads, partials, plane_cl);
  auto* grad_source = static_cast<scalar_t*>(grads.grad_kp_source);
  auto* grad_driving = static_cast<scalar_t*>(grads.grad_kp_driving);
  auto* grad_jac = static_cast<scalar_t*>(grads.grad_jacobian);
  for (int64_t nk = 0; nk < pb.N * pb.K; ++nk) {  // the tasks' sums, added in task order
    acc_t total[partial_width(3)] = {};
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t i = 0; i < width; ++i) total[i] += partials[(nk * blocks + b) * width + i];
    KeypointMotion<DIMS, acc_t> motion;
    motion.template load<scalar_t>(pb, nk / pb.K, nk % pb.K);
    acc_t driving_grad[DIMS];  // d/d kp_source = sg, d/d kp_driving = -J^T sg, d/d J = sgr
    motion.driving_gradient(total, driving_grad);
    for (int b = 0; b < DIMS; ++b) {
      grad_source[nk * DIMS + b] = scalar_t(total[b]);
      grad_driving[nk * DIMS + b] = scalar_t(driving_grad[b]);
    }
    if (grad_jac != nullptr)
      for (int64_t i = 0; i < DIMS * DIMS; ++i) grad_jac[nk * DIMS * DIMS + i] = scalar_t(total[DIMS + i]);
  }
  if (grads.grad_feature != nullptr) feature_backward_tasks<DIMS, scalar_t, acc_t, index_t>(pb, grads);
}

}  // namespace

void sparse_forward_cpu(const Problem& pb, void* output, void* scratch) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_index_type(pb, [&](auto index) {
      using index_t = decltype(index);
      auto* plane_cl = static_cast<acc_t*>(scratch);
      auto* out = static_cast<scalar_t*>(output);
      if (pb.dims == 3) {
        if (pb.jacobian == nullptr && separable_forward_cpu<3, scalar_t, acc_t>(pb, out)) return;
        forward_tasks<3, scalar_t, acc_t, index_t>(pb, out, plane_cl);
      } else {
        if (pb.jacobian == nullptr && separable_forward_cpu<2, scalar_t, acc_t>(pb, out)) return;
        forward_tasks<2, scalar_t, acc_t, index_t>(pb, out, plane_cl);
      }
    });
  });
}

void sparse_backward_cpu(const Problem& pb, const Grads& grads, void* scratch) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    with_index_type(pb, [&](auto index) {
      using index_t = decltype(index);
      auto* plane_cl = static_cast<acc_t*>(scratch);
      if (pb.dims == 3) {
        if (pb.jacobian == nullptr && separable_backward_cpu<3, scalar_t, acc_t>(pb, grads)) return;
        backward_all<3, scalar_t, acc_t, index_t>(pb, grads, plane_cl);
      } else {
        if (pb.jacobian == nullptr && separable_backward_cpu<2, scalar_t, acc_t>(pb, grads)) return;
        backward_all<2, scalar_t, acc_t, index_t>(pb, grads, plane_cl);
      }
    });
  });
}

}  // namespace pyface::kpw::PYFACE_CPU_NS
