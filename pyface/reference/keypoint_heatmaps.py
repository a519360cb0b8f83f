"""Keypoint heatmaps in plain PyTorch, written the way the FOMM family writes kp2gaussian:
an expanded coordinate grid, one Gaussian per keypoint, driving minus source, and a zero
map for the background (SPEC section 3)."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _checks

OP = "keypoint_heatmaps"


def make_coordinate_grid(spatial_size, dtype, device) -> torch.Tensor:
    """(*spatial_size, d): the identity grid, each axis torch.linspace(-1, 1, size), the last
    dim ordered (x, y[, z]), i.e. (W, H[, D]), as grid_sample reads it."""
    axes = [torch.linspace(-1, 1, size, dtype=dtype, device=device) for size in spatial_size]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh[::-1], dim=-1)


def check_args(kp_driving, kp_source, spatial_size, variance) -> None:
    """Everything about the arguments that can be checked without reading tensor data."""
    for name, kp in (("kp_driving", kp_driving), ("kp_source", kp_source)):
        _checks.floating(OP, name, kp)
    if kp_source.dtype != kp_driving.dtype:
        raise TypeError(f"{OP}: kp_source must have kp_driving's dtype {kp_driving.dtype}, got {kp_source.dtype}")
    if kp_driving.dim() != 3 or kp_driving.shape[2] not in (2, 3):
        raise ValueError(f"{OP}: kp_driving must be (N, K, d) with d = 2 or 3, got shape {tuple(kp_driving.shape)}")
    if kp_source.shape != kp_driving.shape:
        raise ValueError(
            f"{OP}: kp_source shape {tuple(kp_source.shape)} must equal kp_driving shape {tuple(kp_driving.shape)}"
        )
    dims = kp_driving.shape[2]
    if (
        not isinstance(spatial_size, (tuple, list, torch.Size))
        or len(spatial_size) != dims
        or not all(isinstance(s, int) and s > 0 for s in spatial_size)
    ):
        raise ValueError(
            f"{OP}: spatial_size must be {dims} positive ints (the keypoints have d = {dims}), got {spatial_size!r}"
        )
    if not isinstance(variance, (int, float)) or not variance > 0:
        raise ValueError(f"{OP}: variance must be a positive number, got {variance!r}")
    _checks.same_device(OP, kp_driving=kp_driving, kp_source=kp_source)


def keypoint_heatmaps(kp_driving, kp_source, spatial_size, *, variance=0.01, backend=None) -> Tensor:
    """(N, K+1, *spatial_size): slot 0 zeros, slot k the Gaussian of kp_driving[:, k-1] minus
    that of kp_source[:, k-1], exp(-0.5 |z - kp|^2 / variance) on the identity grid z.
    `backend` is accepted for signature parity with pyface.ops and ignored."""
    check_args(kp_driving, kp_source, spatial_size, variance)
    n, k, d = kp_driving.shape

    def gaussian(kp):
        grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)
        grid = grid.view(1, 1, *grid.shape).repeat(n, k, *([1] * (d + 1)))  # (N, K, *S, d)
        mean = kp.view(n, k, *([1] * d), d)
        return torch.exp(-0.5 * ((grid - mean) ** 2).sum(-1) / variance)

    heatmap = gaussian(kp_driving) - gaussian(kp_source)
    zeros = torch.zeros(n, 1, *spatial_size, dtype=heatmap.dtype, device=heatmap.device)
    return torch.cat([zeros, heatmap], dim=1)
