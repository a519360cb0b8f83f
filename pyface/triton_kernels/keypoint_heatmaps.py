"""Triton kernels of the keypoint heatmaps: programs tile (sample, slot, grid points) and
write driving-minus-source Gaussians; the backward gives a program to each (sample,
keypoint), which sums the gradient against the Gaussians' derivatives over the grid."""
from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from pyface.triton_kernels._grid import grid_point, volume

BLOCK = 1024


@triton.jit
def _offsets(kp_ptr, x, y, z, DIMS: tl.constexpr):
    """(z - kp) per axis and the Gaussian's exponent numerator |z - kp|^2."""
    ox = x - tl.load(kp_ptr).to(tl.float32)
    oy = y - tl.load(kp_ptr + 1).to(tl.float32)
    if DIMS == 3:
        oz = z - tl.load(kp_ptr + 2).to(tl.float32)
    else:
        oz = tl.zeros_like(x)
    return ox, oy, oz, ox * ox + oy * oy + oz * oz


@triton.jit
def _forward_kernel(driving_ptr, source_ptr, out_ptr, K, D, H, W, inv_two_var,
                    DIMS: tl.constexpr, BLOCK: tl.constexpr):
    slot = tl.program_id(1)  # n * (K + 1) + k
    n = slot // (K + 1)
    k = slot % (K + 1) - 1
    plane = D * H * W
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = at < plane
    x, y, z = grid_point(at, D, H, W)
    kp = (n * K + tl.maximum(k, 0)) * DIMS
    _, _, _, r2d = _offsets(driving_ptr + kp, x, y, z, DIMS)
    _, _, _, r2s = _offsets(source_ptr + kp, x, y, z, DIMS)
    value = tl.exp(-r2d * inv_two_var) - tl.exp(-r2s * inv_two_var)
    value = tl.where(k >= 0, value, 0.0)  # slot 0: the background
    tl.store(out_ptr + slot.to(tl.int64) * plane + at, value.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _backward_kernel(driving_ptr, source_ptr, grad_ptr, grad_driving_ptr, grad_source_ptr, K, D, H, W,
                     inv_two_var, inv_var, DIMS: tl.constexpr, BLOCK: tl.constexpr):
    task = tl.program_id(0)  # n * K + k
    n = task // K
    k = task % K
    plane = D * H * W
    grad_base = grad_ptr + (n * (K + 1) + k + 1).to(tl.int64) * plane
    dx = tl.zeros([BLOCK], tl.float32)
    dy = tl.zeros([BLOCK], tl.float32)
    dz = tl.zeros([BLOCK], tl.float32)
    sx = tl.zeros([BLOCK], tl.float32)
    sy = tl.zeros([BLOCK], tl.float32)
    sz = tl.zeros([BLOCK], tl.float32)
    for start in range(0, plane, BLOCK):
        at = start + tl.arange(0, BLOCK)
        inside = at < plane
        g = tl.load(grad_base + at, mask=inside, other=0.0).to(tl.float32)
        x, y, z = grid_point(at, D, H, W)
        ox, oy, oz, r2 = _offsets(driving_ptr + task * DIMS, x, y, z, DIMS)
        e = g * tl.exp(-r2 * inv_two_var)
        dx += e * ox
        dy += e * oy
        dz += e * oz
        ox, oy, oz, r2 = _offsets(source_ptr + task * DIMS, x, y, z, DIMS)
        e = g * tl.exp(-r2 * inv_two_var)
        sx += e * ox
        sy += e * oy
        sz += e * oz
    out = task * DIMS
    ty = grad_driving_ptr.dtype.element_ty
    tl.store(grad_driving_ptr + out, (tl.sum(dx, axis=0) * inv_var).to(ty))
    tl.store(grad_driving_ptr + out + 1, (tl.sum(dy, axis=0) * inv_var).to(ty))
    tl.store(grad_source_ptr + out, (-tl.sum(sx, axis=0) * inv_var).to(ty))
    tl.store(grad_source_ptr + out + 1, (-tl.sum(sy, axis=0) * inv_var).to(ty))
    if DIMS == 3:
        tl.store(grad_driving_ptr + out + 2, (tl.sum(dz, axis=0) * inv_var).to(ty))
        tl.store(grad_source_ptr + out + 2, (-tl.sum(sz, axis=0) * inv_var).to(ty))


def forward(kp_driving, kp_source, spatial_size, variance) -> Tensor:
    N, K, dims = kp_driving.shape
    D, H, W = volume(spatial_size)
    heatmaps = kp_driving.new_empty((N, K + 1, *spatial_size))
    if K == 0:  # the background slot alone, all zeros (the kernel reads keypoint 0 for every slot)
        return heatmaps.zero_()
    if heatmaps.numel():
        _forward_kernel[(triton.cdiv(D * H * W, BLOCK), N * (K + 1))](
            kp_driving.contiguous(), kp_source.contiguous(), heatmaps, K, D, H, W, 0.5 / variance,
            DIMS=dims, BLOCK=BLOCK,
        )
    return heatmaps


def backward(grad, kp_driving, kp_source, variance) -> tuple[Tensor, Tensor]:
    N, K, dims = kp_driving.shape
    D, H, W = volume(tuple(grad.shape[2:]))
    grad_driving, grad_source = kp_driving.new_empty(kp_driving.shape), kp_source.new_empty(kp_source.shape)
    if grad_driving.numel() == 0:
        return grad_driving, grad_source
    if D * H * W == 0:
        return grad_driving.zero_(), grad_source.zero_()
    _backward_kernel[(N * K,)](
        kp_driving.contiguous(), kp_source.contiguous(), grad.to(kp_driving.dtype).contiguous(),
        grad_driving, grad_source, K, D, H, W, 0.5 / variance, 1.0 / variance, DIMS=dims, BLOCK=BLOCK,
    )
    return grad_driving, grad_source
