"""Triton kernels of the dense-motion network's input. Forward: a program per (sample,
motion, block of positions) forms T_k(z) on the spot and samples every channel of the one
feature tensor. Backward: the same programs sum d/d sample position over the channels,
scatter d/d feature (float atomics, or int64 fixed point when deterministic) and leave
per-keypoint sums that a short torch tail adds in a fixed order."""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

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
def _sample_position(source_ptr, driving_ptr, jac_ptr, n, slot, K, at, D, H, W, DIMS: tl.constexpr,
                     HAS_JAC: tl.constexpr):
    """Where motion `slot` samples at grid points `at` (slot 0: the identity), and z - kp_driving."""
    x, y, z = grid_point(at, D, H, W)
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
    gather_channels(feature_ptr, out_ptr + (ns * C).to(tl.int64) * S + at, S, n, C, inside, x0, y0, z0, fx, fy, fz,
                    W, H, D, DIMS, BLOCK)


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
    gx, gy, gz = backward_channels(feature_ptr, grad_out_ptr + (ns * C).to(tl.int64) * S + at, S, sums_ptr, scales_ptr,
                                   n, C, inside, x0, y0, z0, fx, fy, fz, W, H, D, DIMS, FEATURE_GRAD, DETERMINISTIC,
                                   BLOCK)
    if slot > 0:  # the identity has no keypoint
        gx *= factor_x
        gy *= factor_y
        gz *= factor_z
        out = partials_ptr + ((n * tl.num_programs(0) + block) * K + slot - 1).to(tl.int64) * 12
        store_keypoint_sums(out, inside, gx, gy, gz, rx, ry, rz)


def forward(feature, kp_source, kp_driving, jacobian, align_corners, padding) -> Tensor:
    n, c = feature.shape[:2]
    k = kp_source.shape[1]
    D, H, W = volume(feature.shape[2:])
    output = feature.new_empty((n, k + 1, c, *feature.shape[2:]))
    if output.numel() == 0:
        return output
    _forward_kernel[(triton.cdiv(D * H * W, BLOCK), n * (k + 1))](
        feature.contiguous(), *_keypoint_buffers(kp_source, kp_driving, jacobian), output,
        c, k, D, H, W, DIMS=feature.dim() - 2, HAS_JAC=jacobian is not None, ALIGN=align_corners,
        BORDER=padding == 1, BLOCK=BLOCK,
    )
    return output


def _keypoint_buffers(kp_source, kp_driving, jacobian):
    """The kernels' source, driving and jacobian pointers (the jacobian's is any tensor when
    HAS_JAC is off). Without keypoints (K = 0) slot 0, the identity, still forms a keypoint
    motion it then ignores: it reads a small zero buffer, not past an empty tensor."""
    if kp_source.shape[1] == 0:
        zeros = kp_source.new_zeros((9,))
        return zeros, zeros, zeros
    kp_source = kp_source.contiguous()
    return kp_source, kp_driving.contiguous(), kp_source if jacobian is None else jacobian.contiguous()


def backward(grad_output, feature, kp_source, kp_driving, jacobian, align_corners, padding, feature_grad,
             deterministic) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    n, c = feature.shape[:2]
    k, dims = kp_source.shape[1], feature.dim() - 2
    D, H, W = volume(feature.shape[2:])
    if feature.numel() == 0:  # nothing is sampled: every gradient is zero
        jac = torch.zeros_like(jacobian) if jacobian is not None else feature.new_empty((0,))
        grad_feature = torch.zeros_like(feature) if feature_grad else feature.new_empty((0,))
        return grad_feature, torch.zeros_like(kp_source), torch.zeros_like(kp_driving), jac
    blocks = triton.cdiv(D * H * W, BLOCK)
    grad_output = grad_output.to(feature.dtype).contiguous()
    partials = feature.new_empty((n, blocks, k, PARTIAL_WIDTH), dtype=torch.float32)
    sums = ScatterSums(feature, grad_output.transpose(1, 2), feature_grad, deterministic)  # every motion reaches (n, c)
    _backward_kernel[(blocks, n * (k + 1))](
        feature.contiguous(), *_keypoint_buffers(kp_source, kp_driving, jacobian),
        grad_output, *sums.pointers(), partials, c, k, D, H, W,
        DIMS=dims, HAS_JAC=jacobian is not None, ALIGN=align_corners, BORDER=padding == 1, FEATURE_GRAD=feature_grad,
        DETERMINISTIC=sums.deterministic, BLOCK=BLOCK,
    )
    grad_source, grad_driving, grad_jacobian = keypoint_grads(partials, jacobian, dims, feature.dtype)
    return sums.gradient(), grad_source, grad_driving, grad_jacobian
