"""The identity grid as the Triton kernels of the keypoint ops read it (the convention of
pyface.contracts.grid: each axis torch.linspace(-1, 1, size), (x, y, z) = (W, H, D))."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def grid_point(at, D, H, W):
    """(x, y, z) of flat grid index `at` in a (D, H, W) map; torch.linspace(-1, 1, size)."""
    w = at % W
    h = (at // W) % H
    d = at // (W * H)
    x = tl.where(W > 1, -1.0 + 2.0 * w.to(tl.float32) / tl.maximum(W - 1, 1).to(tl.float32), -1.0)
    y = tl.where(H > 1, -1.0 + 2.0 * h.to(tl.float32) / tl.maximum(H - 1, 1).to(tl.float32), -1.0)
    z = tl.where(D > 1, -1.0 + 2.0 * d.to(tl.float32) / tl.maximum(D - 1, 1).to(tl.float32), -1.0)
    return x, y, z


def volume(spatial_size):
    """(D, H, W) of a 2-D (H, W) or 3-D spatial size, D = 1 in 2-D."""
    return (1, *spatial_size) if len(spatial_size) == 2 else tuple(spatial_size)
