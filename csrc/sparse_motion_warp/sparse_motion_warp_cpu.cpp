// CPU kernels of the dense-motion network's input. Forward tasks are (sample, motion, block
// of positions): the block's stencils at T_k(z) are built once and reused over the channels;
// the feature is read in place, never repeated per motion. The backward sums d/d sample
// position over the channels, differentiates T_k per keypoint, reduces those sums per task
// in a fixed order, and scatters d/d feature from every motion with tasks that own blocks
// of channels (deterministic, no atomics).
#include "sparse_motion_warp/sparse_motion_warp.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"
#include "keypoint_warp/motion_sampling.h"

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

constexpr int64_t kBlock = 256;       // positions per task
constexpr int64_t kChannelBlock = 8;  // channels per task of the d/d feature scatter

// The sample position of motion `slot` (0 = identity) at grid position s.
template <int DIMS, typename scalar_t, typename acc_t>
void motion_at(const Problem& pb, int64_t n, int64_t slot, int64_t s, acc_t position[3], acc_t rel[3]) {
  acc_t z[3];
  identity_point(pb, s, z);
  position[2] = rel[2] = 0;
  if (slot == 0) {
    std::copy(z, z + DIMS, position);
    return;
  }
  keypoint_motion<DIMS, scalar_t, acc_t>(pb, n, slot - 1, z, position, rel);
}

template <int DIMS, typename scalar_t, typename acc_t>
void forward_tasks(const Problem& pb, scalar_t* output) {
  const int64_t S = in_size(pb), blocks = (S + kBlock - 1) / kBlock, slots = pb.K + 1;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  at::parallel_for(0, pb.N * slots * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Stencil<DIMS, acc_t>> stencils(kBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (slots * blocks), slot = (task / blocks) % slots;
      const int64_t s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      for (int64_t j = 0; j < len; ++j) {
        acc_t position[3], rel[3];
        motion_at<DIMS, scalar_t, acc_t>(pb, n, slot, s0 + j, position, rel);
        stencils[j].build(pb, position);
      }
      for (int64_t c = 0; c < pb.C; ++c) {
        const scalar_t* plane = feature + (n * pb.C + c) * S;
        scalar_t* out = output + ((n * slots + slot) * pb.C + c) * S + s0;
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

// Per task (one keypoint): d/d kp_source (dims), d/d kp_driving (dims), d/d jacobian (dims^2).
constexpr int64_t partial_width(int64_t dims) { return 2 * dims + dims * dims; }

template <int DIMS, typename scalar_t, typename acc_t>
void keypoint_backward_tasks(const Problem& pb, const Grads& grads, std::vector<acc_t>& partials) {
  const int64_t S = in_size(pb), blocks = (S + kBlock - 1) / kBlock, width = partial_width(DIMS);
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  const auto* jac = static_cast<const scalar_t*>(pb.jacobian);
  at::parallel_for(0, pb.N * pb.K * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Stencil<DIMS, acc_t>> stencils(kBlock);
    std::vector<acc_t> rels(kBlock * 3), gpos(kBlock * 3);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (pb.K * blocks), k = (task / blocks) % pb.K;
      const int64_t s0 = (task % blocks) * kBlock, len = std::min(kBlock, S - s0);
      for (int64_t j = 0; j < len; ++j) {
        acc_t position[3];
        motion_at<DIMS, scalar_t, acc_t>(pb, n, k + 1, s0 + j, position, &rels[j * 3]);
        stencils[j].build(pb, position);
      }
      // d loss / d sample position, summed over the channels
      std::fill(gpos.begin(), gpos.end(), acc_t(0));
      for (int64_t c = 0; c < pb.C; ++c) {
        const scalar_t* plane = feature + (n * pb.C + c) * S;
        const scalar_t* go = grad_output + ((n * (pb.K + 1) + k + 1) * pb.C + c) * S + s0;
        for (int64_t j = 0; j < len; ++j) {
          const Stencil<DIMS, acc_t>& st = stencils[j];
          const acc_t g = acc_t(go[j]);
          for (int o = 0; o < st.corners; ++o) {
            if (!st.inside[o]) continue;
            const acc_t v = g * acc_t(plane[st.offset[o]]);
            for (int64_t a = 0; a < DIMS; ++a) gpos[j * 3 + a] += v * st.dweight[o][a];
          }
        }
      }
      // through T_k(z) = kp_source + J (z - kp_driving)
      acc_t* partial = partials.data() + task * width;
      std::fill(partial, partial + width, acc_t(0));
      acc_t* grad_source = partial;
      acc_t* grad_driving = partial + DIMS;
      acc_t* grad_jac = partial + 2 * DIMS;
      const scalar_t* jk = jac == nullptr ? nullptr : jac + (n * pb.K + k) * DIMS * DIMS;
      for (int64_t j = 0; j < len; ++j) {
        acc_t g[3];
        for (int64_t a = 0; a < DIMS; ++a) g[a] = gpos[j * 3 + a] * stencils[j].factor[a];
        for (int64_t a = 0; a < DIMS; ++a) grad_source[a] += g[a];
        for (int64_t b = 0; b < DIMS; ++b) {
          acc_t jt_g = g[b];  // (J^T g)[b]
          if (jk != nullptr) {
            jt_g = 0;
            for (int64_t a = 0; a < DIMS; ++a) jt_g += acc_t(jk[a * DIMS + b]) * g[a];
          }
          grad_driving[b] -= jt_g;
        }
        if (jk != nullptr)
          for (int64_t a = 0; a < DIMS; ++a)
            for (int64_t b = 0; b < DIMS; ++b) grad_jac[a * DIMS + b] += g[a] * rels[j * 3 + b];
      }
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t>
void feature_backward_tasks(const Problem& pb, const Grads& grads) {
  const int64_t S = in_size(pb), blocks = (pb.C + kChannelBlock - 1) / kChannelBlock, slots = pb.K + 1;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  auto* grad_feature = static_cast<scalar_t*>(grads.grad_feature);
  at::parallel_for(0, pb.N * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sums(kChannelBlock * S);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * kChannelBlock, width = std::min(kChannelBlock, pb.C - c0);
      std::fill(sums.begin(), sums.end(), acc_t(0));
      Stencil<DIMS, acc_t> st;
      for (int64_t slot = 0; slot < slots; ++slot) {
        const scalar_t* go = grad_output + ((n * slots + slot) * pb.C + c0) * S;
        for (int64_t s = 0; s < S; ++s) {
          acc_t position[3], rel[3];
          motion_at<DIMS, scalar_t, acc_t>(pb, n, slot, s, position, rel);
          st.build(pb, position);
          for (int64_t j = 0; j < width; ++j) {
            const acc_t g = acc_t(go[j * S + s]);
            acc_t* plane = sums.data() + j * S;
            for (int o = 0; o < st.corners; ++o)
              if (st.inside[o]) plane[st.offset[o]] += st.weight[o] * g;
          }
        }
      }
      scalar_t* out = grad_feature + (n * pb.C + c0) * S;
      for (int64_t i = 0; i < width * S; ++i) out[i] = scalar_t(sums[i]);
    }
  });
}

template <int DIMS, typename scalar_t, typename acc_t>
void backward_all(const Problem& pb, const Grads& grads) {
  const int64_t S = in_size(pb), blocks = (S + kBlock - 1) / kBlock, width = partial_width(DIMS);
  std::vector<acc_t> partials(pb.N * pb.K * blocks * width);
  keypoint_backward_tasks<DIMS, scalar_t, acc_t>(pb, grads, partials);
  auto* grad_source = static_cast<scalar_t*>(grads.grad_kp_source);
  auto* grad_driving = static_cast<scalar_t*>(grads.grad_kp_driving);
  auto* grad_jac = static_cast<scalar_t*>(grads.grad_jacobian);
  for (int64_t nk = 0; nk < pb.N * pb.K; ++nk) {  // the tasks' sums, added in task order
    acc_t total[partial_width(3)] = {};
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t i = 0; i < width; ++i) total[i] += partials[(nk * blocks + b) * width + i];
    for (int64_t a = 0; a < DIMS; ++a) {
      grad_source[nk * DIMS + a] = scalar_t(total[a]);
      grad_driving[nk * DIMS + a] = scalar_t(total[DIMS + a]);
    }
    if (grad_jac != nullptr)
      for (int64_t i = 0; i < DIMS * DIMS; ++i) grad_jac[nk * DIMS * DIMS + i] = scalar_t(total[2 * DIMS + i]);
  }
  if (grads.grad_feature != nullptr) feature_backward_tasks<DIMS, scalar_t, acc_t>(pb, grads);
}

}  // namespace

void sparse_forward_cpu(const Problem& pb, void* output) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    if (pb.dims == 3)
      forward_tasks<3, scalar_t, acc_t>(pb, static_cast<scalar_t*>(output));
    else
      forward_tasks<2, scalar_t, acc_t>(pb, static_cast<scalar_t*>(output));
  });
}

void sparse_backward_cpu(const Problem& pb, const Grads& grads) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    if (pb.dims == 3)
      backward_all<3, scalar_t, acc_t>(pb, grads);
    else
      backward_all<2, scalar_t, acc_t>(pb, grads);
  });
}

}  // namespace pyface::kpw::PYFACE_CPU_NS
