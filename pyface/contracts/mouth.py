"""Picking a character's style references: the four key motion templates of the mouth
(None: at rest, M: lips pressed, R: lips spread, O: rounded and open) and the similarity
search that finds, for each template, the frame of the character's video that matches it
best. Frames are described by mouth_descriptor: (opening, corner lift), both relative to
the mouth's width, so they compare across face sizes."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface.contracts.faces import LANDMARKS

TEMPLATE_NAMES = ("None", "M", "R", "O")
# (opening / width, corner lift / width) of each template
MOUTH_TEMPLATES = torch.tensor([
    [0.15, 0.00],   # None: at rest, lips just apart
    [0.00, -0.05],  # M: lips pressed together
    [0.30, 0.35],   # R: spread, corners up
    [0.90, 0.00],   # O: rounded, wide open
])


def mouth_descriptor(landmarks: Tensor) -> Tensor:
    """(..., 9, 2) landmarks in pyface.data.LANDMARKS order -> (..., 2) descriptors:
    (lip gap / mouth width, how far the corners sit above the upper lip's middle / width)."""
    index = {name: i for i, name in enumerate(LANDMARKS)}
    if landmarks.shape[-2:] != (len(LANDMARKS), 2):
        raise ValueError(f"mouth_descriptor: landmarks must be (..., {len(LANDMARKS)}, 2), got {tuple(landmarks.shape)}")
    left, right = landmarks[..., index["mouth_left"], :], landmarks[..., index["mouth_right"], :]
    upper, lower = landmarks[..., index["upper_lip"], :], landmarks[..., index["lower_lip"], :]
    width = (right - left).norm(dim=-1).clamp_min(1e-6)
    opening = (lower - upper).norm(dim=-1) - 0.02 * width / 0.5  # less the drawn lips' own gap
    lift = upper[..., 1] - (left[..., 1] + right[..., 1]) / 2  # image y grows downwards
    return torch.stack([opening.clamp_min(0) / width, lift / width], dim=-1)


def select_style_references(frame_descriptors: Tensor, templates: Tensor = MOUTH_TEMPLATES) -> Tensor:
    """For each template (P, F), the index of the frame (T, F) closest to it (Euclidean), ->
    (P,); batched: (N, T, F) -> (N, P)."""
    if frame_descriptors.dim() not in (2, 3) or frame_descriptors.shape[-1] != templates.shape[-1]:
        raise ValueError(f"select_style_references: frame_descriptors must be (T, F) or (N, T, F) with F = "
                         f"{templates.shape[-1]}, got {tuple(frame_descriptors.shape)}")
    if frame_descriptors.shape[-2] == 0:
        raise ValueError("select_style_references: no frames to choose from")
    templates = templates.to(frame_descriptors)
    distance = torch.cdist(templates.expand(*frame_descriptors.shape[:-2], *templates.shape), frame_descriptors)
    return distance.argmin(dim=-1)


def nearest_templates(frame_descriptors: Tensor, templates: Tensor = MOUTH_TEMPLATES) -> Tensor:
    """(..., F) descriptors -> (...) the index of the template each is closest to: which style
    pattern a frame's mouth matches (the style-aware loss's matched pattern)."""
    if frame_descriptors.shape[-1] != templates.shape[-1]:
        raise ValueError(f"nearest_templates: descriptors must end in {templates.shape[-1]}, "
                         f"got {tuple(frame_descriptors.shape)}")
    return torch.cdist(frame_descriptors.reshape(-1, templates.shape[-1]), templates.to(frame_descriptors)) \
        .argmin(dim=-1).view(frame_descriptors.shape[:-1])
