"""Triton kernels of spatial softmax attention pooling: a per-row softmax, the weighted sum
over positions, and its backward, which reads the values once for both gradients. Values
are (N, C, P) channels-first or channels-last; the kernels take their strides."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pyface._dtypes import accumulation_dtype

BLOCK_SOFTMAX = 256
BLOCK_C = 32
BLOCK_P = 64


@triton.jit
def _softmax_kernel(scores_ptr, attention_ptr, P, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64) * P
    offsets = tl.arange(0, BLOCK)
    ACC = attention_ptr.dtype.element_ty
    high = tl.full([BLOCK], float("-inf"), ACC)
    for start in range(0, P, BLOCK):
        s = tl.load(scores_ptr + row + start + offsets, mask=start + offsets < P, other=float("-inf")).to(ACC)
        high = tl.maximum(high, s)
    row_max = tl.max(high, axis=0)
    total = tl.zeros([BLOCK], ACC)
    for start in range(0, P, BLOCK):
        s = tl.load(scores_ptr + row + start + offsets, mask=start + offsets < P, other=float("-inf")).to(ACC)
        total += tl.exp(s - row_max)
    inv_total = 1.0 / tl.sum(total, axis=0)
    for start in range(0, P, BLOCK):
        in_row = start + offsets < P
        s = tl.load(scores_ptr + row + start + offsets, mask=in_row, other=float("-inf")).to(ACC)
        tl.store(attention_ptr + row + start + offsets, tl.exp(s - row_max) * inv_total, mask=in_row)


@triton.jit
def _pool_kernel(values_ptr, attention_ptr, pooled_ptr, C, P, stride_c, stride_p,
                 BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    c_blocks = tl.cdiv(C, BLOCK_C)
    n = tl.program_id(0) // c_blocks
    c = (tl.program_id(0) % c_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    sample = values_ptr + n.to(tl.int64) * C * P
    ACC = attention_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_C], ACC)
    for start in range(0, P, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        a = tl.load(attention_ptr + n * P + p, mask=p < P, other=0.0)
        mask = (c[:, None] < C) & (p[None, :] < P)
        v = tl.load(sample + c[:, None] * stride_c + p[None, :] * stride_p, mask=mask, other=0.0).to(ACC)
        acc += tl.sum(v * a[None, :], axis=1)
    tl.store(pooled_ptr + n * C + c, acc.to(pooled_ptr.dtype.element_ty), mask=c < C)


@triton.jit
def _pool_backward_kernel(values_ptr, attention_ptr, grad_pooled_ptr, partial_ptr, grad_values_ptr, C, P,
                          stride_c, stride_p, VALUES_GRAD: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """partial[n, block, p] = sum over this block's channels of grad_pooled * (values at p - values
    at the first position), and grad_values = grad_pooled * attention for those channels. The
    shift leaves the score gradient as it is (it keeps only how the sum varies over p) and
    keeps a large value common to a channel's positions out of the float partials."""
    c_blocks = tl.cdiv(C, BLOCK_C)
    n = tl.program_id(0) // c_blocks
    block = tl.program_id(0) % c_blocks
    c = block * BLOCK_C + tl.arange(0, BLOCK_C)
    offset = n.to(tl.int64) * C * P
    ACC = attention_ptr.dtype.element_ty
    gp = tl.load(grad_pooled_ptr + n * C + c, mask=c < C, other=0.0).to(ACC)
    first = tl.load(values_ptr + offset + c * stride_c, mask=c < C, other=0.0).to(ACC)
    for start in range(0, P, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        mask = (c[:, None] < C) & (p[None, :] < P)
        at = offset + c[:, None] * stride_c + p[None, :] * stride_p
        v = tl.load(values_ptr + at, mask=mask, other=0.0).to(ACC)
        shifted = v - first[:, None]
        tl.store(partial_ptr + (n * c_blocks + block) * P + p, tl.sum(shifted * gp[:, None], axis=0), mask=p < P)
        if VALUES_GRAD:
            a = tl.load(attention_ptr + n * P + p, mask=p < P, other=0.0)
            tl.store(grad_values_ptr + at, (gp[:, None] * a[None, :]).to(grad_values_ptr.dtype.element_ty), mask=mask)


def _strides(values: torch.Tensor) -> tuple[int, int]:
    """(stride_c, stride_p) of a dense (N, C, P) sample, channels-first or channels-last."""
    return values.stride(1), values.stride(2)


def softmax(scores: torch.Tensor) -> torch.Tensor:
    scores = scores.contiguous()
    attention = torch.empty(scores.shape, device=scores.device, dtype=accumulation_dtype(scores.dtype))
    if scores.numel():
        _softmax_kernel[(scores.shape[0],)](scores, attention, scores.shape[1], BLOCK=BLOCK_SOFTMAX)
    return attention


def pool(values: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    N, C, P = values.shape
    if N * C == 0 or P == 0:
        return values.new_zeros((N, C))
    pooled = values.new_empty((N, C))
    _pool_kernel[(N * triton.cdiv(C, BLOCK_C),)](
        values, attention, pooled, C, P, *_strides(values), BLOCK_C=BLOCK_C, BLOCK_P=BLOCK_P
    )
    return pooled


def pool_backward(values, attention, grad_pooled, grad_attention, values_grad: bool) -> tuple[Tensor, Tensor | None]:
    """-> grad_scores (N, P) in the accumulation dtype, grad_values in the values' layout (or None)."""
    N, C, P = values.shape
    grad_values = torch.empty_like(values) if values_grad else None
    if N * C * P == 0:  # no values to read: only the attention's own gradient reaches the scores
        if grad_values is not None:
            grad_values.zero_()
        g = torch.zeros_like(attention, dtype=torch.float64)
    else:
        c_blocks = triton.cdiv(C, BLOCK_C)
        partial = torch.empty((N, c_blocks, P), device=values.device, dtype=attention.dtype)
        grad_pooled = grad_pooled.to(values.dtype).contiguous()
        _pool_backward_kernel[(N * c_blocks,)](
            values, attention, grad_pooled, partial, partial if grad_values is None else grad_values, C, P,
            *_strides(values), VALUES_GRAD=values_grad, BLOCK_C=BLOCK_C, BLOCK_P=BLOCK_P,
        )
        g = partial.double().sum(dim=1)
    # d loss / d attention and the softmax backward, small (N, P) work, in torch and in float64:
    # g and sum(a * g) agree in most of their leading digits, and in float32 much of their
    # difference would be rounding
    if grad_attention is not None:
        g = g + grad_attention.double()
    a = attention.double()
    return (a * (g - (a * g).sum(dim=1, keepdim=True))).to(attention.dtype), grad_values
