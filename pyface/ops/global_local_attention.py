"""GLAMOR-Net's Global-Local Attention (docs/ops.md, global_local_attention): the public op, its custom-op
registrations (fake implementation and autograd) and the choice of backend.

No backend builds the (N, P, Df + Dc) concatenation the reference builds: the first layer
of the score net is split at column Df into a face product (once per sample) and a cell
product (one GEMM over all N * P cells), and fused kernels do the activations, the score, the softmax
and the pooling. The forward keeps the cell projection (N, P, Hd) and the face term (N, Hd)
for the backward. b2
shifts every score of a sample equally, so no output depends on it and its gradient is
exactly zero."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _backends
from pyface._autocast import follows_autocast
from pyface._dtypes import accumulation_dtype
from pyface.contracts import checks
from pyface.ops._registration import register_custom_ops
from pyface.ops.softmax_pool import as_kernel_layout
from pyface.reference.global_local_attention import global_local_attention as reference_global_local_attention

OP = "global_local_attention"


@follows_autocast
def global_local_attention(
    face: Tensor,
    context: Tensor,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    *,
    hidden_scale: Tensor | None = None,
    hidden_shift: Tensor | None = None,
    return_attention: bool = False,
    backend: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Context pooled under the face's guidance.

    face (N, Df); context (N, Dc, *S) with one to three spatial dims; w1 (Hd, Df + Dc) acting
    on [face ; cell]; b1, w2 (Hd,); b2 scalar or (1,); hidden_scale/hidden_shift (Hd,), an
    eval-mode BatchNorm folded in. h = relu(w1 [face ; cell] + b1), then
    relu(hidden_scale * h + hidden_shift) when given; score = w2 . h + b2; a = softmax over
    the cells; returns pooled (N, Dc) = sum a * cell, or (pooled, a) with a (N, *S).
    """
    checks.check_global_local_attention(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    chosen = _backends.resolve(OP, context.device, backend)
    if chosen == "reference":
        return reference_global_local_attention(
            face, context, w1, b1, w2, b2,
            hidden_scale=hidden_scale, hidden_shift=hidden_shift, return_attention=return_attention,
        )
    forward = _triton_forward if chosen == "triton" else torch.ops.pyface.global_local_attention_forward
    cells = as_kernel_layout(context.flatten(2))
    # The kernels skip b2, which moves every score alike (the softmax ignores it); a NaN or inf
    # b2 still makes the reference's scores, so everything after them, NaN: b2 - b2 (0, or
    # NaN) added to w2 makes the scores NaN just there
    w2 = w2 + (b2 - b2).reshape(())
    pooled, attention, *_ = forward(face, cells, w1, b1, w2, b2, hidden_scale, hidden_shift)
    if return_attention:
        return pooled, attention.to(face.dtype).view(context.shape[0], *context.shape[2:])
    return pooled


# --- Triton backend as a custom op (the kernels import triton only when first run) ---------


@torch.library.custom_op("pyface::global_local_attention_forward_triton", mutates_args=())
def _triton_forward(
    face: Tensor, context: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
    hidden_scale: Tensor | None, hidden_shift: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from pyface.triton_kernels import global_local_attention as kernels

    return kernels.forward(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)


@torch.library.custom_op("pyface::global_local_attention_backward_triton", mutates_args=())
def _triton_backward(
    grad_pooled: Tensor, grad_attention: Tensor | None, face: Tensor, context: Tensor, w1: Tensor, w2: Tensor,
    hidden_scale: Tensor | None, hidden_shift: Tensor | None, attention: Tensor, projection: Tensor,
    face_term: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from pyface.triton_kernels import global_local_attention as kernels

    return kernels.backward(grad_pooled, grad_attention, face, context, w1, w2, hidden_scale, hidden_shift,
                            attention, projection, face_term)


# --- what every backend's ops share: shapes for tracing, and the backward -------------------


def _forward_fake(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift):
    N, Dc, P = context.shape
    Hd = w1.shape[0]
    attention = face.new_empty((N, P), dtype=accumulation_dtype(face.dtype))
    return face.new_empty((N, Dc)), attention, face.new_empty((N, P, Hd)), face.new_empty((N, Hd))


def _backward_fake(grad_pooled, grad_attention, face, context, w1, w2, hidden_scale, hidden_shift, attention,
                   projection, face_term):
    Hd = w1.shape[0]
    folded = face.new_empty((Hd,) if hidden_scale is not None else (0,))
    return (face.new_empty(face.shape), torch.empty_like(context), w1.new_empty(w1.shape), face.new_empty((Hd,)),
            face.new_empty((Hd,)), folded, torch.empty_like(folded))


def _make_setup_context(backward_op):
    def setup_context(ctx, inputs, output):
        face, context, w1, b1, w2, b2, hidden_scale, hidden_shift = inputs
        _, attention, projection, face_term = output
        ctx.mark_non_differentiable(projection, face_term)
        ctx.set_materialize_grads(False)  # no zero gradients for the outputs kept for backward
        ctx.backward_op, ctx.b2_like = backward_op, (b2.shape, b2.dtype, b2.device)
        ctx.save_for_backward(face, context, w1, w2, hidden_scale, hidden_shift, attention, projection, face_term)

    return setup_context


def _backward(ctx, grad_pooled, grad_attention, _projection, _face_term):
    face, context, w1, w2, hidden_scale, hidden_shift, attention, projection, face_term = ctx.saved_tensors
    if grad_pooled is None and grad_attention is None:  # neither output took part in the loss
        return (None,) * 8
    if grad_pooled is None:
        grad_pooled = face.new_zeros((face.shape[0], context.shape[1]))
    grads = ctx.backward_op(grad_pooled, grad_attention, face, context, w1, w2, hidden_scale, hidden_shift,
                            attention, projection, face_term)
    grad_face, grad_context, grad_w1, grad_b1, grad_w2, grad_scale, grad_shift = grads
    needs = ctx.needs_input_grad
    b2_shape, b2_dtype, b2_device = ctx.b2_like
    grad_b2 = torch.zeros(b2_shape, dtype=b2_dtype, device=b2_device) if needs[5] else None  # softmax ignores it
    return (
        grad_face if needs[0] else None,
        grad_context if needs[1] else None,
        grad_w1 if needs[2] else None,
        grad_b1 if needs[3] else None,
        grad_w2 if needs[4] else None,
        grad_b2,
        grad_scale if needs[6] else None,
        grad_shift if needs[7] else None,
    )


register_custom_ops(
    "global_local_attention",
    forward_fake=_forward_fake,
    backward_fake=_backward_fake,
    backward=_backward,
    make_setup_context=_make_setup_context,
    triton_backward=_triton_backward,
)
