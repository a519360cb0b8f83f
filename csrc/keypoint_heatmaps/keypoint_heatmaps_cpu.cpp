// CPU kernels of the keypoint heatmaps. A Gaussian with a diagonal covariance is a product
// of one factor per axis, so each (sample, keypoint) task evaluates the factors on the W,
// H and D axes once and forms each row of the map as a product (vectorised over W); the
// backward reduces each row of the incoming gradient against the factors the same way.
#include "keypoint_heatmaps/keypoint_heatmaps.h"

#include "coordinate_grid.h"
#include "cpu_isa.h"
#include "scalar_cast.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace pyface::kph::PYFACE_CPU_NS {
namespace {

// One keypoint's factors on the three axes: value exp(-(c - kp)^2 / (2 var)) and, for the
// backward, the value times (c - kp). The z factors are 1 and 0 for 2-D maps.
template <typename acc_t>
struct AxisFactors {
  std::vector<acc_t> x, y, z, x_slope, y_slope, z_slope;

  AxisFactors(const Problem& pb) : x(pb.W), y(pb.H), z(pb.D), x_slope(pb.W), y_slope(pb.H), z_slope(pb.D) {}

  template <typename scalar_t>
  void evaluate(const Problem& pb, const scalar_t* kp) {
    const acc_t half_inv_var = acc_t(0.5 / pb.variance);
    auto axis = [&](std::vector<acc_t>& value, std::vector<acc_t>& slope, int64_t size, acc_t centre) {
      for (int64_t i = 0; i < size; ++i) {
        const acc_t offset = grid_coordinate<acc_t>(i, size) - centre;
        value[i] = std::exp(-half_inv_var * offset * offset);
        slope[i] = value[i] * offset;
      }
    };
    axis(x, x_slope, pb.W, acc_t(kp[0]));
    axis(y, y_slope, pb.H, acc_t(kp[1]));
    if (pb.dims == 3) {
      axis(z, z_slope, pb.D, acc_t(kp[2]));
    } else {
      z[0] = acc_t(1);
      z_slope[0] = acc_t(0);
    }
  }
};

template <typename scalar_t, typename acc_t>
void forward_maps(const Problem& pb, scalar_t* heatmaps) {
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving);
  const auto* source = static_cast<const scalar_t*>(pb.kp_source);
  const int64_t plane = pb.D * pb.H * pb.W;
  at::parallel_for(0, pb.N * (pb.K + 1), 1, [&](int64_t begin, int64_t end) {
    AxisFactors<acc_t> fd(pb), fs(pb);
    for (int64_t slot = begin; slot < end; ++slot) {
      scalar_t* out = heatmaps + slot * plane;
      const int64_t n = slot / (pb.K + 1), k = slot % (pb.K + 1) - 1;
      if (k < 0) {  // the background slot
        std::fill(out, out + plane, scalar_t(0));
        continue;
      }
      fd.evaluate(pb, driving + (n * pb.K + k) * pb.dims);
      fs.evaluate(pb, source + (n * pb.K + k) * pb.dims);
      for (int64_t d = 0; d < pb.D; ++d) {
        for (int64_t h = 0; h < pb.H; ++h) {
          const acc_t row_d = fd.z[d] * fd.y[h], row_s = fs.z[d] * fs.y[h];
          scalar_t* row = out + (d * pb.H + h) * pb.W;
          const acc_t *xd = fd.x.data(), *xs = fs.x.data();
#pragma omp simd
          for (int64_t w = 0; w < pb.W; ++w) row[w] = to_scalar<scalar_t>(row_d * xd[w] - row_s * xs[w]);
        }
      }
    }
  });
}

// d/d kp of exp(-|z - kp|^2 / (2 var)) is the Gaussian times (z - kp) / var; summed against
// the gradient row by row: each row gives sum_w g * x and sum_w g * x_slope.
template <typename scalar_t, typename acc_t>
void backward_keypoints(const Problem& pb, const scalar_t* grad, scalar_t* grad_driving, scalar_t* grad_source) {
  const auto* driving = static_cast<const scalar_t*>(pb.kp_driving);
  const auto* source = static_cast<const scalar_t*>(pb.kp_source);
  const int64_t plane = pb.D * pb.H * pb.W;
  at::parallel_for(0, pb.N * pb.K, 1, [&](int64_t begin, int64_t end) {
    AxisFactors<acc_t> fd(pb), fs(pb);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / pb.K, k = task % pb.K;
      fd.evaluate(pb, driving + task * pb.dims);
      fs.evaluate(pb, source + task * pb.dims);
      const scalar_t* g = grad + (n * (pb.K + 1) + k + 1) * plane;
      acc_t sum_d[3] = {0, 0, 0}, sum_s[3] = {0, 0, 0};
      for (int64_t d = 0; d < pb.D; ++d) {
        for (int64_t h = 0; h < pb.H; ++h) {
          const scalar_t* row = g + (d * pb.H + h) * pb.W;
          const acc_t *xd = fd.x.data(), *xds = fd.x_slope.data(), *xs = fs.x.data(), *xss = fs.x_slope.data();
          acc_t plain_d = 0, slope_d = 0, plain_s = 0, slope_s = 0;
#pragma omp simd reduction(+ : plain_d, slope_d, plain_s, slope_s)
          for (int64_t w = 0; w < pb.W; ++w) {
            const acc_t gw = acc_t(row[w]);
            plain_d += gw * xd[w];
            slope_d += gw * xds[w];
            plain_s += gw * xs[w];
            slope_s += gw * xss[w];
          }
          sum_d[0] += fd.z[d] * fd.y[h] * slope_d;
          sum_d[1] += fd.z[d] * fd.y_slope[h] * plain_d;
          sum_d[2] += fd.z_slope[d] * fd.y[h] * plain_d;
          sum_s[0] += fs.z[d] * fs.y[h] * slope_s;
          sum_s[1] += fs.z[d] * fs.y_slope[h] * plain_s;
          sum_s[2] += fs.z_slope[d] * fs.y[h] * plain_s;
        }
      }
      const acc_t inv_var = acc_t(1.0 / pb.variance);
      for (int64_t i = 0; i < pb.dims; ++i) {
        grad_driving[task * pb.dims + i] = scalar_t(sum_d[i] * inv_var);
        grad_source[task * pb.dims + i] = scalar_t(-sum_s[i] * inv_var);
      }
    }
  });
}

}  // namespace

void forward_cpu(const Problem& pb, void* heatmaps) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    forward_maps<scalar_t, acc_t>(pb, static_cast<scalar_t*>(heatmaps));
  });
}

void backward_cpu(const Problem& pb, const void* grad, void* grad_kp_driving, void* grad_kp_source) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    backward_keypoints<scalar_t, acc_t>(pb, static_cast<const scalar_t*>(grad), static_cast<scalar_t*>(grad_kp_driving),
                                        static_cast<scalar_t*>(grad_kp_source));
  });
}

}  // namespace pyface::kph::PYFACE_CPU_NS
