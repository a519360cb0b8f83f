"""Triton kernels of the dense-motion network's input. Forward: a program per (sample,
motion, block of positions) forms T_k(z) on the spot and samples every channel of the one
feature tensor. Backward: the same programs sum d/d sample position over the channels,
scatter d/d feature (float atomics, or int64 fixed point when deterministic) and leave
per-keypoint sums that a short torch tail adds in a fixed order."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from pyface.triton_kernels._warp_sampling import (
    PARTIAL_WIDTH, corner, fixed_point_scales, keypoint_grads, keypoint_motion, stencil,
)
from pyface.triton_kernels.keypoint_heatmaps import _grid_point
from pyface.triton_kernels.keypoint_warp import _scatter

BLOCK = 128


@triton.jit
def _sample_position(source_ptr, driving_ptr, jac_ptr, n, slot, K, at, D, H, W, DIMS: tl.constexpr,
                     HAS_JAC: tl.constexpr):
    """Where motion `slot` samples at grid points `at` (slot 0: the identity), and z - kp_driving."""
    x, y, z = _grid_point(at, D, H, W)
    mx, my, mz, rx, ry, rz = keypoint_motion(source_ptr, driving_ptr, jac_ptr, n * K + tl.maximum(slot - 1, 0),
                                             x, y, z, DIMS, HAS_JAC)
    identity = slot == 0
    return tl.where(identity, x, mx), tl.where(identity, y, my), tl.where(identity, z, mz), rx, ry, rz


@triton.jit
def _forward_kernel(feature_ptr, source_ptr, driving_ptr, jac_ptr, out_ptr, C, K, D, H, W,
                    DIMS: tl.constexpr, HAS_JAC: tl.constexpr, ALIGN: tl.constexpr, BORDER: tl.constexpr,
                    BLOCK: tl.constexpr):
    ns = tl.program_id(1)  # n * (K + 1) + slot
    n = ns // (K + 1)
    slot = ns % (K + 1)
    S = D * H * W
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = at < S
    px, py, pz, _, _, _ = _sample_position(source_ptr, driving_ptr, jac_ptr, n, slot, K, at, D, H, W, DIMS, HAS_JAC)
    x0, y0, z0, fx, fy, fz, _, _, _ = stencil(px, py, pz, W, H, D, DIMS, ALIGN, BORDER)
    for c in range(0, C):
        plane = feature_ptr + (n * C + c).to(tl.int64) * S
        value = tl.zeros([BLOCK], tl.float32)
        for o in tl.static_range(2 ** DIMS):
            offset, ok, weight, _, _, _ = corner(o, x0, y0, z0, fx, fy, fz, W, H, D, DIMS)
            value += weight * tl.load(plane + offset, mask=inside & ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + (ns * C + c).to(tl.int64) * S + at, value.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _backward_kernel(feature_ptr, source_ptr, driving_ptr, jac_ptr, grad_out_ptr, sums_ptr, scales_ptr, partials_ptr,
                     C, K, D, H, W, DIMS: tl.constexpr, HAS_JAC: tl.constexpr, ALIGN: tl.constexpr,
                     BORDER: tl.constexpr, FEATURE_GRAD: tl.constexpr, DETERMINISTIC: tl.constexpr,
                     BLOCK: tl.constexpr):
    ns = tl.program_id(1)
    n = ns // (K + 1)
    slot = ns % (K + 1)
    block = tl.program_id(0)
    S = D * H * W
    at = block * BLOCK + tl.arange(0, BLOCK)
    inside = at < S
    px, py, pz, rx, ry, rz = _sample_position(source_ptr, driving_ptr, jac_ptr, n, slot, K, at, D, H, W, DIMS,
                                              HAS_JAC)
    x0, y0, z0, fx, fy, fz, factor_x, factor_y, factor_z = stencil(px, py, pz, W, H, D, DIMS, ALIGN, BORDER)
    gx = tl.zeros([BLOCK], tl.float32)
    gy = tl.zeros([BLOCK], tl.float32)
    gz = tl.zeros([BLOCK], tl.float32)
    for c in range(0, C):
        plane = feature_ptr + (n * C + c).to(tl.int64) * S
        go = tl.load(grad_out_ptr + (ns * C + c).to(tl.int64) * S + at, mask=inside, other=0.0).to(tl.float32)
        for o in tl.static_range(2 ** DIMS):
            offset, ok, weight, dwx, dwy, dwz = corner(o, x0, y0, z0, fx, fy, fz, W, H, D, DIMS)
            v = go * tl.load(plane + offset, mask=inside & ok, other=0.0).to(tl.float32)
            gx += v * dwx
            gy += v * dwy
            gz += v * dwz
            if FEATURE_GRAD:
                _scatter(sums_ptr, scales_ptr, n * C + c, S, offset, inside & ok, weight * go, DETERMINISTIC)
    if slot > 0:  # the identity has no keypoint
        gx *= factor_x
        gy *= factor_y
        gz *= factor_z
        out = partials_ptr + ((n * tl.num_programs(0) + block) * K + slot - 1).to(tl.int64) * 12
        tl.store(out, tl.sum(gx, axis=0))
        tl.store(out + 1, tl.sum(gy, axis=0))
        tl.store(out + 2, tl.sum(gz, axis=0))
        tl.store(out + 3, tl.sum(gx * rx, axis=0))
        tl.store(out + 4, tl.sum(gx * ry, axis=0))
        tl.store(out + 5, tl.sum(gx * rz, axis=0))
        tl.store(out + 6, tl.sum(gy * rx, axis=0))
        tl.store(out + 7, tl.sum(gy * ry, axis=0))
        tl.store(out + 8, tl.sum(gy * rz, axis=0))
        tl.store(out + 9, tl.sum(gz * rx, axis=0))
        tl.store(out + 10, tl.sum(gz * ry, axis=0))
        tl.store(out + 11, tl.sum(gz * rz, axis=0))


def _volume(feature):
    return tuple(feature.shape[2:]) if feature.dim() == 5 else (1, *feature.shape[2:])


def forward(feature, kp_source, kp_driving, jacobian, align_corners, padding):
    n, c = feature.shape[:2]
    k = kp_source.shape[1]
    D, H, W = _volume(feature)
    output = feature.new_empty((n, k + 1, c, *feature.shape[2:]))
    if output.numel() == 0:
        return output
    kp_source, kp_driving = kp_source.contiguous(), kp_driving.contiguous()
    _forward_kernel[(triton.cdiv(D * H * W, BLOCK), n * (k + 1))](
        feature.contiguous(), kp_source, kp_driving, kp_source if jacobian is None else jacobian.contiguous(), output,
        c, k, D, H, W, DIMS=feature.dim() - 2, HAS_JAC=jacobian is not None, ALIGN=align_corners,
        BORDER=padding == 1, BLOCK=BLOCK,
    )
    return output


def backward(grad_output, feature, kp_source, kp_driving, jacobian, align_corners, padding, feature_grad,
             deterministic):
    n, c = feature.shape[:2]
    k, dims = kp_source.shape[1], feature.dim() - 2
    D, H, W = _volume(feature)
    if feature.numel() == 0:  # nothing is sampled: every gradient is zero
        jac = torch.zeros_like(jacobian) if jacobian is not None else feature.new_empty((0,))
        grad_feature = torch.zeros_like(feature) if feature_grad else feature.new_empty((0,))
        return grad_feature, torch.zeros_like(kp_source), torch.zeros_like(kp_driving), jac
    blocks = triton.cdiv(D * H * W, BLOCK)
    grad_output = grad_output.to(feature.dtype).contiguous()
    partials = feature.new_empty((n, blocks, k, PARTIAL_WIDTH), dtype=torch.float32)
    scales = None
    if feature_grad and deterministic:  # every motion's samples reach plane (n, c)
        scales = fixed_point_scales(grad_output.abs().double().flatten(3).sum((1, 3)))
        sums = torch.zeros(feature.shape, dtype=torch.int64, device=feature.device)
    elif feature_grad:
        sums = torch.zeros(feature.shape, dtype=torch.float32, device=feature.device)
    else:
        sums = partials  # never written
    kp_source, kp_driving = kp_source.contiguous(), kp_driving.contiguous()
    _backward_kernel[(blocks, n * (k + 1))](
        feature.contiguous(), kp_source, kp_driving, kp_source if jacobian is None else jacobian.contiguous(),
        grad_output, sums, partials if scales is None else scales, partials, c, k, D, H, W,
        DIMS=dims, HAS_JAC=jacobian is not None, ALIGN=align_corners, BORDER=padding == 1, FEATURE_GRAD=feature_grad,
        DETERMINISTIC=scales is not None, BLOCK=BLOCK,
    )
    grad_source, grad_driving, grad_jacobian = keypoint_grads(partials, jacobian, dims, feature.dtype)
    if not feature_grad:
        grad_feature = feature.new_empty((0,))
    elif scales is not None:
        grad_feature = (sums.double() / scales.view(n, c, *[1] * dims)).to(feature.dtype)
    else:
        grad_feature = sums.to(feature.dtype)
    return grad_feature, grad_source, grad_driving, grad_jacobian
