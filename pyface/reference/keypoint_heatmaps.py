"""Keypoint heatmaps in plain PyTorch, written the way the FOMM family writes kp2gaussian:
an expanded coordinate grid, one Gaussian per keypoint, driving minus source, and a zero
map for the background (docs/ops.md, keypoint_heatmaps)."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface.contracts import checks
from pyface.contracts.grid import make_coordinate_grid


def keypoint_heatmaps(kp_driving, kp_source, spatial_size, *, variance=0.01, backend=None) -> Tensor:
    """(N, K+1, *spatial_size): slot 0 zeros, slot k the Gaussian of kp_driving[:, k-1] minus
    that of kp_source[:, k-1], exp(-0.5 |z - kp|^2 / variance) on the identity grid z.
    `backend` is accepted for signature parity with pyface.ops and ignored."""
    checks.check_keypoint_heatmaps(kp_driving, kp_source, spatial_size, variance)
    n, k, d = kp_driving.shape

    def gaussian(kp):
        grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)
        grid = grid.view(1, 1, *grid.shape).repeat(n, k, *([1] * (d + 1)))  # (N, K, *S, d)
        mean = kp.view(n, k, *([1] * d), d)
        return torch.exp(-0.5 * ((grid - mean) ** 2).sum(-1) / variance)

    heatmap = gaussian(kp_driving) - gaussian(kp_source)
    zeros = torch.zeros(n, 1, *spatial_size, dtype=heatmap.dtype, device=heatmap.device)
    return torch.cat([zeros, heatmap], dim=1)
