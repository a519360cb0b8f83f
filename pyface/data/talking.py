"""Synthetic data for the talking-head models: pairs of one drawn identity, once neutral and
frontal, once with another expression and head pose (the style-mapping task: render the
second from the first's appearance), with the second's face parsing."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from pyface.data.faces import draw_faces, random_parameters


def style_pair_batch(batch_size: int, generator: torch.Generator, size: int = 64, device=None) -> dict[str, Tensor]:
    """{"neutral", "reference": (N, 3, size, size) in [0, 1], "parsing": (N, size, size) uint8
    of the reference}."""
    n = batch_size

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    identity = random_parameters(n, generator)
    neutral = replace(identity, roll=torch.zeros(n), yaw=torch.zeros(n), mouth_open=torch.full((n,), 0.05),
                      smile=torch.zeros(n), eye_open=torch.full((n,), 0.75), brow_tilt=torch.zeros(n))
    reference = replace(identity, roll=uniform(-0.25, 0.25), yaw=uniform(-0.5, 0.5), mouth_open=uniform(0, 1),
                        smile=uniform(-1, 1), eye_open=uniform(0.2, 1), brow_tilt=uniform(-0.6, 0.6))
    drawn_neutral = draw_faces(neutral, (size, size))
    drawn_reference = draw_faces(reference, (size, size))
    return {"neutral": drawn_neutral["image"].to(device), "reference": drawn_reference["image"].to(device),
            "parsing": drawn_reference["parsing"].to(device)}
