"""Keypoint-driven feature warping in plain PyTorch, written the way the FOMM family writes
it: per-keypoint sparse motions on an expanded identity grid, a mask-weighted sum of them,
and grid_sample (docs/ops.md, keypoint_warp)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyface.contracts import checks
from pyface.contracts.grid import make_coordinate_grid


def sparse_motions(kp_source, kp_driving, jacobian, spatial, dtype, device) -> Tensor:
    """(N, K+1, *spatial, d): slot 0 the identity grid, slot k T_k(z) = kp_source_k + J_k (z - kp_driving_k)."""
    n, k, d = kp_source.shape
    ones = [1] * d
    identity = make_coordinate_grid(spatial, dtype, device).view(1, 1, *spatial, d)
    coordinate_grid = identity - kp_driving.view(n, k, *ones, d)
    if jacobian is not None:
        coordinate_grid = torch.matmul(jacobian.view(n, k, *ones, d, d), coordinate_grid.unsqueeze(-1)).squeeze(-1)
    driving_to_source = coordinate_grid + kp_source.view(n, k, *ones, d)
    identity_grid = identity.repeat(n, 1, *ones, 1)
    return torch.cat([identity_grid, driving_to_source], dim=1)


def sample(feature, positions, padding_mode, align_corners) -> Tensor:
    """grid_sample (bilinear in 2-D, trilinear in 3-D) with one rule where a position is not
    finite: the sample is NaN in every channel, the gradient reaching that position is NaN and
    the feature's gradient gets nothing from it. (torch's grid_sample gives NaN or 0 there by
    device and number of dims, and its CPU kernel crashes on NaN with padding_mode="border".)"""
    finite = torch.isfinite(positions).all(-1)  # (N, *S)
    sampled = F.grid_sample(feature, torch.where(finite.unsqueeze(-1), positions, 0), mode="bilinear",
                            padding_mode=padding_mode, align_corners=align_corners)
    # NaN in value and, from each channel, in d/d position where not finite (so not without
    # channels); 0 elsewhere
    poison = torch.zeros_like(sampled).masked_fill(~finite.unsqueeze(1), float("nan"))
    shift = (positions - positions.detach()).sum(-1).unsqueeze(1)  # 0, with d/d positions 1
    return torch.where(finite.unsqueeze(1), sampled, poison * shift)


def keypoint_warp(
    feature, kp_source, kp_driving, mask, jacobian=None, *, mask_logits=False, align_corners=False,
    padding_mode="zeros", return_deformation=False, backend=None,
) -> Tensor | tuple[Tensor, Tensor]:
    """deformation(z) = sum_k m_k(z) T_k(z), T_0(z) = z, T_k(z) = kp_source_k + J_k (z - kp_driving_k),
    m = mask (or softmax over dim 1 of it with mask_logits); output = grid_sample(feature,
    deformation), bilinear in 2-D, trilinear in 3-D, NaN where the deformation is not finite
    (`sample`). Returns the output (N, C, *S_out), or (output, deformation (N, *S_out, d)).
    `backend` is ignored (signature parity)."""
    checks.check_keypoint_warp(feature, kp_source, kp_driving, mask, jacobian, padding_mode)
    deformation = mask_weighted_deformation(kp_source, kp_driving, mask, jacobian, mask_logits)
    output = sample(feature, deformation, padding_mode, align_corners)
    return (output, deformation) if return_deformation else output


def mask_weighted_deformation(kp_source, kp_driving, mask, jacobian, mask_logits) -> Tensor:
    """(N, *S_out, d): sum_k m_k T_k(z), m = mask or its softmax over the K+1 motions."""
    spatial = tuple(mask.shape[2:])
    sparse = sparse_motions(kp_source, kp_driving, jacobian, spatial, mask.dtype, mask.device)  # (N, K+1, *S, d)
    weights = torch.softmax(mask, dim=1) if mask_logits else mask
    return (sparse * weights.unsqueeze(-1)).sum(dim=1)
