"""Spatial softmax attention pooling (docs/ops.md, softmax_pool): the public op, its custom-op
registrations (fake implementation and autograd) and the choice of backend.

Every backend keeps the attention in the accumulation dtype (float32, or float64 for
float64 input) for the backward; the attention handed to the user has the input's dtype.
The backward reads the values once and writes their gradient in the same pass that forms
the score gradient."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _backends
from pyface._autocast import follows_autocast
from pyface._dtypes import accumulation_dtype
from pyface.contracts import checks
from pyface.ops._registration import register_custom_ops
from pyface.reference.softmax_pool import softmax_pool as reference_softmax_pool

OP = "softmax_pool"


def as_kernel_layout(values: Tensor) -> Tensor:
    """values (N, C, P) dense channels-first or channels-last, as the kernels read them."""
    if values.is_contiguous() or values.transpose(1, 2).is_contiguous():
        return values
    return values.contiguous()


@follows_autocast
def softmax_pool(scores: Tensor, values: Tensor, *, return_attention: bool = False,
                 backend: str | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """a = softmax of scores over all positions of S; pooled (N, C) = sum_s a_s * values[:, :, s].

    scores (N, *S) or (N, 1, *S); values (N, C, *S) with one to three spatial dims. Returns
    pooled, or (pooled, a) with a shaped like scores. backend None picks the best built for
    the device; "cpu", "cuda", "triton" or "reference" forces one.
    """
    checks.check_softmax_pool(scores, values)
    chosen = _backends.resolve(OP, values.device, backend)
    if chosen == "reference":
        return reference_softmax_pool(scores, values, return_attention=return_attention)
    forward = _triton_forward if chosen == "triton" else torch.ops.pyface.softmax_pool_forward
    cells = as_kernel_layout(values.flatten(2))
    pooled, attention = forward(scores.reshape(scores.shape[0], cells.shape[2]), cells)  # not -1: N may be 0
    if return_attention:
        return pooled, attention.to(scores.dtype).view(scores.shape)
    return pooled


# --- Triton backend as a custom op (the kernels import triton only when first run) ---------


@torch.library.custom_op("pyface::softmax_pool_forward_triton", mutates_args=())
def _triton_forward(scores: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    from pyface.triton_kernels import softmax_pool as kernels

    attention = kernels.softmax(scores)
    return kernels.pool(values, attention), attention


@torch.library.custom_op("pyface::softmax_pool_backward_triton", mutates_args=())
def _triton_backward(
    grad_pooled: Tensor, grad_attention: Tensor | None, values: Tensor, attention: Tensor, values_grad: bool
) -> tuple[Tensor, Tensor]:
    from pyface.triton_kernels import softmax_pool as kernels

    grad_scores, grad_values = kernels.pool_backward(values, attention, grad_pooled, grad_attention, values_grad)
    return grad_scores, grad_values if values_grad else values.new_empty((0,))


# --- what every backend's ops share: shapes for tracing, and the backward -------------------


def _forward_fake(scores, values):
    attention = scores.new_empty(scores.shape, dtype=accumulation_dtype(values.dtype))
    return values.new_empty(values.shape[:2]), attention


def _backward_fake(grad_pooled, grad_attention, values, attention, values_grad):
    return torch.empty_like(attention), torch.empty_like(values) if values_grad else values.new_empty((0,))


def _make_setup_context(backward_op):
    def setup_context(ctx, inputs, output):
        scores, values = inputs
        _, attention = output
        ctx.backward_op, ctx.scores_dtype = backward_op, scores.dtype
        ctx.set_materialize_grads(False)  # an unused attention output costs no zero gradient
        ctx.save_for_backward(values, attention)

    return setup_context


def _backward(ctx, grad_pooled, grad_attention):
    values, attention = ctx.saved_tensors
    if grad_pooled is None and grad_attention is None:
        return None, None
    if grad_pooled is None:
        grad_pooled = values.new_zeros(values.shape[:2])
    needs_scores, needs_values = ctx.needs_input_grad
    grad_scores, grad_values = ctx.backward_op(grad_pooled, grad_attention, values, attention, needs_values)
    return grad_scores.to(ctx.scores_dtype) if needs_scores else None, grad_values if needs_values else None


def _decomposition(scores, values):
    pooled, attention = reference_softmax_pool(scores, values, return_attention=True)
    return pooled, attention.to(accumulation_dtype(values.dtype))


register_custom_ops(
    "softmax_pool",
    forward_fake=_forward_fake,
    backward_fake=_backward_fake,
    backward=_backward,
    make_setup_context=_make_setup_context,
    triton_backward=_triton_backward,
    decomposition=_decomposition,
)
