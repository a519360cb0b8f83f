"""What the Triton kernels of keypoint_warp and sparse_motion_warp share: a keypoint's motion
T_k, grid_sample's source coordinate, and the bilinear / trilinear corners with their
weights and derivatives. Everything computes in float32."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# Per (sample, keypoint) sums the kernels leave for the torch tail, each 12 wide:
# sg = sum w g (3), then sgr = sum w g (z - kp_driving)^T (3 x 3); unused axes stay 0.
PARTIAL_WIDTH = 12


@triton.jit
def _keypoint(ptr, kp, DIMS: tl.constexpr):
    """Keypoint `kp` (= n * K + k) as (x, y, z), z = 0 in 2-D."""
    x = tl.load(ptr + kp * DIMS).to(tl.float32)
    y = tl.load(ptr + kp * DIMS + 1).to(tl.float32)
    if DIMS == 3:
        z = tl.load(ptr + kp * DIMS + 2).to(tl.float32)
    else:
        z = 0.0
    return x, y, z


@triton.jit
def _jacobian_row(jac_ptr, kp, row: tl.constexpr, DIMS: tl.constexpr):
    at = jac_ptr + kp * DIMS * DIMS + row * DIMS
    a = tl.load(at).to(tl.float32)
    b = tl.load(at + 1).to(tl.float32)
    if DIMS == 3:
        c = tl.load(at + 2).to(tl.float32)
    else:
        c = 0.0
    return a, b, c


@triton.jit
def keypoint_motion(source_ptr, driving_ptr, jac_ptr, kp, x, y, z, DIMS: tl.constexpr, HAS_JAC: tl.constexpr):
    """T_k(z) = kp_source_k + J_k (z - kp_driving_k), and z - kp_driving_k."""
    dx, dy, dz = _keypoint(driving_ptr, kp, DIMS)
    rx = x - dx
    ry = y - dy
    rz = z - dz
    if DIMS == 2:
        rz = tl.zeros_like(rx)
    if HAS_JAC:
        a0, a1, a2 = _jacobian_row(jac_ptr, kp, 0, DIMS)
        b0, b1, b2 = _jacobian_row(jac_ptr, kp, 1, DIMS)
        mx = a0 * rx + a1 * ry + a2 * rz
        my = b0 * rx + b1 * ry + b2 * rz
        if DIMS == 3:
            c0, c1, c2 = _jacobian_row(jac_ptr, kp, 2, DIMS)
            mz = c0 * rx + c1 * ry + c2 * rz
        else:
            mz = tl.zeros_like(rx)
    else:
        mx, my, mz = rx, ry, rz
    sx, sy, sz = _keypoint(source_ptr, kp, DIMS)
    return mx + sx, my + sy, mz + sz, rx, ry, rz


@triton.jit
def source_coordinate(coord, size, ALIGN: tl.constexpr, BORDER: tl.constexpr):
    """grid_sample's source coordinate on one axis of `size`, and d(it)/d(coord) (0 where
    "border" clips), as torch computes them."""
    n = size.to(tl.float32)
    if ALIGN:
        x = (coord + 1.0) * 0.5 * (n - 1.0)
        factor = tl.zeros_like(coord) + (n - 1.0) * 0.5
    else:
        x = ((coord + 1.0) * n - 1.0) * 0.5
        factor = tl.zeros_like(coord) + n * 0.5
    if BORDER:
        factor = tl.where((x < 0.0) | (x > n - 1.0), 0.0, factor)
        x = tl.minimum(tl.maximum(x, 0.0), n - 1.0)
    return x, factor


@triton.jit
def stencil(px, py, pz, W, H, D, DIMS: tl.constexpr, ALIGN: tl.constexpr, BORDER: tl.constexpr):
    """Where samples at (px, py, pz) land: lower corner, fractions and per-axis factors."""
    x, factor_x = source_coordinate(px, W, ALIGN, BORDER)
    y, factor_y = source_coordinate(py, H, ALIGN, BORDER)
    x0 = tl.floor(x)
    y0 = tl.floor(y)
    if DIMS == 3:
        z, factor_z = source_coordinate(pz, D, ALIGN, BORDER)
        z0 = tl.floor(z)
        fz = z - z0
    else:
        z0 = tl.zeros_like(x)
        fz = tl.zeros_like(x)
        factor_z = tl.zeros_like(x)
    return x0.to(tl.int32), y0.to(tl.int32), z0.to(tl.int32), x - x0, y - y0, fz, factor_x, factor_y, factor_z


@triton.jit
def _axis(bit: tl.constexpr, frac):
    if bit == 1:
        return frac, 1.0
    else:
        return 1.0 - frac, -1.0


@triton.jit
def corner(o: tl.constexpr, x0, y0, z0, fx, fy, fz, W, H, D, DIMS: tl.constexpr):
    """Corner o of the stencil: flat offset in the plane, inside the input, weight, and
    d weight / d source coordinate per axis."""
    wx, sx = _axis(o & 1, fx)
    wy, sy = _axis((o >> 1) & 1, fy)
    ix = x0 + (o & 1)
    iy = y0 + ((o >> 1) & 1)
    inside = (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
    if DIMS == 3:
        wz, sz = _axis((o >> 2) & 1, fz)
        iz = z0 + ((o >> 2) & 1)
        inside = inside & (iz >= 0) & (iz < D)
    else:
        wz, sz = 1.0, 0.0
        iz = z0
    offset = tl.where(inside, (iz * H + iy) * W + ix, 0)
    return offset, inside, wx * wy * wz, sx * wy * wz, sy * wx * wz, sz * wx * wy


def keypoint_grads(partials, jacobian, dims, dtype):
    """The torch tail: partials (N, blocks, K, PARTIAL_WIDTH), added over the blocks in a fixed
    order, -> d/d kp_source, d/d kp_driving, d/d jacobian (or an empty tensor)."""
    total = partials.sum(1)
    sg = total[..., :dims]
    sgr = total[..., 3:].unflatten(-1, (3, 3))[..., :dims, :dims]
    jt_sg = sg if jacobian is None else torch.einsum("nkab,nka->nkb", jacobian.float(), sg)
    grad_jacobian = sgr.to(dtype, copy=True) if jacobian is not None else partials.new_empty((0,), dtype=dtype)
    return sg.to(dtype, copy=True), (-jt_sg).to(dtype), grad_jacobian


def fixed_point_scales(bound):
    """Per plane (n, c), the power of two that puts `bound` (the sum of |grad_output| that
    reaches it) below 2^62: the deterministic scatter adds value * scale as int64."""
    _, exponent = torch.frexp(bound.double())
    return torch.exp2((62 - exponent).double()).contiguous()
