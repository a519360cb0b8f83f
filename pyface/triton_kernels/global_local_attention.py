"""Triton kernels of the Global-Local Attention score net, and the op's forward and backward
around them. As in the C++ backend, the first layer is two products (the face half once per
sample, the cell half per cell, never a concatenation), run by torch; the kernels do the
activations and the score, and their backward."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyface.triton_kernels import softmax_pool as pooling

BLOCK_H = 32
BLOCK_P = 64


@triton.jit
def _scores_kernel(projection_ptr, face_term_ptr, w2_ptr, scale_ptr, shift_ptr, scores_ptr, Hd, P,
                   BATCHNORM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
    p_blocks = tl.cdiv(P, BLOCK_P)
    n = tl.program_id(0) // p_blocks
    p = (tl.program_id(0) % p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    ACC = scores_ptr.dtype.element_ty
    score = tl.zeros([BLOCK_P], ACC)
    for start in range(0, Hd, BLOCK_H):
        h = start + tl.arange(0, BLOCK_H)
        in_h = h < Hd
        z = tl.load(projection_ptr + (n.to(tl.int64) * Hd + h[:, None]) * P + p[None, :],
                    mask=in_h[:, None] & (p[None, :] < P), other=0.0).to(ACC)
        f = tl.load(face_term_ptr + n * Hd + h, mask=in_h, other=0.0).to(ACC)
        hidden = tl.maximum(z + f[:, None], 0.0)
        if BATCHNORM:
            scale = tl.load(scale_ptr + h, mask=in_h, other=0.0).to(ACC)
            shift = tl.load(shift_ptr + h, mask=in_h, other=0.0).to(ACC)
            hidden = tl.maximum(scale[:, None] * hidden + shift[:, None], 0.0)
        w2 = tl.load(w2_ptr + h, mask=in_h, other=0.0).to(ACC)  # 0 past Hd: those rows add nothing
        score += tl.sum(w2[:, None] * hidden, axis=0)
    tl.store(scores_ptr + n * P + p, score, mask=p < P)


@triton.jit
def _scores_backward_kernel(projection_ptr, face_term_ptr, w2_ptr, scale_ptr, shift_ptr, grad_scores_ptr,
                            grad_projection_ptr, grad_face_term_ptr, grad_w2_ptr, grad_scale_ptr, grad_shift_ptr,
                            N, Hd, P, BATCHNORM: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_P: tl.constexpr):
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
        mask = in_h[:, None] & (p[None, :] < P)
        z = tl.load(projection_ptr + (n.to(tl.int64) * Hd + h[:, None]) * P + p[None, :], mask=mask, other=0.0)
        ds = tl.load(grad_scores_ptr + n * P + p, mask=p < P, other=0.0)  # 0 past P: nothing flows from there
        pre = z.to(ACC) + f[:, None]
        hidden1 = tl.maximum(pre, 0.0)
        grad_hidden1 = ds[None, :] * w2[:, None]
        if BATCHNORM:
            pre2 = scale[:, None] * hidden1 + shift[:, None]
            sum_w2 += tl.sum(ds[None, :] * tl.maximum(pre2, 0.0), axis=1)
            grad_pre2 = tl.where(pre2 > 0, grad_hidden1, 0.0)
            sum_scale += tl.sum(grad_pre2 * hidden1, axis=1)
            sum_shift += tl.sum(grad_pre2, axis=1)
            grad_hidden1 = grad_pre2 * scale[:, None]
        else:
            sum_w2 += tl.sum(ds[None, :] * hidden1, axis=1)
        grad_pre = tl.where(pre > 0, grad_hidden1, 0.0)
        sum_pre += tl.sum(grad_pre, axis=1)
        # hidden-major (Hd, N, P), so the weight gradient is a single product
        tl.store(grad_projection_ptr + (h[:, None].to(tl.int64) * N + n) * P + p[None, :],
                 grad_pre.to(grad_projection_ptr.dtype.element_ty), mask=mask)
    at = n * Hd + h
    tl.store(grad_face_term_ptr + at, sum_pre, mask=in_h)
    tl.store(grad_w2_ptr + at, sum_w2, mask=in_h)
    if BATCHNORM:
        tl.store(grad_scale_ptr + at, sum_scale, mask=in_h)
        tl.store(grad_shift_ptr + at, sum_shift, mask=in_h)


def _first_layer(face, w1):
    face_dim = face.shape[1]
    return w1[:, :face_dim], w1[:, face_dim:]


def forward(face, cells, w1, b1, w2, b2, hidden_scale, hidden_shift):
    """cells: the context as (N, Dc, P), channels-first or channels-last dense.
    -> pooled (N, Dc), attention (N, P) in the accumulation dtype, projection (N, Hd, P), face_term (N, Hd)."""
    N, _, P = cells.shape
    w1_face, w1_cell = _first_layer(face, w1)
    face_term = torch.addmm(b1, face, w1_face.t())
    projection = torch.matmul(w1_cell, cells).contiguous()
    Hd = projection.shape[1]
    scores = torch.empty((N, P), device=face.device, dtype=pooling._acc(face.dtype))
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
             face_term):
    """-> grads of face, context (cells' layout), w1, b1, w2, hidden_scale, hidden_shift (empty without them)."""
    N, Dc, P = cells.shape
    Hd = projection.shape[1]
    acc = attention.dtype
    batchnorm = hidden_scale is not None
    grad_scores, grad_cells = pooling.pool_backward(cells, attention, grad_pooled, grad_attention, True)

    grad_projection = face.new_empty((Hd, N, P))
    sums = {name: torch.zeros((N, Hd), device=face.device, dtype=acc) for name in ("face_term", "w2", "scale", "shift")}
    if grad_projection.numel():
        _scores_backward_kernel[(N * triton.cdiv(Hd, BLOCK_H),)](
            projection, face_term.contiguous(), w2.contiguous(),
            hidden_scale.contiguous() if batchnorm else w2, hidden_shift.contiguous() if batchnorm else w2,
            grad_scores, grad_projection, sums["face_term"], sums["w2"], sums["scale"], sums["shift"],
            N, Hd, P, BATCHNORM=batchnorm, BLOCK_H=BLOCK_H, BLOCK_P=BLOCK_P,
        )
    grad_face_term = sums["face_term"].to(face.dtype)
    w1_face, w1_cell = _first_layer(face, w1)
    grad_cells.baddbmm_(w1_cell.t().expand(N, Dc, Hd), grad_projection.permute(1, 0, 2))
    cell_rows = cells.transpose(1, 2).reshape(N * P, Dc)  # a view when channels-last
    grad_w1 = torch.cat([grad_face_term.t() @ face, grad_projection.view(Hd, N * P) @ cell_rows], dim=1)
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
