"""Triton kernels of the Global-Local Attention score net, and the op's forward and backward
around them. As in the C++ backend, the first layer is two products run by torch (the face
half once per sample, the cell half one GEMM over all cells, never a concatenation) and the
kernels do the activations and the score on the cell-major projection, and their backward."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pyface._dtypes import accumulation_dtype
from pyface.triton_kernels import softmax_pool as pooling

BLOCK_H = 32
BLOCK_P = 64


@triton.jit
def _relu(x):
    """torch.relu: NaN passes through (tl.maximum would drop it)."""
    return tl.where(x <= 0.0, 0.0, x)


@triton.jit
def _scores_kernel(projection_ptr, face_term_ptr, w2_ptr, scale_ptr, shift_ptr, scores_ptr, Hd, P,
                   BATCHNORM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
    """Scores of BLOCK_P cells of one sample from the cell-major projection (N, P, Hd)."""
    p_blocks = tl.cdiv(P, BLOCK_P)
    n = tl.program_id(0) // p_blocks
    p = (tl.program_id(0) % p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    ACC = scores_ptr.dtype.element_ty
    score = tl.zeros([BLOCK_P], ACC)
    for start in range(0, Hd, BLOCK_H):
        h = start + tl.arange(0, BLOCK_H)
        in_h = h < Hd
        z = tl.load(projection_ptr + (n.to(tl.int64) * P + p[:, None]) * Hd + h[None, :],
                    mask=(p[:, None] < P) & in_h[None, :], other=0.0).to(ACC)
        f = tl.load(face_term_ptr + n * Hd + h, mask=in_h, other=0.0).to(ACC)
        hidden = _relu(z + f[None, :])
        if BATCHNORM:
            scale = tl.load(scale_ptr + h, mask=in_h, other=0.0).to(ACC)
            shift = tl.load(shift_ptr + h, mask=in_h, other=0.0).to(ACC)
            hidden = _relu(scale[None, :] * hidden + shift[None, :])
        w2 = tl.load(w2_ptr + h, mask=in_h, other=0.0).to(ACC)  # 0 past Hd: those units add nothing
        score += tl.sum(hidden * w2[None, :], axis=1)
    tl.store(scores_ptr + n * P + p, score, mask=p < P)


@triton.jit
def _scores_backward_kernel(projection_ptr, face_term_ptr, w2_ptr, scale_ptr, shift_ptr, grad_scores_ptr,
                            grad_projection_ptr, grad_face_term_ptr, grad_w2_ptr, grad_scale_ptr, grad_shift_ptr,
                            Hd, P, BATCHNORM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
    """d/d projection for BLOCK_H units of one sample over all its cells, and the sample's
    sums over the cells for the face term, w2, scale and shift of those units."""
    h_blocks = tl.cdiv(Hd, BLOCK_H)
    n = tl.program_id(0) // h_blocks
    h = (tl.program_id(0) % h_blocks) * BLOCK_H + tl.arange(0, BLOCK_H)
    in_h = h < Hd
    ACC = grad_scores_ptr.dtype.element_ty
    f = tl.load(face_term_ptr + n * Hd + h, mask=in_h, other=0.0).to(ACC)
    w2 = tl.load(w2_ptr + h, mask=in_h, other=0.0).to(ACC)
    if BATCHNORM:
        scale = tl.load(scale_ptr + h, mask=in_h, other=0.0).to(ACC)
        shift = tl.load(shift_ptr + h, mask=in_h, other=0.0).to(ACC)
    sum_pre = tl.zeros([BLOCK_H], ACC)
    sum_w2 = tl.zeros([BLOCK_H], ACC)
    sum_scale = tl.zeros([BLOCK_H], ACC)
    sum_shift = tl.zeros([BLOCK_H], ACC)
    for start in range(0, P, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        mask = (p[:, None] < P) & in_h[None, :]
        at = (n.to(tl.int64) * P + p[:, None]) * Hd + h[None, :]
        z = tl.load(projection_ptr + at, mask=mask, other=0.0)
        ds = tl.load(grad_scores_ptr + n * P + p, mask=p < P, other=0.0)[:, None]
        pre = z.to(ACC) + f[None, :]
        hidden1 = _relu(pre)
        # past P and Hd nothing flows: selected to 0, not multiplied by a 0 (a NaN or inf
        # weight times 0 would be NaN)
        grad_hidden1 = tl.where(mask, ds * w2[None, :], 0.0)
        if BATCHNORM:
            pre2 = scale[None, :] * hidden1 + shift[None, :]
            sum_w2 += tl.sum(tl.where(mask, ds * _relu(pre2), 0.0), axis=0)
            grad_pre2 = tl.where(pre2 <= 0, 0.0, grad_hidden1)
            sum_scale += tl.sum(tl.where(mask, grad_pre2 * hidden1, 0.0), axis=0)
            sum_shift += tl.sum(grad_pre2, axis=0)
            grad_hidden1 = tl.where(mask, grad_pre2 * scale[None, :], 0.0)
        else:
            sum_w2 += tl.sum(tl.where(mask, ds * hidden1, 0.0), axis=0)
        grad_pre = tl.where(pre <= 0, 0.0, grad_hidden1)
        sum_pre += tl.sum(grad_pre, axis=0)
        tl.store(grad_projection_ptr + at, grad_pre.to(grad_projection_ptr.dtype.element_ty), mask=mask)
    at = n * Hd + h
    tl.store(grad_face_term_ptr + at, sum_pre, mask=in_h)
    tl.store(grad_w2_ptr + at, sum_w2, mask=in_h)
    if BATCHNORM:
        tl.store(grad_scale_ptr + at, sum_scale, mask=in_h)
        tl.store(grad_shift_ptr + at, sum_shift, mask=in_h)


def _first_layer(face, w1):
    face_dim = face.shape[1]
    return w1[:, :face_dim], w1[:, face_dim:]


def _cell_rows(cells):
    """The cells as rows of an (N * P, Dc) matrix: a view when channels-last, else a copy."""
    N, Dc, P = cells.shape
    return cells.transpose(1, 2).reshape(N * P, Dc)


def _is_channels_last(cells):
    return not cells.is_contiguous() and cells.transpose(1, 2).is_contiguous()


def forward(face, cells, w1, b1, w2, b2, hidden_scale, hidden_shift) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """cells: the context as (N, Dc, P), channels-first or channels-last dense.
    -> pooled (N, Dc), attention (N, P) in the accumulation dtype, projection (N, P, Hd), face_term (N, Hd)."""
    N, _, P = cells.shape
    Hd = w1.shape[0]
    w1_face, w1_cell = _first_layer(face, w1)
    face_term = torch.addmm(b1, face, w1_face.t())
    projection = (_cell_rows(cells) @ w1_cell.t()).view(N, P, Hd)
    scores = torch.empty((N, P), device=face.device, dtype=accumulation_dtype(face.dtype))
    if scores.numel():
        batchnorm = hidden_scale is not None
        _scores_kernel[(N * triton.cdiv(P, BLOCK_P),)](
            projection, face_term, w2.contiguous(),
            hidden_scale.contiguous() if batchnorm else w2, hidden_shift.contiguous() if batchnorm else w2,
            scores, Hd, P, BATCHNORM=batchnorm, BLOCK_H=BLOCK_H, BLOCK_P=BLOCK_P,
        )
    attention = pooling.softmax(scores)
    return pooling.pool(cells, attention), attention, projection, face_term


def backward(grad_pooled, grad_attention, face, cells, w1, w2, hidden_scale, hidden_shift, attention, projection,
             face_term) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> grads of face, context (cells' layout), w1, b1, w2, hidden_scale, hidden_shift (empty without them)."""
    N, Dc, P = cells.shape
    Hd = projection.shape[2]
    acc = attention.dtype
    batchnorm = hidden_scale is not None
    grad_scores, grad_cells = pooling.pool_backward(cells, attention, grad_pooled, grad_attention, True)

    grad_projection = face.new_empty((N * P, Hd))
    sums = {name: torch.zeros((N, Hd), device=face.device, dtype=acc) for name in ("face_term", "w2", "scale", "shift")}
    if grad_projection.numel():
        _scores_backward_kernel[(N * triton.cdiv(Hd, BLOCK_H),)](
            projection, face_term.contiguous(), w2.contiguous(),
            hidden_scale.contiguous() if batchnorm else w2, hidden_shift.contiguous() if batchnorm else w2,
            grad_scores, grad_projection, sums["face_term"], sums["w2"], sums["scale"], sums["shift"],
            Hd, P, BATCHNORM=batchnorm, BLOCK_H=BLOCK_H, BLOCK_P=BLOCK_P,
        )
    grad_face_term = sums["face_term"].to(face.dtype)
    w1_face, w1_cell = _first_layer(face, w1)
    grad_w1 = torch.cat([grad_face_term.t() @ face, grad_projection.t() @ _cell_rows(cells)], dim=1)
    if _is_channels_last(cells):  # add the GEMM in place
        grad_cells.transpose(1, 2).view(N * P, Dc).addmm_(grad_projection, w1_cell)
    else:
        grad_cells += (grad_projection @ w1_cell).view(N, P, Dc).transpose(1, 2)
    total = {name: t.sum(0).to(face.dtype) for name, t in sums.items()}
    return (
        grad_face_term @ w1_face,
        grad_cells,
        grad_w1,
        total["face_term"],  # d/d b1
        total["w2"],
        total["scale"] if batchnorm else face.new_empty((0,)),
        total["shift"] if batchnorm else face.new_empty((0,)),  # a second empty: returns must not alias
    )
