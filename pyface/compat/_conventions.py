"""The anchors' motion functions with their argument order, on pyface's ops. Keypoints come as
the anchors pass them: FOMM's and face-vid2vid's dicts ({"value": (N, K, d)[, "jacobian":
(N, K, d, d)]}) or LivePortrait's tensors (N, K, 3); coordinates are (x, y[, z]) on the [-1, 1]
grid, jacobians are the source's and the driving frame's own (J_s J_d^-1 is formed here)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pyface.compat import _motion
from pyface.compat._blocks import coordinate_grid
from pyface.ops import keypoint_heatmaps, keypoint_warp, sparse_motion_warp

Keypoints = dict | Tensor


def value(kp: Keypoints) -> Tensor:
    return kp["value"] if isinstance(kp, dict) else kp


def jacobian(kp_driving: Keypoints, kp_source: Keypoints) -> Tensor | None:
    """J_s J_d^-1 when both dicts carry jacobians (face-vid2vid may carry None), else None."""
    if not isinstance(kp_driving, dict) or kp_driving.get("jacobian") is None:
        return None
    return _motion.relative_jacobian(kp_source["jacobian"], kp_driving["jacobian"])


def _as_grid_offsets(points: Tensor, dims: int) -> Tensor:
    """(N, K, d) -> (N, K, 1, ..., 1, d), to broadcast against a (*S, d) grid."""
    return points.reshape(*points.shape[:2], *([1] * dims), points.shape[-1])


def make_coordinate_grid(spatial_size: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(*spatial_size, d): each position's (x, y[, z]) on the [-1, 1] grid."""
    return coordinate_grid(spatial_size, dtype, device)


def kp2gaussian(kp: Keypoints, spatial_size: Sequence[int], kp_variance: float) -> Tensor:
    """(N, K, *spatial_size): exp(-0.5 |z - kp_k|^2 / kp_variance) for one set of keypoints."""
    mean = value(kp)
    grid = coordinate_grid(spatial_size, mean.dtype, mean.device)
    offsets = grid - _as_grid_offsets(mean, len(spatial_size))
    return torch.exp(-0.5 * (offsets ** 2).sum(-1) / kp_variance)


def create_heatmap_representations(feature: Tensor, kp_driving: Keypoints, kp_source: Keypoints,
                                   kp_variance: float = 0.01, *, backend: str | None = None) -> Tensor:
    """(N, K+1, 1, *S): a zero background slot, then driving minus source Gaussians, at the size
    of feature's last 2 (FOMM) or 3 dims (pyface.ops.keypoint_heatmaps, same argument order).
    The 3-D anchors pass their (N, K+1, C, D, H, W) deformed feature; its last 3 dims are used."""
    spatial = feature.shape[-value(kp_driving).shape[-1]:]
    maps = keypoint_heatmaps(value(kp_driving), value(kp_source), spatial, variance=kp_variance, backend=backend)
    return maps.unsqueeze(2)


def create_sparse_motions(feature: Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> Tensor:
    """(N, K+1, *S, d): the identity grid, then T_k(z) = kp_source_k + J_s J_d^-1 (z - kp_driving_k).
    pyface's fused ops never build this tensor; it is here for code that reads it."""
    driving, source = value(kp_driving), value(kp_source)
    spatial = feature.shape[2:]
    grid = coordinate_grid(spatial, source.dtype, source.device)
    offsets = grid - _as_grid_offsets(driving, len(spatial))  # (N, K, *S, d)
    relative = jacobian(kp_driving, kp_source)
    if relative is not None:
        offsets = (_as_grid_offsets(relative.flatten(2), len(spatial)).unflatten(-1, relative.shape[-2:])
                   @ offsets.unsqueeze(-1)).squeeze(-1)
    motions = offsets + _as_grid_offsets(source, len(spatial))
    identity = grid.expand(source.shape[0], 1, *grid.shape)
    return torch.cat([identity, motions], dim=1)


def create_deformed_feature(feature: Tensor, kp_driving: Keypoints, kp_source: Keypoints, *,
                            align_corners: bool = False, backend: str | None = None) -> Tensor:
    """(N, K+1, C, *S): the feature sampled under every motion (pyface.ops.sparse_motion_warp,
    which takes (kp_source, kp_driving, J_s J_d^-1)). The anchors' method takes the sparse-motion
    tensor; this takes the keypoints and forms the motions itself."""
    if isinstance(kp_driving, Tensor) and kp_driving.dim() != 3:
        raise TypeError("create_deformed_feature takes the keypoints (kp_driving, kp_source), not the sparse "
                        f"motions (got a {kp_driving.dim()}-D tensor): the fused op forms the motions itself")
    return sparse_motion_warp(feature, value(kp_source), value(kp_driving), jacobian(kp_driving, kp_source),
                              align_corners=align_corners, backend=backend)


def deform_input(inp: Tensor, deformation: Tensor, align_corners: bool = False) -> Tensor:
    """grid_sample(inp, deformation), the deformation bi/trilinearly resized to inp's size first
    when they differ (the generators' deform_input)."""
    return _motion.deform_input(inp, deformation, align_corners)


def warp(feature: Tensor, mask: Tensor, kp_driving: Keypoints, kp_source: Keypoints, *, align_corners: bool = False,
         backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(feature warped, deformation (N, *S, d)) from the softmaxed mask (N, K+1, *S) in one fused
    pass (pyface.ops.keypoint_warp): the anchors' mask-weighted sum of the sparse motions followed
    by deform_input, at the mask's size."""
    return keypoint_warp(feature, value(kp_source), value(kp_driving), mask, jacobian(kp_driving, kp_source),
                         align_corners=align_corners, return_deformation=True, backend=backend)
