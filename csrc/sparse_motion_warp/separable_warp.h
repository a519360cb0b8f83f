// sparse_motion_warp's CPU kernels without a jacobian (face-vid2vid, LivePortrait). Then
// T_k(z) = z - kp_driving + kp_source moves each axis by itself: the x of a sample position
// depends on the output column only, y on the row, z on the slice, and grid_sample's
// trilinear stencil is a product of three 1-D stencils, one table per axis and motion
// (AxisTable). A row of output is then sampled from at most four source rows, combined
// with their y and z weights into one row in L1 and read back through the x table: no
// per-position floor, no gather from the feature plane. The backward is the same stencil
// transposed (d/d feature) and differentiated (d/d keypoints).
// Sums are in a different order than stencil_block.h's corner by corner, so results agree
// with that path to rounding, not bit for bit. Motions that are not finite are left to it
// (it writes their NaN): the entry points return false for them.
// Included by sparse_motion_warp_cpu.cpp only (one copy per instruction set, cpu_isa.h).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "coordinate_grid.h"
#include "keypoint_warp/keypoint_warp.h"
#include "scalar_cast.h"

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

// Rows in L1 carry this many zeros on each side: a lower corner lies in [-2, size + 1]
// (stencil_block.h's clamp), so both corners of every position index inside the row.
constexpr int64_t kRowPad = 2;

// One axis of one motion, per output index i: the lower corner's index in the input, and
// for the lower (0) and upper (1) corner whether it lies inside the input, its weight and
// d weight / d source coordinate (0 outside); `factor` is d source coordinate / d position
// (0 where border padding clipped it). Computed exactly as StencilBlock::build does.
template <typename acc_t>
struct AxisTable {
  std::vector<int32_t> base;
  std::vector<uint8_t> inside[2];
  std::vector<acc_t> weight[2], dweight[2], factor;

  // Returns false when a position is not finite.
  bool build(const Problem& pb, int64_t out_size, int64_t in_size, acc_t source, acc_t driving) {
    base.resize(out_size), factor.resize(out_size);
    for (int b = 0; b < 2; ++b) inside[b].resize(out_size), weight[b].resize(out_size), dweight[b].resize(out_size);
    const acc_t size = acc_t(in_size), last = size - 1, slope = pb.align_corners ? last / 2 : size / 2;
    for (int64_t i = 0; i < out_size; ++i) {
      const acc_t position = source + (grid_coordinate<acc_t>(i, out_size) - driving);  // KeypointMotion::apply
      if (!(std::abs(position) < std::numeric_limits<acc_t>::infinity())) return false;
      acc_t x = pb.align_corners ? (position + 1) / 2 * last : ((position + 1) * size - 1) / 2;
      factor[i] = slope;
      if (pb.padding == kBorder) {
        factor[i] = (x <= 0 || x >= last) ? acc_t(0) : slope;
        x = std::min(std::max(x, acc_t(0)), last);
      }
      x = std::min(std::max(x, acc_t(-2)), size + 1);
      const acc_t floored = std::floor(x), frac = x - floored;
      base[i] = static_cast<int32_t>(floored);
      for (int b = 0; b < 2; ++b) {
        const int64_t at = base[i] + b;
        inside[b][i] = at >= 0 && at < in_size;
        weight[b][i] = inside[b][i] ? (b ? frac : 1 - frac) : acc_t(0);
        dweight[b][i] = inside[b][i] ? acc_t(b ? 1 : -1) : acc_t(0);
      }
    }
    return true;
  }

  // The single point of an axis the 2-D problem does not have (depth 1, index 0).
  void flat() {
    base.assign(1, 0), factor.assign(1, acc_t(0));
    inside[0].assign(1, 1), inside[1].assign(1, 0);
    weight[0].assign(1, acc_t(1)), weight[1].assign(1, acc_t(0));
    dweight[0].assign(1, acc_t(0)), dweight[1].assign(1, acc_t(0));
  }
};

// The x, y and z tables of every motion slot of every sample (slot 0: the identity).
template <int DIMS, typename scalar_t, typename acc_t>
struct MotionTables {
  std::vector<AxisTable<acc_t>> axes;  // (N, K+1, 3)

  // Returns false when a motion is not finite.
  bool build(const Problem& pb) {
    const int64_t slots = pb.K + 1;
    const int64_t out[3] = {pb.W_out, pb.H_out, pb.D_out}, in[3] = {pb.W_in, pb.H_in, pb.D_in};
    const auto* source = static_cast<const scalar_t*>(pb.kp_source);
    const auto* driving = static_cast<const scalar_t*>(pb.kp_driving);
    axes.resize(pb.N * slots * 3);
    for (int64_t n = 0; n < pb.N; ++n)
      for (int64_t slot = 0; slot < slots; ++slot)
        for (int a = 0; a < 3; ++a) {
          AxisTable<acc_t>& table = axes[(n * slots + slot) * 3 + a];
          if (a >= DIMS) {
            table.flat();
            continue;
          }
          const int64_t at = (n * pb.K + slot - 1) * DIMS + a;  // slot 0 moves nothing: 0 + (z - 0) = z
          const acc_t s = slot == 0 ? acc_t(0) : acc_t(source[at]), d = slot == 0 ? acc_t(0) : acc_t(driving[at]);
          if (!table.build(pb, out[a], in[a], s, d)) return false;
        }
    return true;
  }

  const AxisTable<acc_t>* of(const Problem& pb, int64_t n, int64_t slot) const {
    return &axes[(n * (pb.K + 1) + slot) * 3];
  }
};

// row[kRowPad + x'] = sum over the source rows r of output row (y, z) of
// coefficient(r) * feature[r][x'], r = (lower or upper corner in z, in y), inside ones only;
// the pads stay 0. coefficient(bz, by) gets the corner bits.
template <typename scalar_t, typename acc_t, typename Coefficient>
void combine_rows(const scalar_t* plane, const AxisTable<acc_t>* t, int64_t y, int64_t z, int64_t H, int64_t W,
                  Coefficient coefficient, acc_t* row) {
  std::fill(row, row + W + 2 * kRowPad + 1, acc_t(0));
  acc_t* into = row + kRowPad;
  for (int bz = 0; bz < 2; ++bz) {
    if (!t[2].inside[bz][z]) continue;
    for (int by = 0; by < 2; ++by) {
      if (!t[1].inside[by][y]) continue;
      const acc_t w = coefficient(bz, by);
      const scalar_t* src = plane + (int64_t(t[2].base[z] + bz) * H + t[1].base[y] + by) * W;
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) into[x] += w * acc_t(src[x]);
    }
  }
}

template <int DIMS, typename scalar_t, typename acc_t>
void separable_forward(const Problem& pb, const MotionTables<DIMS, scalar_t, acc_t>& tables, scalar_t* output) {
  const int64_t slots = pb.K + 1, S = pb.in_size(), H = pb.H_in, W = pb.W_in;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  // a task: one slice z of one channel of one motion of one sample
  at::parallel_for(0, pb.N * slots * pb.C * pb.D_out, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> row(W + 2 * kRowPad + 1);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t z = task % pb.D_out, c = (task / pb.D_out) % pb.C, slot = (task / (pb.D_out * pb.C)) % slots;
      const int64_t n = task / (pb.D_out * pb.C * slots);
      const AxisTable<acc_t>* t = tables.of(pb, n, slot);
      const scalar_t* plane = feature + (n * pb.C + c) * S;
      scalar_t* out = output + ((n * slots + slot) * pb.C + c) * S + z * pb.H_out * pb.W_out;
      for (int64_t y = 0; y < pb.H_out; ++y, out += pb.W_out) {
        combine_rows(plane, t, y, z, H, W, [&](int bz, int by) { return t[2].weight[bz][z] * t[1].weight[by][y]; },
                     row.data());
        const acc_t* r = row.data() + kRowPad;
        const AxisTable<acc_t>& tx = t[0];
#pragma omp simd
        for (int64_t x = 0; x < pb.W_out; ++x)
          out[x] = to_scalar<scalar_t>(tx.weight[0][x] * r[tx.base[x]] + tx.weight[1][x] * r[tx.base[x] + 1]);
      }
    }
  });
}

// d/d feature: each task owns one channel of one sample and adds every motion's output
// gradient back through the transposed stencils, in a fixed order (deterministic).
template <int DIMS, typename scalar_t, typename acc_t>
void separable_feature_backward(const Problem& pb, const MotionTables<DIMS, scalar_t, acc_t>& tables,
                                const scalar_t* grad_output, scalar_t* grad_feature) {
  const int64_t slots = pb.K + 1, S = pb.in_size(), H = pb.H_in, W = pb.W_in;
  at::parallel_for(0, pb.N * pb.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> sums(S), row(W + 2 * kRowPad + 1);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / pb.C, c = task % pb.C;
      std::fill(sums.begin(), sums.end(), acc_t(0));
      for (int64_t slot = 0; slot < slots; ++slot) {
        const AxisTable<acc_t>* t = tables.of(pb, n, slot);
        const AxisTable<acc_t>& tx = t[0];
        const scalar_t* go = grad_output + ((n * slots + slot) * pb.C + c) * S;
        for (int64_t z = 0; z < pb.D_out; ++z)
          for (int64_t y = 0; y < pb.H_out; ++y, go += pb.W_out) {
            std::fill(row.begin(), row.end(), acc_t(0));
            acc_t* r = row.data() + kRowPad;
            for (int64_t x = 0; x < pb.W_out; ++x) {  // a scatter: corners of neighbours collide
              const acc_t g = acc_t(go[x]);
              r[tx.base[x]] += tx.weight[0][x] * g;
              r[tx.base[x] + 1] += tx.weight[1][x] * g;
            }
            for (int bz = 0; bz < 2; ++bz) {
              if (!t[2].inside[bz][z]) continue;
              for (int by = 0; by < 2; ++by) {
                if (!t[1].inside[by][y]) continue;
                const acc_t w = t[2].weight[bz][z] * t[1].weight[by][y];
                acc_t* dst = sums.data() + (int64_t(t[2].base[z] + bz) * H + t[1].base[y] + by) * W;
#pragma omp simd
                for (int64_t x = 0; x < W; ++x) dst[x] += w * r[x];
              }
            }
          }
      }
      scalar_t* out = grad_feature + task * S;
#pragma omp simd
      for (int64_t s = 0; s < S; ++s) out[s] = to_scalar<scalar_t>(sums[s]);
    }
  });
}

// d loss / d sample position of motion slot k >= 1 summed over one slice z of every channel:
// sg[a] = sum g_a * factor_a, g = d loss / d source coordinate. One task per (n, k, z).
template <int DIMS, typename scalar_t, typename acc_t>
void separable_keypoint_partials(const Problem& pb, const MotionTables<DIMS, scalar_t, acc_t>& tables,
                                 const scalar_t* grad_output, std::vector<double>& partials) {
  const int64_t slots = pb.K + 1, S = pb.in_size(), H = pb.H_in, W = pb.W_in;
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  at::parallel_for(0, pb.N * pb.K * pb.D_out, 1, [&](int64_t begin, int64_t end) {
    const int64_t width = W + 2 * kRowPad + 1;
    std::vector<acc_t> value(width), along_y(width), along_z(width);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t z = task % pb.D_out, slot = (task / pb.D_out) % pb.K + 1, n = task / (pb.D_out * pb.K);
      const AxisTable<acc_t>* t = tables.of(pb, n, slot);
      const AxisTable<acc_t>& tx = t[0];
      double sg[3] = {};
      for (int64_t c = 0; c < pb.C; ++c) {
        const scalar_t* plane = feature + (n * pb.C + c) * S;
        const scalar_t* go = grad_output + ((n * slots + slot) * pb.C + c) * S + z * pb.H_out * pb.W_out;
        for (int64_t y = 0; y < pb.H_out; ++y, go += pb.W_out) {
          const acc_t wz[2] = {t[2].weight[0][z], t[2].weight[1][z]}, wy[2] = {t[1].weight[0][y], t[1].weight[1][y]};
          const acc_t dz[2] = {t[2].dweight[0][z], t[2].dweight[1][z]};
          const acc_t dy[2] = {t[1].dweight[0][y], t[1].dweight[1][y]};
          combine_rows(plane, t, y, z, H, W, [&](int bz, int by) { return wz[bz] * wy[by]; }, value.data());
          combine_rows(plane, t, y, z, H, W, [&](int bz, int by) { return wz[bz] * dy[by]; }, along_y.data());
          if constexpr (DIMS == 3)
            combine_rows(plane, t, y, z, H, W, [&](int bz, int by) { return dz[bz] * wy[by]; }, along_z.data());
          const acc_t *v = value.data() + kRowPad, *ry = along_y.data() + kRowPad, *rz = along_z.data() + kRowPad;
          acc_t gx = 0, gy = 0, gz = 0;
#pragma omp simd reduction(+ : gx, gy, gz)
          for (int64_t x = 0; x < pb.W_out; ++x) {
            const int32_t b = tx.base[x];
            const acc_t g = acc_t(go[x]), w0 = tx.weight[0][x], w1 = tx.weight[1][x];
            gx += g * tx.factor[x] * (tx.dweight[0][x] * v[b] + tx.dweight[1][x] * v[b + 1]);
            gy += g * (w0 * ry[b] + w1 * ry[b + 1]);
            if constexpr (DIMS == 3) gz += g * (w0 * rz[b] + w1 * rz[b + 1]);
          }
          sg[0] += gx;
          sg[1] += double(gy) * t[1].factor[y];
          if constexpr (DIMS == 3) sg[2] += double(gz) * t[2].factor[z];
        }
      }
      std::copy(sg, sg + DIMS, partials.begin() + task * DIMS);
    }
  });
}

// Forward without a jacobian; false (nothing written) when a motion is not finite.
template <int DIMS, typename scalar_t, typename acc_t>
bool separable_forward_cpu(const Problem& pb, scalar_t* output) {
  MotionTables<DIMS, scalar_t, acc_t> tables;
  if (!tables.build(pb)) return false;
  separable_forward(pb, tables, output);
  return true;
}

// Backward without a jacobian; false (nothing written) when a motion is not finite.
template <int DIMS, typename scalar_t, typename acc_t>
bool separable_backward_cpu(const Problem& pb, const Grads& grads) {
  MotionTables<DIMS, scalar_t, acc_t> tables;
  if (!tables.build(pb)) return false;
  const auto* grad_output = static_cast<const scalar_t*>(grads.grad_output);
  std::vector<double> partials(pb.N * pb.K * pb.D_out * DIMS);
  separable_keypoint_partials(pb, tables, grad_output, partials);
  auto* grad_source = static_cast<scalar_t*>(grads.grad_kp_source);
  auto* grad_driving = static_cast<scalar_t*>(grads.grad_kp_driving);
  for (int64_t nk = 0; nk < pb.N * pb.K; ++nk) {  // the slices' sums, added in order
    double total[3] = {};
    for (int64_t z = 0; z < pb.D_out; ++z)
      for (int a = 0; a < DIMS; ++a) total[a] += partials[(nk * pb.D_out + z) * DIMS + a];
    for (int a = 0; a < DIMS; ++a) {  // d/d kp_source = sg, d/d kp_driving = -sg
      grad_source[nk * DIMS + a] = scalar_t(total[a]);
      grad_driving[nk * DIMS + a] = scalar_t(-total[a]);
    }
  }
  if (grads.grad_feature != nullptr)
    separable_feature_backward(pb, tables, grad_output, static_cast<scalar_t*>(grads.grad_feature));
  return true;
}

}  // namespace
}  // namespace pyface::kpw::PYFACE_CPU_NS
