"""The dense-motion network's input in plain PyTorch, written the way the FOMM family writes
create_deformed_source_image: the feature repeated once per motion, the K+1 sparse motions
on an expanded identity grid, and one grid_sample over the (N*(K+1), C, *S) batch
(SPEC section 3)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyface import _checks
from pyface.reference.keypoint_warp import PADDING_MODES, sparse_motions

OP = "sparse_motion_warp"


def check_args(feature, kp_source, kp_driving, jacobian, padding_mode) -> None:
    """Everything about the arguments that can be checked without reading tensor data."""
    named = {"feature": feature, "kp_source": kp_source, "kp_driving": kp_driving, "jacobian": jacobian}
    for name, value in named.items():
        if value is not None:
            _checks.floating(OP, name, value)
            if value.dtype != feature.dtype:
                raise TypeError(f"{OP}: {name} must have feature's dtype {feature.dtype}, got {value.dtype}")
    if feature.dim() not in (4, 5):
        raise ValueError(f"{OP}: feature must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(feature.shape)}")
    n, dims = feature.shape[0], feature.dim() - 2
    if kp_source.dim() != 3 or kp_source.shape[0] != n or kp_source.shape[2] != dims:
        raise ValueError(
            f"{OP}: kp_source must be (N, K, {dims}) for a {dims}-D feature of batch {n}, got shape {tuple(kp_source.shape)}"
        )
    if kp_driving.shape != kp_source.shape:
        raise ValueError(
            f"{OP}: kp_driving shape {tuple(kp_driving.shape)} must equal kp_source shape {tuple(kp_source.shape)}"
        )
    k = kp_source.shape[1]
    if jacobian is not None and tuple(jacobian.shape) != (n, k, dims, dims):
        raise ValueError(f"{OP}: jacobian must be (N, K, d, d) = {(n, k, dims, dims)}, got shape {tuple(jacobian.shape)}")
    _checks.one_of(OP, "padding_mode", padding_mode, PADDING_MODES)
    _checks.same_device(OP, **named)


def sparse_motion_warp(feature, kp_source, kp_driving, jacobian=None, *, align_corners=False, padding_mode="zeros",
                       backend=None):
    """(N, K+1, C, *S): slot k is grid_sample(feature, T_k(identity grid)), slot 0 the feature
    resampled on the identity grid. `backend` is ignored (signature parity)."""
    check_args(feature, kp_source, kp_driving, jacobian, padding_mode)
    n, k, d = kp_source.shape
    c, spatial = feature.shape[1], tuple(feature.shape[2:])
    motions = sparse_motions(kp_source, kp_driving, jacobian, spatial, feature.dtype, feature.device)
    repeated = feature.unsqueeze(1).repeat(1, k + 1, *[1] * (d + 1)).view(n * (k + 1), c, *spatial)
    warped = F.grid_sample(repeated, motions.view(n * (k + 1), *spatial, d), mode="bilinear",
                           padding_mode=padding_mode, align_corners=align_corners)
    return warped.view(n, k + 1, c, *spatial)
