"""Spatial softmax attention pooling in plain PyTorch: the readable definition (docs/ops.md, softmax_pool)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from pyface.contracts import checks


def softmax_pool(scores, values, *, return_attention=False, backend=None) -> Tensor | tuple[Tensor, Tensor]:
    """a = softmax of scores over all positions of S; pooled (N, C) = sum_s a_s * values[:, :, s].
    Returns pooled, or (pooled, a) with a shaped like scores. `backend` is accepted for
    signature parity with pyface.ops and ignored."""
    checks.check_softmax_pool(scores, values)
    positions = math.prod(values.shape[2:])  # not -1: N may be 0
    attention = torch.softmax(scores.reshape(scores.shape[0], positions), dim=1)
    pooled = (values.flatten(2) * attention.unsqueeze(1)).sum(dim=2)
    return (pooled, attention.view(scores.shape)) if return_attention else pooled
