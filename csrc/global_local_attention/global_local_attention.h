// GLAMOR-Net's Global-Local Attention (docs/ops.md, global_local_attention): what the host code hands to the
// score-net kernels. The two products of the first layer are GEMMs run by the host code
// (the face half once per sample, the cell half once per cell, never on a concatenation);
// the kernels do everything between them and the softmax.
#pragma once

#include <cstdint>

#include "cpu_isa.h"
#include "dispatch.h"

namespace pyface::gla {

using pyface::ScalarKind;

// projection (N, P, Hd) contiguous, cell-major: the cell half of the first layer,
// W1[:, Df:] @ cell, for every cell (one GEMM over the N * P cells).
// face_term (N, Hd) contiguous: the face half plus the bias, W1[:, :Df] @ face + b1.
// w2, hidden_scale, hidden_shift: (Hd,) contiguous; the last two null without the folded
// BatchNorm. All in the inputs' dtype.
// Per cell: pre = projection + face_term, hidden = relu(pre), and with the BatchNorm
// pre2 = hidden_scale * hidden + hidden_shift, hidden = relu(pre2); score = w2 . hidden.
// (b2 is left out: it shifts every score of a sample equally, which softmax ignores.)
struct ScoreNet {
  ScalarKind scalar;
  int64_t N, Hd, P;
  const void* projection;
  const void* face_term;
  const void* w2;
  const void* hidden_scale;
  const void* hidden_shift;
};

// Outputs of the score-net backward, given d loss / d score (N, P) in the accumulation dtype:
// grad_projection (N, P, Hd) in the inputs' dtype, cell-major like the projection, and
// per-sample sums over the cells (N, Hd) in the accumulation dtype for face_term, w2,
// hidden_scale and hidden_shift (the last two null without the BatchNorm).
// grad_projection_by_unit (Hd, N * P): the same values hidden-major, for the product that sums
// over the cells where oneDNN runs it (CPU kernels only; null to skip).
struct ScoreNetGrads {
  void* grad_projection;
  void* grad_projection_by_unit;
  void* grad_face_term;
  void* grad_w2;
  void* grad_hidden_scale;
  void* grad_hidden_shift;
};

// CPU kernels (global_local_attention_cpu.cpp), one copy per instruction set (cpu_isa.h);
// scores (N, P) are in the accumulation dtype. cells_to_rows_cpu copies a channels-first
// context (N, C, P) to rows (N * P, C). add_pooled_gradient_cpu writes d/d context, out =
// product + attention (x) grad_pooled (attention (N, P) in the accumulation dtype, grad_pooled
// (N, Dc)): channels-first, product (Dc, N, P) and out (N, Dc, P); channels-last, both
// (N, P, Dc), out may be product.
PYFACE_DECLARE_CPU_KERNELS(
  void scores_cpu(const ScoreNet& net, void* scores);
  void scores_backward_cpu(const ScoreNet& net, const void* grad_scores, const ScoreNetGrads& grads);
  void cells_to_rows_cpu(ScalarKind scalar, const void* cells, void* rows, int64_t N, int64_t C, int64_t P);
  void add_pooled_gradient_cpu(ScalarKind scalar, const void* product, const void* attention, const void* grad_pooled,
                               void* out, int64_t N, int64_t Dc, int64_t P, bool channels_last);)

#ifdef PYFACE_WITH_CUDA
// CUDA kernels (kernels/cuda/global_local_attention.cu), on the current stream.
void scores_cuda(const ScoreNet& net, void* scores, int device);
void scores_backward_cuda(const ScoreNet& net, const void* grad_scores, const ScoreNetGrads& grads, int device);
#endif

}  // namespace pyface::gla
