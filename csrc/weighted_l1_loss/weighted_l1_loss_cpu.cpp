// CPU kernels of the masked weighted L1 loss: one pass over input, target and labels
// that writes the loss map, or the loss and the input gradient together.
#include "weighted_l1_loss/weighted_l1_loss.h"

#include "cpu_isa.h"
#include "prefetch.h"
#include "scalar_cast.h"
#include "stream_store.h"
#include "vec16.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace pyface::wl1::PYFACE_CPU_NS {
namespace {

// A tile, the work item, is (one sample, a run of pixels, every channel), so the per-pixel
// factor class_weights[label] is gathered once and reused over C. Tiles are as long as the
// problem allows while it still splits into kMinTiles of them (a count fixed by the problem,
// not by the thread count, so the sum's order is too): with runs of 1024 pixels each row
// of the tile started a new 4 KB page, and on an AVX-512 EPYC the ATVGnet-size inference
// took 1.95-2.07 ms against 1.64-1.73 ms with runs of 16384, timed in the same process.
constexpr int64_t kMaxTileLen = 16384;
constexpr int64_t kMinTileLen = 1024;
constexpr int64_t kMinTiles = 64;
// Rows of a tile are summed, and a streamed gradient staged, per segment of this many
// pixels: float partial sums over at most 32 terms a lane, and a staging buffer in L1.
constexpr int64_t kSegment = 1024;

int64_t tile_len(int64_t N, int64_t P) {
  int64_t len = kMaxTileLen;
  while (len > kMinTileLen && N * ((P + len - 1) / len) < kMinTiles) len /= 2;
  return len;
}

enum class Mode { WriteMap, Reduce, ReduceAndGrad, Backward };

template <typename acc_t>
acc_t sign_of(acc_t d) {
  return (d > acc_t(0) ? acc_t(1) : acc_t(0)) - (d < acc_t(0) ? acc_t(1) : acc_t(0));
}

// sum of term(j) over j in [0, len), kept in kLanes independent partial sums: with one
// accumulator every vector add waits for the previous one, and the ATVGnet-size loss ran
// at half the speed of its loads.
template <typename acc_t, typename Term>
acc_t lane_sum(int64_t len, Term term) {
  constexpr int64_t kLanes = 32;
  acc_t part[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= len; j += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) part[l] += term(j + l);
  }
  for (int64_t l = 0; j < len; ++j, ++l) part[l] += term(j);
  acc_t sum = 0;
  for (int64_t l = 0; l < kLanes; ++l) sum += part[l];
  return sum;
}

#if defined(__AVX512F__)
// The sum of w * |x - t| over a segment and, with kGrad, out = w * inv_d * sign(x - t), sixteen
// lanes at a time in float (the type conversions in registers, vec16.h), in 32 partial sums as
// lane_sum keeps them. GCC's own vectorisation of the loop below runs eight lanes and, for
// bfloat16, spends most of its instructions on the conversions. Timed in turns with that loop
// and eager in one process (AVX-512 EPYC): ATVGnet bfloat16 forward 1.06 -> 0.72 ms, inference
// 0.74 -> 0.46 ms; float32 forward 1.35 -> 1.26 ms.
template <bool kGrad, typename scalar_t, typename weight_t>
float sum_and_grad16(const scalar_t* x, const scalar_t* t, const weight_t* w, int64_t len, float inv_d, scalar_t* out) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
  const __m512 scale = _mm512_set1_ps(inv_d);
  __m512 sums[2] = {zero, zero};
  auto lanes = [&](int64_t j, __mmask16 m, __m512& sum) {
    const __m512 d = _mm512_sub_ps(load16(x + j, m), load16(t + j, m));
    const __m512 wj = w != nullptr ? load16(w + j, m) : one;
    sum = _mm512_fmadd_ps(wj, _mm512_abs_ps(d), sum);
    if constexpr (kGrad) {
      // sign(d) as lane_sum's term takes it: 0 for 0 and NaN; multiplied, so a NaN weight stays NaN
      const __m512 sign = _mm512_mask_mov_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, zero, _CMP_LT_OQ), minus_one),
                                             _mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ), one);
      store16(out + j, _mm512_mul_ps(_mm512_mul_ps(wj, scale), sign), m);
    }
  };
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    prefetch_ahead(x + j, 32 * sizeof(scalar_t));
    prefetch_ahead(t + j, 32 * sizeof(scalar_t));
    if (w != nullptr) prefetch_ahead(w + j, 32 * sizeof(weight_t));
    lanes(j, kAllLanes, sums[0]);
    lanes(j + 16, kAllLanes, sums[1]);
  }
  for (int half = 0; j < len; j += 16, half ^= 1) lanes(j, first_lanes(len - j), sums[half]);
  return _mm512_reduce_add_ps(_mm512_add_ps(sums[0], sums[1]));
}
#endif

// One row segment of `len` elements. `w`, in acc_t or scalar_t, is null when every weight is 1.
template <Mode kMode, typename scalar_t, typename acc_t, typename weight_t>
acc_t row_segment(const scalar_t* x, const scalar_t* t, const weight_t* w, const scalar_t* grad_out,
                  int64_t len, acc_t inv_d, scalar_t* out) {
  if constexpr (kMode == Mode::WriteMap || kMode == Mode::Backward) {
    if (w == nullptr) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const acc_t d = acc_t(x[j]) - acc_t(t[j]);
        if constexpr (kMode == Mode::WriteMap) out[j] = to_scalar<scalar_t>(std::abs(d));
        else out[j] = to_scalar<scalar_t>(acc_t(grad_out[j]) * sign_of(d));
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const acc_t d = acc_t(x[j]) - acc_t(t[j]);
        if constexpr (kMode == Mode::WriteMap) out[j] = to_scalar<scalar_t>(acc_t(w[j]) * std::abs(d));
        else out[j] = to_scalar<scalar_t>(acc_t(grad_out[j]) * acc_t(w[j]) * sign_of(d));
      }
    }
    return 0;
  } else {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<acc_t, float>)
      return sum_and_grad16<kMode == Mode::ReduceAndGrad>(x, t, w, len, inv_d, out);
#endif
    auto term = [&](int64_t j, acc_t wj) {
      const acc_t d = acc_t(x[j]) - acc_t(t[j]);
      if constexpr (kMode == Mode::ReduceAndGrad) out[j] = to_scalar<scalar_t>(wj * inv_d * sign_of(d));
      return wj * std::abs(d);
    };
    if (w == nullptr) return lane_sum<acc_t>(len, [&](int64_t j) { return term(j, acc_t(1)); });
    return lane_sum<acc_t>(len, [&](int64_t j) { return term(j, acc_t(w[j])); });
  }
}

#if defined(__AVX512F__)
// Sixteen labels as 32-bit lanes; `bad` gains those outside [0, classes) (a negative label is
// a large unsigned one).
inline __m512i sixteen_labels(const uint8_t* lab, int64_t classes, __mmask16& bad) {
  const __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lab)));
  bad |= _mm512_cmpge_epu32_mask(k, _mm512_set1_epi32(int32_t(classes)));
  return k;
}

inline __m512i sixteen_labels(const int32_t* lab, int64_t classes, __mmask16& bad) {
  const __m512i k = _mm512_loadu_si512(lab);
  bad |= _mm512_cmpge_epu32_mask(k, _mm512_set1_epi32(int32_t(classes)));
  return k;
}

inline __m512i sixteen_labels(const int64_t* lab, int64_t classes, __mmask16& bad) {
  const __m512i low = _mm512_loadu_si512(lab), high = _mm512_loadu_si512(lab + 8);
  const __m512i limit = _mm512_set1_epi64(classes);
  bad |= __mmask16(_mm512_cmpge_epu64_mask(low, limit) | (_mm512_cmpge_epu64_mask(high, limit) << 8));
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(low)), _mm512_cvtepi64_epi32(high), 1);
}

// out[j] = cw[labels[j]] over the whole sixteens of len, for at most 32 classes: the table sits
// in two registers and one permute looks up sixteen labels. Against the scalar lookup, switched
// per call in one process with the cache flushed between calls, the style-aware 512 float32
// loss (5 x 3 x 512 x 512, 19 classes, uint8 labels) went from 1.35-1.44 to 1.21-1.28 ms.
// Returns how many it did; out_of_range is set when a label was outside the table.
template <typename label_t>
int64_t class_weights_by_16(const label_t* lab, int64_t len, const float* cw, int64_t classes, float* out,
                            bool& out_of_range) {
  alignas(64) float table[32] = {};
  std::copy(cw, cw + classes, table);
  const __m512 low = _mm512_load_ps(table), high = _mm512_load_ps(table + 16);
  __mmask16 bad = 0;
  int64_t j = 0;
  for (; j + 16 <= len; j += 16)
    _mm512_storeu_ps(out + j, _mm512_permutex2var_ps(low, sixteen_labels(lab + j, classes, bad), high));
  out_of_range |= bad != 0;
  return j;
}
#endif

template <typename scalar_t, typename acc_t>
class Tiles {
 public:
  explicit Tiles(const Problem& pb)
      : pb_(pb), tile_len_(tile_len(pb.N, pb.P)), tiles_per_sample_((pb.P + tile_len_ - 1) / tile_len_),
        weight_per_channel_(pb.weight != nullptr && pb.w_stride_c != 0),
        weight_in_place_(pb.weight != nullptr && !weight_per_channel_ && pb.labels == nullptr && pb.w_stride_p == 1) {}

  int64_t count() const { return pb_.N * tiles_per_sample_; }

  // Runs fn(tile, first_pixel, length, pixel_factor, scratch) over all tiles in parallel;
  // pixel_factor is null when no factor is shared by the channels of a pixel.
  template <typename Fn>
  void for_each(Fn fn) const {
    at::parallel_for(0, count(), 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> pixel(tile_len_), channel(tile_len_);
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t n = tile / tiles_per_sample_;
        const int64_t p0 = (tile % tiles_per_sample_) * tile_len_;
        const int64_t len = std::min(tile_len_, pb_.P - p0);
        fn(tile, n, p0, len, pixel_factor(n, p0, len, pixel.data()), channel.data());
      }
    });
  }

  // Calls fn(w) with the weight of channel c over the tile's pixels: the weight map itself,
  // in its own type, when it is the only factor and is contiguous (weight_in_place_); else a
  // row in acc_t, the pixel factor times the weight when the weight varies over channels;
  // else a null acc_t pointer, meaning all ones.
  template <typename Fn>
  void with_channel_weight(int64_t n, int64_t c, int64_t p0, int64_t len, const acc_t* pixel, acc_t* scratch,
                           Fn fn) const {
    if (weight_in_place_) return fn(static_cast<const scalar_t*>(pb_.weight) + n * pb_.w_stride_n + p0);
    if (!weight_per_channel_) return fn(pixel);
    const scalar_t* wt = static_cast<const scalar_t*>(pb_.weight) + n * pb_.w_stride_n +
                         c * pb_.w_stride_c + p0 * pb_.w_stride_p;
    scale_by_weight(wt, pixel, len, scratch);
    fn(static_cast<const acc_t*>(scratch));
  }

 private:
  // out[j] = (factor ? factor[j] : 1) * wt[j * w_stride_p]; the two strides get their own
  // loops so that each vectorises.
  void scale_by_weight(const scalar_t* wt, const acc_t* factor, int64_t len, acc_t* out) const {
    if (pb_.w_stride_p == 0) {
      const acc_t w = acc_t(wt[0]);
      for (int64_t j = 0; j < len; ++j) out[j] = (factor ? factor[j] : acc_t(1)) * w;
    } else if (factor != nullptr) {
      for (int64_t j = 0; j < len; ++j) out[j] = factor[j] * acc_t(wt[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) out[j] = acc_t(wt[j]);
    }
  }

  template <typename label_t>
  void gather_class_weights(int64_t n, int64_t p0, int64_t len, acc_t* out) const {
    const label_t* lab = static_cast<const label_t*>(pb_.labels) + n * pb_.P + p0;
    const acc_t* cw = static_cast<const acc_t*>(pb_.class_weights);
    // Checked after the loop, so the loop itself stays branch-free.
    bool out_of_range = false;
    int64_t j = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<acc_t, float>)
      if (pb_.num_classes <= 32) j = class_weights_by_16(lab, len, cw, pb_.num_classes, out, out_of_range);
#endif
    for (; j < len; ++j) {
      const int64_t k = static_cast<int64_t>(lab[j]);
      const bool bad = k < 0 || k >= pb_.num_classes;
      out_of_range |= bad;
      out[j] = cw[bad ? 0 : k];
    }
    if (out_of_range) {  // read again from the start, to name the first label outside
      for (int64_t i = 0; i < len; ++i) {
        const int64_t k = static_cast<int64_t>(lab[i]);
        TORCH_CHECK_VALUE(k >= 0 && k < pb_.num_classes, "weighted_l1_loss: labels holds ", k,
                          ", outside [0, num_classes=", pb_.num_classes, ")");
      }
    }
  }

  // The factor shared by the channels of each pixel of the tile, in `scratch`; null when
  // there is none or when the weight map is read in place (weight_in_place_).
  const acc_t* pixel_factor(int64_t n, int64_t p0, int64_t len, acc_t* scratch) const {
    const bool pixel_weight = pb_.weight != nullptr && !weight_per_channel_;
    const scalar_t* wt =
        pixel_weight ? static_cast<const scalar_t*>(pb_.weight) + n * pb_.w_stride_n + p0 * pb_.w_stride_p : nullptr;
    if (pb_.labels == nullptr) {
      if (!pixel_weight || weight_in_place_) return nullptr;
      scale_by_weight(wt, nullptr, len, scratch);
      return scratch;
    }
    switch (pb_.label_bytes) {
      case 1: gather_class_weights<uint8_t>(n, p0, len, scratch); break;
      case 4: gather_class_weights<int32_t>(n, p0, len, scratch); break;
      default: gather_class_weights<int64_t>(n, p0, len, scratch); break;
    }
    if (pixel_weight) scale_by_weight(wt, scratch, len, scratch);
    return scratch;
  }

  const Problem& pb_;
  const int64_t tile_len_;
  const int64_t tiles_per_sample_;
  const bool weight_per_channel_;
  // A weight map shared by the channels, contiguous over pixels and with no labels (ATVGnet's
  // attention) is the tile's factor as it is, in its own type. A bfloat16 map converted to a
  // float row first cost an extra pass (ATVGnet bfloat16 inference with a flushed cache,
  // 0.81x torch.compile against 1.03-1.06x read in place).
  const bool weight_in_place_;
};

// Sum over all elements of the effective weight broadcast to input's shape.
template <typename scalar_t, typename acc_t>
double weight_total(const Tiles<scalar_t, acc_t>& tiles, const Problem& pb) {
  std::vector<double> partial(tiles.count(), 0.0);
  tiles.for_each([&](int64_t tile, int64_t n, int64_t p0, int64_t len, const acc_t* pixel, acc_t* scratch) {
    double s = 0;
    auto add_row = [&](const auto* w) {
      if (w == nullptr) {
        s += double(len);
        return;
      }
      for (int64_t j0 = 0; j0 < len; j0 += kSegment) {
        const int64_t end = std::min(len, j0 + kSegment);
        acc_t segment = 0;
#pragma omp simd reduction(+ : segment)
        for (int64_t j = j0; j < end; ++j) segment += acc_t(w[j]);
        s += segment;
      }
    };
    for (int64_t c = 0; c < pb.C; ++c) tiles.with_channel_weight(n, c, p0, len, pixel, scratch, add_row);
    partial[tile] = s;
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

template <Mode kMode, typename scalar_t, typename acc_t>
double run_rows(const Tiles<scalar_t, acc_t>& tiles, const Problem& pb, std::type_identity_t<acc_t> inv_d,
                std::type_identity_t<const scalar_t*> grad_out, std::type_identity_t<scalar_t*> out) {
  const auto* x = static_cast<const scalar_t*>(pb.input);
  const auto* t = static_cast<const scalar_t*>(pb.target);
  // The forward's input gradient is as large as the input and read only in the backward, after
  // the rest of the step: a large one is staged per row segment and streamed out (ATVGnet
  // float32 forward 3.9-4.4 -> 3.0-3.3 ms, measured on an AVX-512 EPYC).
  const bool stream_grad = kMode == Mode::ReduceAndGrad &&
                           pb.N * pb.C * pb.P * int64_t(sizeof(scalar_t)) >= kStreamStoreMinBytes;
  std::vector<double> partial(tiles.count(), 0.0);
  tiles.for_each([&](int64_t tile, int64_t n, int64_t p0, int64_t len, const acc_t* pixel, acc_t* scratch) {
    double s = 0;
    alignas(64) scalar_t staged[kMode == Mode::ReduceAndGrad ? kSegment : 1];
    for (int64_t c = 0; c < pb.C; ++c) {
      tiles.with_channel_weight(n, c, p0, len, pixel, scratch, [&](const auto* w) {
        for (int64_t j = 0; j < len; j += kSegment) {
          const int64_t at = (n * pb.C + c) * pb.P + p0 + j;
          scalar_t* segment_out = stream_grad ? staged : out ? out + at : nullptr;
          const int64_t seg = std::min(kSegment, len - j);
          const scalar_t* row_grad = grad_out ? grad_out + at : nullptr;
          s += row_segment<kMode>(x + at, t + at, w ? w + j : w, row_grad, seg, inv_d, segment_out);
          if (stream_grad) stream_store(out + at, staged, seg * sizeof(scalar_t));
        }
      });
    }
    if (stream_grad) stream_store_fence();
    partial[tile] = s;
  });
  double total = 0;  // summed in tile order: the result does not depend on the thread count
  for (double s : partial) total += s;
  return total;
}

template <typename scalar_t, typename acc_t>
void forward_typed(const Problem& pb, int64_t reduction, bool weight_normalize, const Outputs& out) {
  const Tiles<scalar_t, acc_t> tiles(pb);
  if (reduction == kNone) {
    run_rows<Mode::WriteMap>(tiles, pb, acc_t(1), nullptr, static_cast<scalar_t*>(out.out_map));
    return;
  }
  double inv_d = 1.0;
  if (reduction == kMean) {
    const double d = weight_normalize ? weight_total(tiles, pb) : double(pb.N * pb.C * pb.P);
    inv_d = d != 0 ? 1.0 / d : 0.0;  // a zero total weight gives 0, not NaN; a NaN total stays NaN
  }
  auto* grad = static_cast<scalar_t*>(out.grad);
  const double total =
      grad ? run_rows<Mode::ReduceAndGrad>(tiles, pb, acc_t(inv_d), nullptr, grad)
           : run_rows<Mode::Reduce>(tiles, pb, acc_t(inv_d), nullptr, nullptr);
  *static_cast<scalar_t*>(out.out_loss) = scalar_t(total * inv_d);
}

}  // namespace

void forward_cpu(const Problem& pb, int64_t reduction, bool weight_normalize, const Outputs& out) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    forward_typed<decltype(s), decltype(a)>(pb, reduction, weight_normalize, out);
  });
}

void backward_cpu(const Problem& pb, const void* grad_output, void* grad_input) {
  dispatch_scalar(pb.scalar, [&](auto s, auto a) {
    using scalar_t = decltype(s);
    using acc_t = decltype(a);
    const Tiles<scalar_t, acc_t> tiles(pb);
    run_rows<Mode::Backward>(tiles, pb, acc_t(1), static_cast<const scalar_t*>(grad_output),
                             static_cast<scalar_t*>(grad_input));
  });
}

}  // namespace pyface::wl1::PYFACE_CPU_NS
