// What the CUDA kernels of keypoint_warp and sparse_motion_warp share: the identity grid
// point of an output position, a keypoint's motion T_k, and grid_sample's bilinear /
// trilinear stencil of one sample with its derivatives (the CPU kernels build stencils for
// blocks of positions instead: csrc/keypoint_warp/stencil_block.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "coordinate_grid.h"
#include "feature_scatter.cuh"
#include "keypoint_warp/keypoint_warp.h"

namespace pyface::kpw {
namespace {

template <typename acc_t>
__device__ void identity_point(const Problem& pb, int64_t s, acc_t z[3]) {
  z[0] = grid_coordinate<acc_t>(s % pb.W_out, pb.W_out);
  z[1] = grid_coordinate<acc_t>((s / pb.W_out) % pb.H_out, pb.H_out);
  z[2] = grid_coordinate<acc_t>(s / (pb.W_out * pb.H_out), pb.D_out);
}

// T_k(z) = kp_source_k + J_k (z - kp_driving_k) for keypoint k (0-based), and z - kp_driving_k.
template <int DIMS, typename scalar_t, typename acc_t>
__device__ void keypoint_motion(const Problem& pb, int64_t n, int64_t k, const acc_t z[3], acc_t motion[3], acc_t rel[3]) {
  const int64_t at = (n * pb.K + k) * DIMS;
  const auto* source = static_cast<const scalar_t*>(pb.kp_source) + at;
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving) + at;
  for (int64_t a = 0; a < DIMS; ++a) rel[a] = z[a] - acc_t(driving[a]);
  const auto* jac = static_cast<const scalar_t*>(pb.jacobian);
  for (int64_t a = 0; a < DIMS; ++a) {
    acc_t moved = rel[a];
    if (jac != nullptr) {
      const scalar_t* row = jac + (at + a) * DIMS;  // J_k[a, :]
      moved = 0;
      for (int64_t b = 0; b < DIMS; ++b) moved += acc_t(row[b]) * rel[b];
    }
    motion[a] = acc_t(source[a]) + moved;
  }
}

// grid_sample's source coordinate on one axis and d(source)/d(grid coordinate) (0 where
// "border" clips), as torch computes them.
template <typename acc_t>
__device__ acc_t source_coordinate(acc_t coord, int64_t size, const Problem& pb, acc_t* factor) {
  acc_t x;
  if (pb.align_corners) {
    x = (coord + 1) / 2 * acc_t(size - 1);
    *factor = acc_t(size - 1) / 2;
  } else {
    x = ((coord + 1) * acc_t(size) - 1) / 2;
    *factor = acc_t(size) / 2;
  }
  if (pb.padding == kBorder) {
    // torch's rule: a coordinate on a bound counts as clipped (no gradient)
    if (x <= 0) {
      x = 0;
      *factor = 0;
    } else if (x >= acc_t(size - 1)) {
      x = acc_t(size - 1);
      *factor = 0;
    }
  }
  return x;
}

// The 2^dims corners a sample reads: flat offsets in the input plane, weights, d weight /
// d source coordinate per axis, and whether the corner lies inside (outside ones read 0).
// A position that is not finite reads nothing: its sample and its position gradient are NaN
// (`poison`, the reference's rule: pyface.reference.keypoint_warp.sample).
template <int DIMS, typename acc_t>
struct Stencil {
  int64_t offset[8];
  acc_t weight[8];
  acc_t dweight[8][3];
  bool inside[8];
  acc_t factor[3];
  acc_t poison;
  static constexpr int corners = 1 << DIMS;

  __device__ void build(const Problem& pb, const acc_t def[3]) {
    const int64_t sizes[3] = {pb.W_in, pb.H_in, pb.D_in};
    int64_t base[3] = {0, 0, 0};
    acc_t frac[3] = {0, 0, 0};
    factor[2] = 0;
    poison = 0;
    for (int64_t a = 0; a < DIMS; ++a) {
      acc_t x = source_coordinate(def[a], sizes[a], pb, &factor[a]);
      if (!isfinite(def[a])) {  // outside, never cast to an integer
        poison = acc_t(NAN);
        x = -2;
      }
      // every corner of a coordinate beyond [-2, size + 1] is outside, as at those bounds
      x = fmin(fmax(x, acc_t(-2)), acc_t(sizes[a] + 1));
      const acc_t floored = std::floor(x);
      base[a] = static_cast<int64_t>(floored);
      frac[a] = x - floored;
    }
    for (int o = 0; o < corners; ++o) {
      int64_t idx[3] = {0, 0, 0};
      acc_t w[3] = {1, 1, 1}, sign[3] = {0, 0, 0};
      bool in = true;
      for (int64_t a = 0; a < DIMS; ++a) {
        const int bit = (o >> a) & 1;
        idx[a] = base[a] + bit;
        w[a] = bit ? frac[a] : 1 - frac[a];
        sign[a] = bit ? acc_t(1) : acc_t(-1);
        in = in && idx[a] >= 0 && idx[a] < sizes[a];
      }
      inside[o] = in && poison == acc_t(0);
      offset[o] = in ? (idx[2] * pb.H_in + idx[1]) * pb.W_in + idx[0] : 0;
      weight[o] = w[0] * w[1] * w[2];
      dweight[o][0] = sign[0] * w[1] * w[2];
      dweight[o][1] = sign[1] * w[0] * w[2];
      dweight[o][2] = sign[2] * w[0] * w[1];
    }
  }
};

// fn(std::integral_constant<int, dims>) for the problem's number of spatial dims (host).
template <typename Fn>
void with_dims(const Problem& pb, Fn&& fn) {
  if (pb.dims == 3)
    fn(std::integral_constant<int, 3>{});
  else
    fn(std::integral_constant<int, 2>{});
}

// The samples of every channel of sample n at one stencil: out[c * out_stride].
template <int DIMS, typename scalar_t, typename acc_t>
__device__ void gather_channels(const Problem& pb, const Stencil<DIMS, acc_t>& st, int64_t n, scalar_t* out,
                                int64_t out_stride) {
  const auto* feature = static_cast<const scalar_t*>(pb.feature) + n * pb.C * pb.in_size();
  for (int64_t c = 0; c < pb.C; ++c) {
    const scalar_t* plane = feature + c * pb.in_size();
    acc_t sum = 0;
#pragma unroll
    for (int o = 0; o < st.corners; ++o)
      if (st.inside[o]) sum += st.weight[o] * acc_t(plane[st.offset[o]]);
    out[c * out_stride] = scalar_t(sum + st.poison);
  }
}

// The transpose over the channels of sample n, with go[c * go_stride] the gradient of each
// channel's sample: returns d loss / d source coordinate (before the stencil's factor) and
// scatters d/d feature when asked.
template <int DIMS, typename scalar_t, typename acc_t>
__device__ void backward_channels(const Problem& pb, const Stencil<DIMS, acc_t>& st, int64_t n, const scalar_t* go,
                                  int64_t go_stride, const FeatureScatter& scatter, acc_t grad[3]) {
  const auto* feature = static_cast<const scalar_t*>(pb.feature) + n * pb.C * pb.in_size();
  for (int a = 0; a < 3; ++a) grad[a] = 0;
  for (int64_t c = 0; c < pb.C; ++c) {
    const acc_t g = acc_t(go[c * go_stride]);
    const scalar_t* plane = feature + c * pb.in_size();
#pragma unroll
    for (int o = 0; o < st.corners; ++o) {
      if (!st.inside[o]) continue;
      const acc_t v = g * acc_t(plane[st.offset[o]]);
      for (int a = 0; a < DIMS; ++a) grad[a] += v * st.dweight[o][a];
      if (scatter.sums != nullptr) scatter_add(scatter, n * pb.C + c, pb.in_size(), st.offset[o], st.weight[o] * g);
    }
    for (int a = 0; a < DIMS; ++a) grad[a] += st.poison;
  }
}

}  // namespace
}  // namespace pyface::kpw
