"""Triton kernels of keypoint-driven warping. Forward: a program per (sample, block of output
positions) forms the motion weights (the mask or its softmax) and the deformation from the
keypoints on the spot and samples every channel there. Backward: the same programs sum
d/d deformation over the channels, scatter d/d feature (float atomics, or int64 fixed
point when deterministic), write d/d mask, and leave per-keypoint sums that a short torch
tail adds in a fixed order."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from pyface._dtypes import accumulation_dtype
from pyface.triton_kernels._grid import grid_point, volume
from pyface.triton_kernels._warp_sampling import (
    PARTIAL_WIDTH,
    ScatterSums,
    backward_channels,
    gather_channels,
    keypoint_grads,
    keypoint_motion,
    stencil,
    store_keypoint_sums,
)

BLOCK = 128


@triton.jit
def _motion_weight(mask_ptr, slot, S, at, inside, high, inv_total, LOGITS: tl.constexpr):
    value = tl.load(mask_ptr + slot * S + at, mask=inside, other=0.0).to(tl.float32)
    if LOGITS:
        value = tl.exp(value - high) * inv_total
    return value


@triton.jit
def _forward_kernel(feature_ptr, source_ptr, driving_ptr, jac_ptr, mask_ptr, out_ptr, deformation_ptr, weights_ptr,
                    C, K, D_in, H_in, W_in, D_out, H_out, W_out,
                    DIMS: tl.constexpr, HAS_JAC: tl.constexpr, LOGITS: tl.constexpr, ALIGN: tl.constexpr,
                    BORDER: tl.constexpr, STORE_WEIGHTS: tl.constexpr, STORE_DEFORMATION: tl.constexpr,
                    BLOCK: tl.constexpr):
    n = tl.program_id(1)
    S = D_out * H_out * W_out
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = at < S
    x, y, z = grid_point(at, D_out, H_out, W_out)
    mask = mask_ptr + n.to(tl.int64) * (K + 1) * S
    weights = weights_ptr + n.to(tl.int64) * (K + 1) * S
    high = tl.zeros([BLOCK], tl.float32)
    inv_total = tl.zeros([BLOCK], tl.float32)
    if LOGITS:
        high = tl.load(mask + at, mask=inside, other=0.0).to(tl.float32)
        for k in range(1, K + 1):
            high = tl.maximum(high, tl.load(mask + k * S + at, mask=inside, other=0.0).to(tl.float32))
        total = tl.zeros([BLOCK], tl.float32)
        for k in range(0, K + 1):
            total += tl.exp(tl.load(mask + k * S + at, mask=inside, other=0.0).to(tl.float32) - high)
        inv_total = 1.0 / total
    m = _motion_weight(mask, 0, S, at, inside, high, inv_total, LOGITS)
    if STORE_WEIGHTS:
        tl.store(weights + at, m, mask=inside)
    px = m * x
    py = m * y
    pz = m * z
    for k in range(0, K):
        m = _motion_weight(mask, k + 1, S, at, inside, high, inv_total, LOGITS)
        if STORE_WEIGHTS:
            tl.store(weights + (k + 1) * S + at, m, mask=inside)
        mx, my, mz, _, _, _ = keypoint_motion(source_ptr, driving_ptr, jac_ptr, n * K + k, x, y, z, DIMS, HAS_JAC)
        px += m * mx
        py += m * my
        pz += m * mz
    if STORE_DEFORMATION:
        deformation = deformation_ptr + (n.to(tl.int64) * S + at) * DIMS
        tl.store(deformation, px, mask=inside)
        tl.store(deformation + 1, py, mask=inside)
        if DIMS == 3:
            tl.store(deformation + 2, pz, mask=inside)
    x0, y0, z0, fx, fy, fz, _, _, _ = stencil(px, py, pz, W_in, H_in, D_in, DIMS, ALIGN, BORDER)
    gather_channels(feature_ptr, out_ptr + (n * C).to(tl.int64) * S + at, S, n, C, inside, x0, y0, z0, fx, fy, fz,
                    W_in, H_in, D_in, DIMS, BLOCK)


@triton.jit
def _backward_kernel(feature_ptr, source_ptr, driving_ptr, jac_ptr, deformation_ptr, weights_ptr, grad_out_ptr,
                     grad_def_ptr, grad_mask_ptr, sums_ptr, scales_ptr, partials_ptr,
                     C, K, D_in, H_in, W_in, D_out, H_out, W_out,
                     DIMS: tl.constexpr, HAS_JAC: tl.constexpr, LOGITS: tl.constexpr, ALIGN: tl.constexpr,
                     BORDER: tl.constexpr, HAS_GRAD_DEF: tl.constexpr, FEATURE_GRAD: tl.constexpr,
                     DETERMINISTIC: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(1)
    block = tl.program_id(0)
    S = D_out * H_out * W_out
    at = block * BLOCK + tl.arange(0, BLOCK)
    inside = at < S
    deformation = deformation_ptr + (n.to(tl.int64) * S + at) * DIMS
    px = tl.load(deformation, mask=inside, other=0.0)
    py = tl.load(deformation + 1, mask=inside, other=0.0)
    if DIMS == 3:
        pz = tl.load(deformation + 2, mask=inside, other=0.0)
    else:
        pz = tl.zeros([BLOCK], tl.float32)
    x0, y0, z0, fx, fy, fz, factor_x, factor_y, factor_z = stencil(px, py, pz, W_in, H_in, D_in, DIMS, ALIGN, BORDER)
    gx, gy, gz = backward_channels(feature_ptr, grad_out_ptr + (n * C).to(tl.int64) * S + at, S, sums_ptr, scales_ptr,
                                   n, C, inside, x0, y0, z0, fx, fy, fz, W_in, H_in, D_in, DIMS, FEATURE_GRAD,
                                   DETERMINISTIC, BLOCK)
    gx *= factor_x
    gy *= factor_y
    gz *= factor_z
    if HAS_GRAD_DEF:
        grad_def = grad_def_ptr + (n.to(tl.int64) * S + at) * DIMS
        gx += tl.load(grad_def, mask=inside, other=0.0)
        gy += tl.load(grad_def + 1, mask=inside, other=0.0)
        if DIMS == 3:
            gz += tl.load(grad_def + 2, mask=inside, other=0.0)
    # d/d m_k = g . T_k(z); through the softmax m_k (d/d m_k - sum_j m_j d/d m_j). Per keypoint
    # this block's sums of m_k g and m_k g (z - kp_driving_k)^T go to the partials.
    x, y, z = grid_point(at, D_out, H_out, W_out)
    weights = weights_ptr + n.to(tl.int64) * (K + 1) * S
    grad_mask = grad_mask_ptr + n.to(tl.int64) * (K + 1) * S
    m0 = tl.load(weights + at, mask=inside, other=0.0)
    dm0 = gx * x + gy * y + gz * z
    mean = m0 * dm0
    partials = partials_ptr + ((n * tl.num_programs(0) + block) * K).to(tl.int64) * 12
    for k in range(0, K):
        mk = tl.load(weights + (k + 1) * S + at, mask=inside, other=0.0)
        mx, my, mz, rx, ry, rz = keypoint_motion(source_ptr, driving_ptr, jac_ptr, n * K + k, x, y, z, DIMS, HAS_JAC)
        dm = gx * mx + gy * my + gz * mz
        mean += mk * dm
        if not LOGITS:
            tl.store(grad_mask + (k + 1) * S + at, dm.to(grad_mask_ptr.dtype.element_ty), mask=inside)
        store_keypoint_sums(partials + k * 12, inside, mk * gx, mk * gy, mk * gz, rx, ry, rz)
    if LOGITS:  # a second pass over the motions, now that the mean is known
        tl.store(grad_mask + at, (m0 * (dm0 - mean)).to(grad_mask_ptr.dtype.element_ty), mask=inside)
        for k in range(0, K):
            mk = tl.load(weights + (k + 1) * S + at, mask=inside, other=0.0)
            mx, my, mz, _, _, _ = keypoint_motion(source_ptr, driving_ptr, jac_ptr, n * K + k, x, y, z, DIMS, HAS_JAC)
            dm = gx * mx + gy * my + gz * mz
            tl.store(grad_mask + (k + 1) * S + at, (mk * (dm - mean)).to(grad_mask_ptr.dtype.element_ty), mask=inside)
    else:
        tl.store(grad_mask + at, dm0.to(grad_mask_ptr.dtype.element_ty), mask=inside)


def _sizes(feature, mask):
    return feature.dim() - 2, volume(feature.shape[2:]), volume(mask.shape[2:])


def forward(feature, kp_source, kp_driving, mask, jacobian, mask_logits, align_corners, padding, *,
            inference: bool = False, return_deformation: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """output, deformation and motion weights; in inference the motion weights, and the
    deformation unless asked for, are empty (not stored)."""
    n, c = feature.shape[:2]
    k = kp_source.shape[1]
    dims, size_in, size_out = _sizes(feature, mask)
    positions = size_out[0] * size_out[1] * size_out[2]
    acc = accumulation_dtype(feature.dtype)
    store_deformation = return_deformation or not inference
    output = feature.new_empty((n, c, *mask.shape[2:]))
    deformation = feature.new_empty((n, *mask.shape[2:], dims) if store_deformation else (0,), dtype=acc)
    motion_weights = mask.new_empty((0,) if inference else mask.shape, dtype=acc)
    if positions == 0 or n == 0:
        return output, deformation, motion_weights
    kp_source, kp_driving = kp_source.contiguous(), kp_driving.contiguous()
    _forward_kernel[(triton.cdiv(positions, BLOCK), n)](
        feature.contiguous(), kp_source, kp_driving, kp_source if jacobian is None else jacobian.contiguous(),
        mask.contiguous(), output, deformation if store_deformation else output,
        output if inference else motion_weights, c, k, *size_in, *size_out,
        DIMS=dims, HAS_JAC=jacobian is not None, LOGITS=mask_logits, ALIGN=align_corners, BORDER=padding == 1,
        STORE_WEIGHTS=not inference, STORE_DEFORMATION=store_deformation, BLOCK=BLOCK,
    )
    return output, deformation, motion_weights


def backward(grad_output, grad_deformation, feature, kp_source, kp_driving, mask, jacobian, deformation,
             motion_weights, mask_logits, align_corners, padding, feature_grad,
             deterministic) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    n, c = feature.shape[:2]
    k = kp_source.shape[1]
    dims, size_in, size_out = _sizes(feature, mask)
    positions = size_out[0] * size_out[1] * size_out[2]
    grad_mask = mask.new_empty(mask.shape)
    if positions == 0:  # no output position: every gradient is zero (with C = 0 the deformation still has them)
        zeros = [torch.zeros_like(t) for t in (feature, kp_source, kp_driving)]
        jac = torch.zeros_like(jacobian) if jacobian is not None else feature.new_empty((0,))
        return zeros[0] if feature_grad else feature.new_empty((0,)), zeros[1], zeros[2], grad_mask.zero_(), jac
    blocks = triton.cdiv(positions, BLOCK)
    grad_output = grad_output.to(feature.dtype).contiguous()
    partials = feature.new_empty((n, blocks, k, PARTIAL_WIDTH), dtype=torch.float32)
    sums = ScatterSums(feature, grad_output, feature_grad, deterministic)
    kp_source, kp_driving = kp_source.contiguous(), kp_driving.contiguous()
    _backward_kernel[(blocks, n)](
        feature.contiguous(), kp_source, kp_driving, kp_source if jacobian is None else jacobian.contiguous(),
        deformation, motion_weights, grad_output, deformation if grad_deformation is None else
        grad_deformation.float().contiguous(), grad_mask, *sums.pointers(), partials,
        c, k, *size_in, *size_out,
        DIMS=dims, HAS_JAC=jacobian is not None, LOGITS=mask_logits, ALIGN=align_corners, BORDER=padding == 1,
        HAS_GRAD_DEF=grad_deformation is not None, FEATURE_GRAD=feature_grad, DETERMINISTIC=sums.deterministic,
        BLOCK=BLOCK,
    )
    grad_source, grad_driving, grad_jacobian = keypoint_grads(partials, jacobian, dims, feature.dtype)
    return sums.gradient(), grad_source, grad_driving, grad_mask, grad_jacobian
