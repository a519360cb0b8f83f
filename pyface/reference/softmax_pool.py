"""Spatial softmax attention pooling in plain PyTorch: the readable definition (SPEC section 2)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from pyface import _checks

OP = "softmax_pool"


def check_args(scores, values) -> None:
    """Everything about the arguments that can be checked without reading tensor data."""
    _checks.floating(OP, "scores", scores)
    _checks.floating(OP, "values", values)
    if values.dtype != scores.dtype:
        raise TypeError(f"{OP}: values must have scores' dtype {scores.dtype}, got {values.dtype}")
    if not 3 <= values.dim() <= 5:
        raise ValueError(f"{OP}: values must be (N, C, *S) with 1 to 3 spatial dims, got shape {tuple(values.shape)}")
    n, spatial = values.shape[0], tuple(values.shape[2:])
    if tuple(scores.shape) not in ((n, *spatial), (n, 1, *spatial)):
        raise ValueError(
            f"{OP}: scores must be (N, *S) = {(n, *spatial)} or (N, 1, *S) to match values of shape "
            f"{tuple(values.shape)}, got {tuple(scores.shape)}"
        )
    _checks.same_device(OP, scores=scores, values=values)


def softmax_pool(scores, values, *, return_attention=False, backend=None) -> Tensor | tuple[Tensor, Tensor]:
    """a = softmax of scores over all positions of S; pooled (N, C) = sum_s a_s * values[:, :, s].
    Returns pooled, or (pooled, a) with a shaped like scores. `backend` is accepted for
    signature parity with pyface.ops and ignored."""
    check_args(scores, values)
    positions = math.prod(values.shape[2:])  # not -1: N may be 0
    attention = torch.softmax(scores.reshape(scores.shape[0], positions), dim=1)
    pooled = (values.flatten(2) * attention.unsqueeze(1)).sum(dim=2)
    return (pooled, attention.view(scores.shape)) if return_attention else pooled
