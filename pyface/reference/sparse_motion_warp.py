"""The dense-motion network's input in plain PyTorch, written the way the FOMM family writes
create_deformed_source_image: the feature repeated once per motion, the K+1 sparse motions
on an expanded identity grid, and one grid_sample over the (N*(K+1), C, *S) batch
(docs/ops.md, sparse_motion_warp)."""
from __future__ import annotations

from torch import Tensor

from pyface.contracts import checks
from pyface.reference.keypoint_warp import sample, sparse_motions


def sparse_motion_warp(feature, kp_source, kp_driving, jacobian=None, *, align_corners=False, padding_mode="zeros",
                       backend=None) -> Tensor:
    """(N, K+1, C, *S): slot k is grid_sample(feature, T_k(identity grid)), slot 0 the feature
    resampled on the identity grid; NaN where a motion is not finite (keypoint_warp's `sample`).
    `backend` is ignored (signature parity)."""
    checks.check_sparse_motion_warp(feature, kp_source, kp_driving, jacobian, padding_mode)
    repeated, motions = motion_batch(feature, kp_source, kp_driving, jacobian)
    n, k = kp_source.shape[:2]
    return sample(repeated, motions, padding_mode, align_corners).view(n, k + 1, *feature.shape[1:])


def motion_batch(feature, kp_source, kp_driving, jacobian) -> tuple[Tensor, Tensor]:
    """The feature repeated once per motion, (N*(K+1), C, *S), and the K+1 motions on the
    identity grid, (N*(K+1), *S, d): one grid_sample batch."""
    n, k, d = kp_source.shape
    c, spatial = feature.shape[1], tuple(feature.shape[2:])
    motions = sparse_motions(kp_source, kp_driving, jacobian, spatial, feature.dtype, feature.device)
    repeated = feature.unsqueeze(1).repeat(1, k + 1, *[1] * (d + 1)).view(n * (k + 1), c, *spatial)
    return repeated, motions.view(n * (k + 1), *spatial, d)
