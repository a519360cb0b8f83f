// What the CPU kernels of keypoint_warp and sparse_motion_warp share: grid_sample's bilinear
// / trilinear stencils for a block of sample positions, laid out corner-major (structure of
// arrays) so that building them, gathering the channels through them and differentiating
// them are loops over the block's positions the compiler vectorises (AVX2 gathers). Corners
// outside the input have offset 0 and weight 0 and are masked out of every read and write
// (element 0 may hold a NaN or inf, which a weight of 0 would not cancel).
// A position that is not finite reads nothing: its sample and its position gradient are NaN
// (the reference's rule, pyface.reference.keypoint_warp.sample).
// Included by sources compiled once per instruction set (cpu_isa.h), so everything lives
// in that copy's namespace.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "coordinate_grid.h"
#include "cpu_isa.h"
#include "keypoint_warp/keypoint_warp.h"
#include "scalar_cast.h"
#include "transpose_block.h"
#include "vec16.h"

#include <ATen/Parallel.h>

namespace pyface::kpw::PYFACE_CPU_NS {
namespace {

using ::pyface::PYFACE_CPU_NS::transpose_block;  // this instruction set's copy
#if defined(__AVX512F__)
using ::pyface::PYFACE_CPU_NS::transpose_16x16;
#endif

constexpr int64_t kBlock = 128;  // positions per block


// The identity grid at output positions s0 .. s0 + len: z[a * kBlock + j], a = x, y, z.
template <typename acc_t>
void identity_block(const Problem& pb, int64_t s0, int64_t len, acc_t* z) {
  for (int64_t j = 0; j < len; ++j) {
    const int64_t s = s0 + j;
    z[j] = grid_coordinate<acc_t>(s % pb.W_out, pb.W_out);
    z[kBlock + j] = grid_coordinate<acc_t>((s / pb.W_out) % pb.H_out, pb.H_out);
    z[2 * kBlock + j] = grid_coordinate<acc_t>(s / (pb.W_out * pb.H_out), pb.D_out);
  }
}

// Keypoint k of sample n: T_k(z) = source + J (z - driving), and z - driving alone without a
// jacobian: no product by an identity, whose 0s would turn an inf into NaN.
template <int DIMS, typename acc_t>
struct KeypointMotion {
  acc_t source[3], driving[3], jac[3][3];
  bool has_jacobian;

  template <typename scalar_t>
  void load(const Problem& pb, int64_t n, int64_t k) {
    const int64_t at = (n * pb.K + k) * DIMS;
    const auto* jacobian = static_cast<const scalar_t*>(pb.jacobian);
    has_jacobian = jacobian != nullptr;
    for (int a = 0; a < DIMS; ++a) {
      source[a] = acc_t(static_cast<const scalar_t*>(pb.kp_source)[at + a]);
      driving[a] = acc_t(static_cast<const scalar_t*>(pb.kp_driving)[at + a]);
      for (int b = 0; b < DIMS; ++b) jac[a][b] = has_jacobian ? acc_t(jacobian[(at + a) * DIMS + b]) : acc_t(0);
    }
  }

  // motion = T_k(z) and rel = z - driving at one position of a block of identity points z.
  void apply(const acc_t* z, int64_t j, acc_t motion[3], acc_t rel[3]) const {
    for (int b = 0; b < DIMS; ++b) rel[b] = z[b * kBlock + j] - driving[b];
    for (int a = 0; a < DIMS; ++a) {
      acc_t moved = source[a];
      if (has_jacobian)
        for (int b = 0; b < DIMS; ++b) moved += jac[a][b] * rel[b];
      else
        moved += rel[a];
      motion[a] = moved;
    }
  }

  // d/d kp_driving = -J^T sg from sg = d/d kp_source (-sg without a jacobian).
  void driving_gradient(const acc_t sg[], acc_t out[]) const {
    for (int b = 0; b < DIMS; ++b) {
      acc_t jt_sg = sg[b];
      if (has_jacobian) {
        jt_sg = 0;
        for (int a = 0; a < DIMS; ++a) jt_sg += jac[a][b] * sg[a];
      }
      out[b] = -jt_sg;
    }
  }
};

// index_t: int32_t (8 indices per AVX2 gather), or int64_t for a plane of 2^31 elements or more.
template <int DIMS, typename acc_t, typename index_t>
struct StencilBlock {
  static constexpr int kCorners = 1 << DIMS;
  alignas(64) index_t offset[kCorners][kBlock];  // into the input plane
  alignas(64) int32_t inside[kCorners][kBlock];  // 1 where the corner lies in the input
  alignas(64) acc_t weight[kCorners][kBlock];
  alignas(64) acc_t dweight[kCorners][DIMS][kBlock];  // d weight / d source coordinate
  alignas(64) acc_t factor[DIMS][kBlock];             // d source coordinate / d position (0 where clipped)
  alignas(64) acc_t poison[kBlock];                   // 0, or NaN where the position is not finite

  // From sample positions pos[a * kBlock + j] (grid_sample's coordinates), as torch computes
  // grid_sample's source coordinates; the derivatives only when asked for.
  void build(const Problem& pb, const acc_t* pos, int64_t len, bool derivatives) {
    const int64_t sizes[3] = {pb.W_in, pb.H_in, pb.D_in};
    alignas(64) int32_t base[DIMS][kBlock];
    alignas(64) acc_t frac[DIMS][kBlock];
    const bool border = pb.padding == kBorder, align = pb.align_corners;
    std::fill(poison, poison + len, acc_t(0));
    for (int a = 0; a < DIMS; ++a) {
      const acc_t size = acc_t(sizes[a]), last = size - 1, slope = align ? last / 2 : size / 2;
      const acc_t* coordinate = pos + a * kBlock;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        acc_t x = align ? (coordinate[j] + 1) / 2 * last : ((coordinate[j] + 1) * size - 1) / 2;
        // NaN and inf become a coordinate outside the input (no cast of NaN to int) and poison the position
        const bool finite = std::abs(coordinate[j]) < std::numeric_limits<acc_t>::infinity();
        poison[j] = finite ? poison[j] : std::numeric_limits<acc_t>::quiet_NaN();
        x = finite ? x : acc_t(-2);
        acc_t f = slope;
        if (border) {
          f = (x <= 0 || x >= last) ? acc_t(0) : slope;  // torch's rule: the bounds count as clipped
          x = std::min(std::max(x, acc_t(0)), last);
        }
        // every corner of a coordinate beyond [-2, size + 1] is outside, as at those bounds:
        // clamped, the integer corners below cannot overflow
        x = std::min(std::max(x, acc_t(-2)), size + 1);
        const acc_t floored = std::floor(x);
        base[a][j] = static_cast<int32_t>(floored);
        frac[a][j] = x - floored;
        factor[a][j] = f;
      }
    }
    const int32_t W = int32_t(sizes[0]), H = int32_t(sizes[1]), D = int32_t(sizes[2]);
    const index_t row = index_t(sizes[0]), plane = index_t(sizes[0] * sizes[1]);
    for (int o = 0; o < kCorners; ++o) {
      // per axis: the corner's index is base + bit, its weight frac (bit 1) or 1 - frac (bit 0)
      const int bx = o & 1, by = (o >> 1) & 1, bz = (o >> 2) & 1;
      const acc_t sx = bx ? 1 : -1, sy = by ? 1 : -1, sz = bz ? 1 : -1;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const int32_t ix = base[0][j] + bx, iy = base[1][j] + by;
        const acc_t wx = acc_t(1 - bx) + sx * frac[0][j], wy = acc_t(1 - by) + sy * frac[1][j];
        bool inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H) & (poison[j] == acc_t(0));
        index_t at = index_t(iy) * row + ix;
        acc_t wz = 1;
        if constexpr (DIMS == 3) {
          const int32_t iz = base[DIMS - 1][j] + bz;
          inside = inside & (iz >= 0) & (iz < D);
          at += index_t(iz) * plane;
          wz = acc_t(1 - bz) + sz * frac[DIMS - 1][j];
        }
        offset[o][j] = inside ? at : 0;
        this->inside[o][j] = inside;
        weight[o][j] = inside ? wx * wy * wz : acc_t(0);
        if (derivatives) {
          dweight[o][0][j] = inside ? sx * wy * wz : acc_t(0);
          dweight[o][1][j] = inside ? sy * wx * wz : acc_t(0);
          if constexpr (DIMS == 3) dweight[o][DIMS - 1][j] = inside ? sz * wx * wy : acc_t(0);
        }
      }
    }
  }

  // out[j] = the sample of `plane` at position j.
  template <typename scalar_t>
  void gather(const scalar_t* plane, scalar_t* out, int64_t len) const {
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      acc_t sum = 0;
      for (int o = 0; o < kCorners; ++o) {
        const acc_t v = acc_t(plane[offset[o][j]]);  // read unmasked (offset 0 outside), then selected
        sum += inside[o][j] ? weight[o][j] * v : acc_t(0);
      }
      out[j] = to_scalar<scalar_t>(sum + poison[j]);
    }
  }

  // tile[j * width + ch] = the sample of channel c0 + ch at position j, from the feature laid
  // out channels-last, plane[offset * C + c]: per position and corner one contiguous run of
  // channels, a vector load and FMA each, where gather() reads one element per corner and channel.
  void gather_channels_last(const acc_t* plane, int64_t C, int64_t c0, int64_t width, int64_t len, acc_t* tile) const {
    for (int64_t j = 0; j < len; ++j) {
      acc_t* row = tile + j * width;
      std::fill(row, row + width, poison[j]);
      for (int o = 0; o < kCorners; ++o) {
        if (!inside[o][j]) continue;  // element 0 may hold an inf that a weight of 0 would not cancel
        const acc_t w = weight[o][j];
        const acc_t* corner = plane + int64_t(offset[o][j]) * C + c0;
#pragma omp simd
        for (int64_t ch = 0; ch < width; ++ch) row[ch] += w * corner[ch];
      }
    }
  }

  // grad[a * kBlock + j] += d(go[j] * sample j) / d source coordinate a (before `factor`).
  template <typename scalar_t>
  void accumulate_position_grad(const scalar_t* plane, const scalar_t* go, acc_t* grad, int64_t len) const {
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      acc_t g[3] = {0, 0, 0};
      for (int o = 0; o < kCorners; ++o) {
        const acc_t read = acc_t(plane[offset[o][j]]);
        const acc_t v = inside[o][j] ? read : acc_t(0);
        for (int a = 0; a < DIMS; ++a) g[a] += v * dweight[o][a][j];
      }
      const acc_t scale = acc_t(go[j]);
      for (int a = 0; a < DIMS; ++a) grad[a * kBlock + j] += scale * g[a] + poison[j];
    }
  }

  // grad[a * kBlock + j] += the same from the feature and go laid out channels-last,
  // plane[offset * C + c] and go_cl[j * C + c]: per corner one dot product over the channels.
  void accumulate_position_grad_channels_last(const acc_t* plane, const acc_t* go_cl, int64_t C, acc_t* grad,
                                              int64_t len) const {
    for (int64_t j = 0; j < len; ++j) {
      const acc_t* go = go_cl + j * C;
      acc_t g[3] = {0, 0, 0};
      for (int o = 0; o < kCorners; ++o) {
        if (!inside[o][j]) continue;
        const acc_t* corner = plane + int64_t(offset[o][j]) * C;
        acc_t dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < C; ++c) dot += go[c] * corner[c];
        for (int a = 0; a < DIMS; ++a) g[a] += dot * dweight[o][a][j];
      }
      for (int a = 0; a < DIMS; ++a) grad[a * kBlock + j] += g[a] + poison[j];
    }
  }

  // The transpose of gather for `lanes` channels at once, channel-last: sums[offset * lanes +
  // ch] += weight * go_t[j * lanes + ch]. One vector add per corner and position.
  void scatter(const acc_t* go_t, int64_t lanes, acc_t* sums, int64_t len) const {
    for (int64_t j = 0; j < len; ++j) {
      for (int o = 0; o < kCorners; ++o) {
        if (!inside[o][j]) continue;
        const acc_t w = weight[o][j];
        acc_t* sum = sums + int64_t(offset[o][j]) * lanes;
        const acc_t* go = go_t + j * lanes;
#pragma omp simd
        for (int64_t ch = 0; ch < lanes; ++ch) sum[ch] += w * go[ch];
      }
    }
  }
};

// Channels per tile of the channels-last gather: a 128-position tile of them fits in L1.
constexpr int64_t kTileChannels = 64;

// Channels per d/d feature scatter task: as many as 64, so that a task builds each stencil
// once for many channels, while N * C / lanes tasks still keep every thread busy. Each
// channel's sums run in the same order whatever the width, so the result does not depend on it.
inline int64_t scatter_lanes(int64_t N, int64_t C) {
  const int64_t tasks_wanted = 2 * int64_t(at::get_num_threads());
  int64_t lanes = 64;
  while (lanes > 8 && N * ((C + lanes - 1) / lanes) < tasks_wanted) lanes /= 2;
  return lanes;
}

// dst[j * C + c] = src[c * S + s0 + j] for j < len: a block of a (C, S) plane laid out
// channels-last in the accumulation dtype.
template <typename scalar_t, typename acc_t>
void channels_last_rows(const scalar_t* src, int64_t C, int64_t S, int64_t s0, int64_t len, acc_t* dst) {
  transpose_block(src + s0, S, dst, C, C, len);
}

// out[ch * S + j] = tile[j * width + ch] for j < len: a channels-last tile stored channel-first.
template <typename scalar_t, typename acc_t>
void store_tile(const acc_t* tile, int64_t len, int64_t width, int64_t S, scalar_t* out) {
  transpose_block(tile, width, out, S, len, width);
}

#if defined(__AVX512F__)
// The samples of channels c0 .. c0+15 at position j, from the channels-last float plane.
template <int DIMS, typename index_t>
inline __m512 sixteen_channels(const StencilBlock<DIMS, float, index_t>& stencils, const float* plane, int64_t C,
                               int64_t c0, int64_t j) {
  __m512 sum = _mm512_set1_ps(stencils.poison[j]);
  for (int o = 0; o < StencilBlock<DIMS, float, index_t>::kCorners; ++o) {
    if (!stencils.inside[o][j]) continue;  // element 0 may hold an inf that a weight of 0 would not cancel
    const float* corner = plane + int64_t(stencils.offset[o][j]) * C + c0;
    sum = _mm512_fmadd_ps(_mm512_set1_ps(stencils.weight[o][j]), _mm512_loadu_ps(corner), sum);
  }
  return sum;
}

// out[c * S + j] for channels c0 .. c0+15: per 16 positions, one register of 16 channels
// each, transposed in registers into one of 16 positions per channel and stored as such,
// instead of through a channels-last tile written, read back and transposed. Returns the
// channels done: C rounded down to a multiple of 16.
template <int DIMS, typename scalar_t, typename index_t>
int64_t sample_channels_by_16(const StencilBlock<DIMS, float, index_t>& stencils, const float* plane, int64_t C,
                              int64_t len, scalar_t* out, int64_t S) {
  const int64_t whole = len - len % 16;
  int64_t c0 = 0;
  for (; c0 + 16 <= C; c0 += 16) {
    for (int64_t j0 = 0; j0 < whole; j0 += 16) {
      __m512 r[16];
      for (int jj = 0; jj < 16; ++jj) r[jj] = sixteen_channels(stencils, plane, C, c0, j0 + jj);
      transpose_16x16(r);
      for (int cc = 0; cc < 16; ++cc) store16(out + (c0 + cc) * S + j0, r[cc]);
    }
    for (int64_t j = whole; j < len; ++j) {
      alignas(64) float column[16];
      _mm512_store_ps(column, sixteen_channels(stencils, plane, C, c0, j));
      for (int cc = 0; cc < 16; ++cc) out[(c0 + cc) * S + j] = to_scalar<scalar_t>(column[cc]);
    }
  }
  return c0;
}
#endif

// The samples of a sample's C channels at the block's positions, out[c * S + j]: gathered from
// its channel-first feature planes (feature[c * S_in + ...]), or, given plane_cl, from its
// channels-last copy, 16 channels at a time through registers (AVX-512, float and bfloat16)
// and the rest through `tile` (kBlock * min(kTileChannels, C) elements).
template <int DIMS, typename scalar_t, typename acc_t, typename index_t>
void sample_channels(const StencilBlock<DIMS, acc_t, index_t>& stencils, const scalar_t* feature,
                     const acc_t* plane_cl, int64_t C, int64_t S_in, int64_t len, scalar_t* out, int64_t S,
                     acc_t* tile) {
  if (plane_cl == nullptr) {
    for (int64_t c = 0; c < C; ++c) stencils.gather(feature + c * S_in, out + c * S, len);
    return;
  }
  int64_t done = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<acc_t, float> &&
                (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>))
    done = sample_channels_by_16(stencils, plane_cl, C, len, out, S);
#endif
  for (int64_t c0 = done; c0 < C; c0 += kTileChannels) {
    const int64_t width = std::min(kTileChannels, C - c0);
    stencils.gather_channels_last(plane_cl, C, c0, width, len, tile);
    store_tile(tile, len, width, S, out + c0 * S);
  }
}

// Runs fn(begin, end) over the tasks (sample, block of output positions), `blocks` per sample:
// all at once, or, given plane_cl (C x S_in of the accumulation dtype), sample by sample after
// laying that sample's feature out channels-last there.
template <typename scalar_t, typename acc_t, typename Fn>
void for_each_sample_plane(const Problem& pb, acc_t* plane_cl, int64_t blocks, const Fn& fn) {
  if (plane_cl == nullptr) {
    at::parallel_for(0, pb.N * blocks, 1, fn);
    return;
  }
  const auto* feature = static_cast<const scalar_t*>(pb.feature);
  const int64_t S_in = pb.in_size(), in_blocks = (S_in + kBlock - 1) / kBlock;
  for (int64_t n = 0; n < pb.N; ++n) {
    at::parallel_for(0, in_blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        channels_last_rows(feature + n * pb.C * S_in, pb.C, S_in, b * kBlock, std::min(kBlock, S_in - b * kBlock),
                           plane_cl + b * kBlock * pb.C);
    });
    at::parallel_for(n * blocks, (n + 1) * blocks, 1, fn);
  }
}

// fn(index_t{}) with the stencils' offset type for the problem's input plane.
template <typename Fn>
void with_index_type(const Problem& pb, Fn&& fn) {
  if (pb.in_size() > std::numeric_limits<int32_t>::max())
    fn(int64_t{});
  else
    fn(int32_t{});
}

}  // namespace
}  // namespace pyface::kpw::PYFACE_CPU_NS
