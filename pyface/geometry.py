"""Keypoint geometry of the face-vid2vid / LivePortrait family: head-pose bins to angles,
angles to a rotation matrix, the keypoint transformation C_k = s (c_k R + eps_k) + tau, and
FOMM's jacobian combination J_source @ inverse(J_driving). Plain batched torch: every
function runs on any device and is differentiable.

Keypoints are row vectors, as the anchors write them: c_k R multiplies (N, K, 3) keypoints
by (N, 3, 3) matrices on the right."""
from __future__ import annotations

import torch
from torch import Tensor

POSE_BINS = 66  # head-pose classifiers score yaw, pitch and roll in 66 bins of 3 degrees
_BIN_DEGREES = 3.0
_FIRST_BIN_DEGREES = -97.5  # bin i covers i * 3 - 99 .. i * 3 - 96 degrees; its centre is i * 3 - 97.5


def _check_float(name: str, value: Tensor) -> None:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {getattr(value, 'dtype', type(value).__name__)}")


def bins_to_degrees(logits: Tensor) -> Tensor:
    """(N, 66) head-pose bin logits -> (N,) degrees: the softmax expectation of the bin
    centres, i * 3 - 97.5 for bin i, as face-vid2vid's and LivePortrait's pose heads read them."""
    _check_float("logits", logits)
    if logits.dim() != 2 or logits.shape[1] != POSE_BINS:
        raise ValueError(f"logits must be (N, {POSE_BINS}), got shape {tuple(logits.shape)}")
    centres = torch.arange(POSE_BINS, dtype=logits.dtype, device=logits.device) * _BIN_DEGREES + _FIRST_BIN_DEGREES
    return torch.softmax(logits, dim=1) @ centres


def rotation_matrix(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """(N,) angles in degrees -> (N, 3, 3) R for row-vector keypoints: c R rotates c by
    pitch (about x) after yaw (about y) after roll (about z), i.e. R = (P Y Z)^T."""
    for name, angle in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
        _check_float(name, angle)
        if angle.dim() != 1:
            raise ValueError(f"{name} must be (N,) degrees, got shape {tuple(angle.shape)}")
    if not yaw.shape == pitch.shape == roll.shape:
        raise ValueError(f"yaw, pitch and roll must have one shape, got {tuple(yaw.shape)}, "
                         f"{tuple(pitch.shape)}, {tuple(roll.shape)}")
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)

    def matrix(*rows):
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    pitch_matrix = matrix((one, zero, zero), (zero, p.cos(), -p.sin()), (zero, p.sin(), p.cos()))
    yaw_matrix = matrix((y.cos(), zero, y.sin()), (zero, one, zero), (-y.sin(), zero, y.cos()))
    roll_matrix = matrix((r.cos(), -r.sin(), zero), (r.sin(), r.cos(), zero), (zero, zero, one))
    return (pitch_matrix @ yaw_matrix @ roll_matrix).transpose(1, 2)


def transform_keypoints(canonical: Tensor, rotation: Tensor, translation: Tensor,
                        expression: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """C_k = s (c_k R + eps_k) + tau for canonical keypoints c (N, K, 3), R (N, 3, 3) (from
    rotation_matrix), tau (N, 3), expression offsets eps (N, K, 3) (none: 0) and scale s (N,)
    (none: 1). -> (N, K, 3)."""
    _check_float("canonical", canonical)
    if canonical.dim() != 3 or canonical.shape[2] != 3:
        raise ValueError(f"canonical keypoints must be (N, K, 3), got shape {tuple(canonical.shape)}")
    n, k, _ = canonical.shape
    expected = {"rotation": (rotation, (n, 3, 3)), "translation": (translation, (n, 3)),
                "expression": (expression, (n, k, 3)), "scale": (scale, (n,))}
    for name, (value, shape) in expected.items():
        if value is None:
            continue
        _check_float(name, value)
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must be {shape} for canonical keypoints {tuple(canonical.shape)}, "
                             f"got shape {tuple(value.shape)}")
    moved = canonical @ rotation
    if expression is not None:
        moved = moved + expression
    if scale is not None:
        moved = moved * scale.view(n, 1, 1)
    return moved + translation.view(n, 1, 3)


def combine_jacobians(jacobian_source: Tensor, jacobian_driving: Tensor) -> Tensor:
    """FOMM's per-keypoint J_k = J_source,k @ inverse(J_driving,k), both (N, K, d, d)."""
    for name, value in (("jacobian_source", jacobian_source), ("jacobian_driving", jacobian_driving)):
        _check_float(name, value)
        if value.dim() != 4 or value.shape[2] != value.shape[3]:
            raise ValueError(f"{name} must be (N, K, d, d), got shape {tuple(value.shape)}")
    if jacobian_source.shape != jacobian_driving.shape:
        raise ValueError(f"jacobian_source {tuple(jacobian_source.shape)} and jacobian_driving "
                         f"{tuple(jacobian_driving.shape)} must have one shape")
    return jacobian_source @ torch.linalg.inv(jacobian_driving)
