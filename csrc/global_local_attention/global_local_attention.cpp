// Host side of GLAMOR-Net's Global-Local Attention. The first layer of the score net is
// split at column Df: the face half is one (N, Df) x (Df, Hd) product for the batch, the
// cell half one product over all N * P cells, so the (N, P, Df + Dc) concatenation is
// never built. The score-net kernels, the softmax and the pooling run on the projection.
// The large products go through mm_nt (matmul.h), oneDNN's on CPU; bfloat16 and float16
// products a CPU has no instructions for run in float32 (product_operand, matmul.h).
// Argument errors a user can make are reported in Python
// (pyface/ops/global_local_attention.py); the checks here guard the op.
#include "global_local_attention/global_local_attention.h"

#include <ATen/ops/addcmul.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "cpu_isa.h"
#include "huge_pages.h"
#include "matmul.h"
#include "register.h"
#include "softmax_pool/softmax_pool_ops.h"
#include "tensor_kind.h"

namespace pyface::gla {
namespace {

constexpr const char* kOp = "global_local_attention";

struct Layer1 {
  int64_t N, Df, Dc, Hd, P;
  at::Tensor w1_face, w1_cell;  // column blocks of w1: (Hd, Df) and (Hd, Dc)
};

Layer1 split_layer1(const at::Tensor& face, const at::Tensor& cells, const at::Tensor& w1) {
  TORCH_CHECK_VALUE(face.dim() == 2 && cells.dim() == 3 && face.size(0) == cells.size(0),
                    kOp, ": face (N, Df) and context (N, Dc, P) must agree");
  TORCH_CHECK_VALUE(w1.dim() == 2 && w1.size(1) == face.size(1) + cells.size(1), kOp, ": w1 must be (Hd, Df + Dc)");
  Layer1 l{face.size(0), face.size(1), cells.size(1), w1.size(0), cells.size(2), {}, {}};
  l.w1_face = w1.narrow(1, 0, l.Df);
  l.w1_cell = w1.narrow(1, l.Df, l.Dc);
  return l;
}

ScoreNet score_net(const Layer1& l, const at::Tensor& projection, const at::Tensor& face_term, const at::Tensor& w2,
                   const at::Tensor& hidden_scale, const at::Tensor& hidden_shift) {
  const bool bn = hidden_scale.defined();
  return ScoreNet{scalar_kind(projection, kOp, "face"), l.N, l.Hd, l.P, projection.const_data_ptr(),
                  face_term.const_data_ptr(), w2.const_data_ptr(), bn ? hidden_scale.const_data_ptr() : nullptr,
                  bn ? hidden_shift.const_data_ptr() : nullptr};
}

// The cells as the rows of an (N * P, Dc) matrix, for the forward's product over all cells:
// a view of a channels-last context, a transposed copy of a channels-first one (in float32
// where the product runs in float32: one copy instead of a transposed one and a wider one).
at::Tensor cell_rows(const spool::PreparedValues& cells, const Layer1& l) {
  if (cells.v.channels_last || !cells.tensor.is_cpu()) return cells.tensor.transpose(1, 2).reshape({l.N * l.P, l.Dc});
  if (widened_for_product(cells.tensor))
    return cells.tensor.transpose(1, 2).to(at::kFloat, false, false, at::MemoryFormat::Contiguous).view({l.N * l.P, l.Dc});
  at::Tensor rows = on_huge_pages(at::empty({l.N * l.P, l.Dc}, cells.tensor.options()));
  PYFACE_CPU_CALL(cells_to_rows_cpu)(cells.v.scalar, cells.tensor.const_data_ptr(), rows.data_ptr(), l.N, l.Dc, l.P);
  return rows;
}

// The cells as the columns of a (Dc, N * P) matrix, for the backward's product over all
// cells: the transposed rows of a channels-last context (mm_nt reads them as they are), a
// copy of runs of P values of a channels-first one.
at::Tensor cell_columns(const spool::PreparedValues& cells, const Layer1& l) {
  if (cells.v.channels_last) return cell_rows(cells, l).t();
  return cells.tensor.permute({1, 0, 2}).reshape({l.Dc, l.N * l.P});
}

at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// The score-net kernels of each device, as the host functions below call them.
template <c10::DeviceType>
struct Kernels;

template <>
struct Kernels<c10::DeviceType::CPU> {
  static void scores(const ScoreNet& net, const at::Tensor&, void* scores) {
    PYFACE_CPU_CALL(scores_cpu)(net, scores);
  }
  static void scores_backward(const ScoreNet& net, const at::Tensor&, const void* grad_scores,
                              const ScoreNetGrads& grads) {
    PYFACE_CPU_CALL(scores_backward_cpu)(net, grad_scores, grads);
  }
  // product + attention (x) grad_pooled, in the context's layout (add_pooled_gradient_cpu)
  static at::Tensor cells_gradient(const at::Tensor& product, const at::Tensor& attention,
                                   const at::Tensor& grad_pooled, const spool::PreparedValues& cells, const Layer1& l) {
    const bool channels_last = cells.v.channels_last;
    at::Tensor out = channels_last ? product : on_huge_pages(at::empty({l.N, l.Dc, l.P}, product.options()));
    const at::Tensor a = attention.contiguous(), g = grad_pooled.to(product.scalar_type()).contiguous();
    PYFACE_CPU_CALL(add_pooled_gradient_cpu)(cells.v.scalar, product.const_data_ptr(), a.const_data_ptr(),
                                             g.const_data_ptr(), out.data_ptr(), l.N, l.Dc, l.P, channels_last);
    return channels_last ? out.view({l.N, l.P, l.Dc}).transpose(1, 2) : out;
  }
};

#ifdef PYFACE_WITH_CUDA
template <>
struct Kernels<c10::DeviceType::CUDA> {
  static void scores(const ScoreNet& net, const at::Tensor& face, void* scores) {
    scores_cuda(net, scores, face.get_device());
  }
  static void scores_backward(const ScoreNet& net, const at::Tensor& face, const void* grad_scores,
                              const ScoreNetGrads& grads) {
    scores_backward_cuda(net, grad_scores, grads, face.get_device());
  }
  static at::Tensor cells_gradient(const at::Tensor& product, const at::Tensor& attention,
                                   const at::Tensor& grad_pooled, const spool::PreparedValues& cells, const Layer1& l) {
    const at::Tensor attention_s = attention.unsqueeze(1), grad_pooled_s = grad_pooled.unsqueeze(2);
    if (cells.v.channels_last)
      return product.view({l.N, l.P, l.Dc}).transpose(1, 2).addcmul_(attention_s, grad_pooled_s);
    at::Tensor out = at::empty({l.N, l.Dc, l.P}, product.options());
    return at::addcmul_out(out, product.view({l.Dc, l.N, l.P}).permute({1, 0, 2}), attention_s, grad_pooled_s);
  }
};
#endif

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& face, const at::Tensor& context, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const std::optional<at::Tensor>& hidden_scale,
    const std::optional<at::Tensor>& hidden_shift) {
  (void)b2;  // a shift of every score of a sample: the softmax, hence every output, ignores it
  TORCH_CHECK_VALUE(hidden_scale.has_value() == hidden_shift.has_value(), kOp,
                    ": hidden_scale and hidden_shift go together");
  const spool::PreparedValues cells = spool::prepare_values(context, kOp);
  const Layer1 l = split_layer1(face, cells.tensor, w1);
  // face_term (N, Hd). The face-half products are small, and at::mm (MKL) runs them faster
  // than oneDNN, whose per-call setup dominates at these sizes.
  const at::Tensor face_term = at::addmm(product_operand(b1), product_operand(face), product_operand(l.w1_face).t())
                                   .to(face.scalar_type());
  const at::Tensor projection =
      mm_nt(cell_rows(cells, l), product_operand(l.w1_cell)).to(face.scalar_type()).view({l.N, l.P, l.Hd});
  const at::Tensor w2c = w2.contiguous(), scale = contiguous_or_undefined(hidden_scale),
                   shift = contiguous_or_undefined(hidden_shift);
  at::Tensor scores = at::empty({l.N, l.P}, face.options().dtype(accumulate_type(face.scalar_type())));
  if (scores.numel() > 0) {
    const ScoreNet net = score_net(l, projection, face_term, w2c, scale, shift);
    Kernels<kDevice>::scores(net, face, scores.data_ptr());
  }
  at::Tensor attention = spool::softmax<kDevice>(scores);
  at::Tensor pooled = spool::pool<kDevice>(cells, attention);
  return {pooled, attention, projection, face_term};
}

template <c10::DeviceType kDevice>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& grad_pooled, const std::optional<at::Tensor>& grad_attention, const at::Tensor& face,
    const at::Tensor& context, const at::Tensor& w1, const at::Tensor& w2, const std::optional<at::Tensor>& hidden_scale,
    const std::optional<at::Tensor>& hidden_shift, const at::Tensor& attention, const at::Tensor& projection,
    const at::Tensor& face_term) {
  const spool::PreparedValues cells = spool::prepare_values(context, kOp);
  const Layer1 l = split_layer1(face, cells.tensor, w1);
  TORCH_CHECK_VALUE(projection.is_contiguous() && projection.dim() == 3 && projection.size(0) == l.N &&
                        projection.size(1) == l.P && projection.size(2) == l.Hd,
                    kOp, ": projection must be the (N, P, Hd) the forward returned");
  const bool bn = hidden_scale.has_value();
  const auto options = face.options();
  const auto acc_options = options.dtype(accumulate_type(face.scalar_type()));

  // the pooling half: d/d score (its part of d/d context is added below)
  const at::Tensor grad_scores = std::get<0>(spool::pool_backward<kDevice>(cells, attention, grad_pooled, grad_attention, false));

  // the score net: d/d projection (cell-major, and hidden-major as well where oneDNN runs the
  // product over the cells: the CPU kernel writes that copy while each sample is in cache)
  // and per-sample sums for the small parameters
  at::Tensor grad_projection = at::empty({l.N * l.P, l.Hd}, options);
  const bool by_unit_copy = mm_nt_uses_onednn(face);
  at::Tensor grad_projection_by_unit = by_unit_copy ? at::empty({l.Hd, l.N * l.P}, options) : grad_projection.t();
  at::Tensor grad_face_term = at::empty({l.N, l.Hd}, acc_options), grad_w2 = at::empty({l.N, l.Hd}, acc_options);
  at::Tensor grad_scale = bn ? at::empty({l.N, l.Hd}, acc_options) : at::empty({0}, options);
  at::Tensor grad_shift = bn ? at::empty({l.N, l.Hd}, acc_options) : at::empty({0}, options);
  if (grad_projection.numel() > 0) {
    const at::Tensor w2c = w2.contiguous(), scale = contiguous_or_undefined(hidden_scale),
                     shift = contiguous_or_undefined(hidden_shift), face_term_c = face_term.contiguous();
    const ScoreNet net = score_net(l, projection, face_term_c, w2c, scale, shift);
    const ScoreNetGrads grads{grad_projection.data_ptr(), by_unit_copy ? grad_projection_by_unit.data_ptr() : nullptr,
                              grad_face_term.data_ptr(), grad_w2.data_ptr(), bn ? grad_scale.data_ptr() : nullptr,
                              bn ? grad_shift.data_ptr() : nullptr};
    Kernels<kDevice>::scores_backward(net, face, grad_scores.const_data_ptr(), grads);
  } else {
    grad_face_term.zero_();
    grad_w2.zero_();
    if (bn) {
      grad_scale.zero_();
      grad_shift.zero_();
    }
  }

  // the first layer, through the same two products as the forward
  const auto dtype = face.scalar_type();
  const at::Tensor grad_face_term_s = product_operand(grad_face_term.to(dtype));
  const at::Tensor grad_face = at::mm(grad_face_term_s, product_operand(l.w1_face)).to(dtype);
  const at::Tensor grad_w1_face = at::mm(grad_face_term_s.t(), product_operand(face)).to(dtype);
  const at::Tensor grad_w1_cell = mm_nt(grad_projection_by_unit, cell_columns(cells, l));
  grad_projection_by_unit.reset();  // buffers are let go as soon as they are used: peak memory
  // d/d context: the first layer's product plus the pooled sum's attention (x) grad_pooled,
  // the product laid out as the context is ((N * P, Dc) rows for channels-last, (Dc, N * P)
  // otherwise) so that the sum runs over contiguous rows
  at::Tensor product = cells.v.channels_last ? mm_nt(grad_projection, l.w1_cell.t())
                                             : mm_nt(l.w1_cell.t(), grad_projection);
  grad_projection.reset();
  at::Tensor grad_cells = Kernels<kDevice>::cells_gradient(product, attention, grad_pooled, cells, l);
  return {grad_face,
          grad_cells,
          at::cat({grad_w1_face, grad_w1_cell}, 1),
          grad_face_term.sum(0).to(dtype),
          grad_w2.sum(0).to(dtype),
          bn ? grad_scale.sum(0).to(dtype) : grad_scale,
          bn ? grad_shift.sum(0).to(dtype) : grad_shift};
}

}  // namespace

PYFACE_REGISTER_OP(
    global_local_attention,
    "(Tensor face, Tensor context, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor? hidden_scale, "
    "Tensor? hidden_shift) -> (Tensor, Tensor, Tensor, Tensor)",
    "(Tensor grad_pooled, Tensor? grad_attention, Tensor face, Tensor context, Tensor w1, Tensor w2, "
    "Tensor? hidden_scale, Tensor? hidden_shift, Tensor attention, Tensor projection, "
    "Tensor face_term) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)")

}  // namespace pyface::gla
