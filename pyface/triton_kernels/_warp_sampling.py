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
        factor = tl.where((x <= 0.0) | (x >= n - 1.0), 0.0, factor)  # torch: on a bound is clipped
        x = tl.minimum(tl.maximum(x, 0.0), n - 1.0)
    return x, factor


@triton.jit
def _outside_if_not(finite, x, size):
    """x, or a coordinate outside the input where the position is not finite; clamped to
    [-2, size + 1], beyond which every corner is outside anyway (no integer overflow)."""
    x = tl.where(finite, x, -2.0)
    return tl.minimum(tl.maximum(x, -2.0), size.to(tl.float32) + 1.0)


@triton.jit
def stencil(px, py, pz, W, H, D, DIMS: tl.constexpr, ALIGN: tl.constexpr, BORDER: tl.constexpr):
    """Where samples at (px, py, pz) land: lower corner, fractions and per-axis factors. A
    position that is not finite reads no corner and gets NaN fractions, so its sample and its
    position gradient are NaN (the reference's rule, pyface.reference.keypoint_warp.sample)."""
    x, factor_x = source_coordinate(px, W, ALIGN, BORDER)
    y, factor_y = source_coordinate(py, H, ALIGN, BORDER)
    finite = (tl.abs(px) < float("inf")) & (tl.abs(py) < float("inf"))
    if DIMS == 3:
        z, factor_z = source_coordinate(pz, D, ALIGN, BORDER)
        finite = finite & (tl.abs(pz) < float("inf"))
        z = _outside_if_not(finite, z, D)
        z0 = tl.floor(z)
        fz = tl.where(finite, z - z0, float("nan"))
    else:
        z0 = tl.zeros_like(x)
        fz = tl.zeros_like(x)
        factor_z = tl.zeros_like(x)
    x = _outside_if_not(finite, x, W)
    y = _outside_if_not(finite, y, H)
    x0 = tl.floor(x)
    y0 = tl.floor(y)
    fx = tl.where(finite, x - x0, float("nan"))
    fy = tl.where(finite, y - y0, float("nan"))
    return x0.to(tl.int32), y0.to(tl.int32), z0.to(tl.int32), fx, fy, fz, factor_x, factor_y, factor_z


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
    offset = tl.where(inside, (iz.to(tl.int64) * H + iy) * W + ix, 0)  # planes may pass 2^31 elements
    return offset, inside, wx * wy * wz, sx * wy * wz, sy * wx * wz, sz * wx * wy


@triton.jit
def store_keypoint_sums(out, inside, wx, wy, wz, rx, ry, rz):
    """One block's PARTIAL_WIDTH sums for one keypoint: sum w g, then sum w g (z - kp_driving)^T,
    over the lanes inside the grid (a lane past its end has w g = 0, and an inf kp_driving
    would make its 0 * inf NaN)."""
    rx = tl.where(inside, rx, 0.0)
    ry = tl.where(inside, ry, 0.0)
    rz = tl.where(inside, rz, 0.0)
    tl.store(out, tl.sum(wx, axis=0))
    tl.store(out + 1, tl.sum(wy, axis=0))
    tl.store(out + 2, tl.sum(wz, axis=0))
    tl.store(out + 3, tl.sum(wx * rx, axis=0))
    tl.store(out + 4, tl.sum(wx * ry, axis=0))
    tl.store(out + 5, tl.sum(wx * rz, axis=0))
    tl.store(out + 6, tl.sum(wy * rx, axis=0))
    tl.store(out + 7, tl.sum(wy * ry, axis=0))
    tl.store(out + 8, tl.sum(wy * rz, axis=0))
    tl.store(out + 9, tl.sum(wz * rx, axis=0))
    tl.store(out + 10, tl.sum(wz * ry, axis=0))
    tl.store(out + 11, tl.sum(wz * rz, axis=0))


@triton.jit
def scatter_add(sums_ptr, scales_ptr, plane_index, plane_size, offset, ok, value, DETERMINISTIC: tl.constexpr):
    """d/d feature into plane `plane_index` of the sums: a float atomic add, or, deterministic,
    an int64 one of value * the plane's scale (integer adds give the same bits in any order)."""
    where = sums_ptr + plane_index.to(tl.int64) * plane_size + offset
    if DETERMINISTIC:
        scale = tl.load(scales_ptr + plane_index)
        tl.atomic_add(where, tl.floor(value.to(tl.float64) * scale + 0.5).to(tl.int64), mask=ok)
    else:
        tl.atomic_add(where, value, mask=ok)


class ScatterSums:
    """The buffer the kernels scatter d/d feature into and its conversion to the gradient.
    grad_by_plane: grad_output arranged (N, C, ...), everything reaching plane (n, c) under
    [n, c]; deterministic: int64 fixed point with a power-of-two scale per plane that puts
    the plane's sum of |grad_output| (a bound on every partial sum) below 2^62."""

    def __init__(self, feature, grad_by_plane, feature_grad: bool, deterministic: bool):
        self.feature, self.feature_grad = feature, feature_grad
        self.scales = None
        if feature_grad and deterministic:
            bound = grad_by_plane.abs().double().flatten(2).sum(2)
            self.scales = torch.exp2((62 - torch.frexp(bound).exponent).double()).contiguous()
            self.sums = torch.zeros(feature.shape, dtype=torch.int64, device=feature.device)
        elif feature_grad:
            self.sums = torch.zeros(feature.shape, dtype=torch.float32, device=feature.device)
        else:  # never written: the kernels skip the scatter
            self.sums = torch.empty((1,), dtype=torch.float32, device=feature.device)

    @property
    def deterministic(self) -> bool:
        return self.scales is not None

    def pointers(self):
        """(sums, scales) for the kernel; scales is any tensor when not deterministic."""
        return self.sums, self.sums if self.scales is None else self.scales

    def gradient(self):
        n, c = self.feature.shape[:2]
        if not self.feature_grad:
            return self.feature.new_empty((0,))
        if self.scales is not None:
            return (self.sums.double() / self.scales.view(n, c, *[1] * (self.feature.dim() - 2))).to(self.feature.dtype)
        return self.sums.to(self.feature.dtype)


@triton.jit
def gather_channels(feature_ptr, out_ptr, out_stride, n, C, inside, x0, y0, z0, fx, fy, fz, W, H, D,
                    DIMS: tl.constexpr, BLOCK: tl.constexpr):
    """Every channel of sample n sampled at the block's stencils; channel c is stored at
    out_ptr + c * out_stride."""
    plane_size = D * H * W
    for c in range(0, C):
        plane = feature_ptr + (n * C + c).to(tl.int64) * plane_size
        value = tl.zeros([BLOCK], tl.float32)
        for o in tl.static_range(2 ** DIMS):
            offset, ok, weight, _, _, _ = corner(o, x0, y0, z0, fx, fy, fz, W, H, D, DIMS)
            value += weight * tl.load(plane + offset, mask=inside & ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + c * out_stride, value.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def backward_channels(feature_ptr, go_ptr, go_stride, sums_ptr, scales_ptr, n, C, inside, x0, y0, z0, fx, fy, fz,
                      W, H, D, DIMS: tl.constexpr, FEATURE_GRAD: tl.constexpr, DETERMINISTIC: tl.constexpr,
                      BLOCK: tl.constexpr):
    """The transpose over the channels of sample n, go_ptr + c * go_stride holding each
    channel's gradient at the block: d loss / d source coordinate (before the factors), and
    the d/d feature scatter when asked."""
    plane_size = D * H * W
    gx = tl.zeros([BLOCK], tl.float32)
    gy = tl.zeros([BLOCK], tl.float32)
    gz = tl.zeros([BLOCK], tl.float32)
    for c in range(0, C):
        plane = feature_ptr + (n * C + c).to(tl.int64) * plane_size
        go = tl.load(go_ptr + c * go_stride, mask=inside, other=0.0).to(tl.float32)
        for o in tl.static_range(2 ** DIMS):
            offset, ok, weight, dwx, dwy, dwz = corner(o, x0, y0, z0, fx, fy, fz, W, H, D, DIMS)
            v = go * tl.load(plane + offset, mask=inside & ok, other=0.0).to(tl.float32)
            gx += v * dwx
            gy += v * dwy
            if DIMS == 3:  # in 2-D dwz is 0, and an inf sample times it would make gz NaN
                gz += v * dwz
            if FEATURE_GRAD:
                scatter_add(sums_ptr, scales_ptr, n * C + c, plane_size, offset, inside & ok, weight * go,
                            DETERMINISTIC)
    return gx, gy, gz


def keypoint_grads(partials, jacobian, dims, dtype):
    """The torch tail: partials (N, blocks, K, PARTIAL_WIDTH), added over the blocks in a fixed
    order, -> d/d kp_source, d/d kp_driving, d/d jacobian (or an empty tensor)."""
    total = partials.sum(1)
    sg = total[..., :dims]
    sgr = total[..., 3:].unflatten(-1, (3, 3))[..., :dims, :dims]
    jt_sg = sg if jacobian is None else torch.einsum("nkab,nka->nkb", jacobian.float(), sg)
    grad_jacobian = sgr.to(dtype, copy=True) if jacobian is not None else partials.new_empty((0,), dtype=dtype)
    return sg.to(dtype, copy=True), (-jt_sg).to(dtype), grad_jacobian
