"""Masked weighted L1 loss in plain PyTorch: the readable definition (docs/ops.md, weighted_l1_loss)."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface.contracts import checks

OP = "weighted_l1_loss"


def effective_weight(input, weight=None, labels=None, class_weights=None) -> Tensor | None:
    """w = (weight or 1) * (class_weights[labels] or 1), broadcastable to input; None when all ones."""
    w = None if weight is None else weight.to(input.dtype)
    if labels is not None:
        pixel = class_weights.to(input.dtype)[labels.long()].unsqueeze(1)  # (N, 1, *S): same over channels
        w = pixel if w is None else w * pixel
    return w


def weighted_l1_loss(
    input, target, weight=None, *, labels=None, class_weights=None, reduction="mean", normalize="elements", backend=None
) -> Tensor:
    """reduction "none": w * |input - target|; "sum": its sum; "mean": the sum over D, with
    D = input.numel() (normalize="elements") or the sum of w broadcast to input (normalize="weight":
    a zero sum gives 0, a NaN sum makes the loss and every gradient NaN). `backend` is accepted
    for signature parity with pyface.ops and ignored."""
    checks.check_weighted_l1_loss(input, target, weight, labels, class_weights, reduction, normalize)
    if labels is not None and torch.compiler.is_compiling():
        labels = checks.labels_checked(OP, labels, class_weights.numel())
    elif labels is not None:
        checks.labels_in_range(OP, labels, class_weights.numel())
    w = effective_weight(input, weight, labels, class_weights)
    loss = (input - target).abs()
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    if normalize == "elements":
        return total / input.numel()
    denominator = w.expand(input.shape).sum() if w is not None else total.new_tensor(float(input.numel()))
    return total * inverse_or_zero(denominator)


def inverse_or_zero(total) -> Tensor:
    """1 / total, and 0 for a zero total; NaN stays NaN (1/1 in the branch not taken, so that
    no inf reaches a gradient)."""
    nonzero = total != 0
    return torch.where(nonzero, 1 / torch.where(nonzero, total, torch.ones_like(total)), 0.0)
