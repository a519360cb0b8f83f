"""Masked weighted L1 loss in plain PyTorch: the readable definition (SPEC section 1)."""
from __future__ import annotations

import torch
from torch import Tensor

from pyface import _checks

OP = "weighted_l1_loss"
REDUCTIONS = ("none", "sum", "mean")
NORMALIZATIONS = ("elements", "weight")


def check_args(input, target, weight, labels, class_weights, reduction, normalize) -> None:
    """Everything about the arguments that can be checked without reading tensor data."""
    _checks.floating(OP, "input", input)
    _checks.tensor(OP, "target", target)
    if target.dtype != input.dtype:
        raise TypeError(f"{OP}: target must have input's dtype {input.dtype}, got {target.dtype}")
    if not 3 <= input.dim() <= 5:
        raise ValueError(f"{OP}: input must be (N, C, *S) with 1 to 3 spatial dims, got shape {tuple(input.shape)}")
    if target.shape != input.shape:
        raise ValueError(f"{OP}: target shape {tuple(target.shape)} must equal input shape {tuple(input.shape)}")
    _checks.one_of(OP, "reduction", reduction, REDUCTIONS)
    _checks.one_of(OP, "normalize", normalize, NORMALIZATIONS)
    if weight is not None:
        _checks.floating(OP, "weight", weight)
        try:
            broadcast = torch.broadcast_shapes(weight.shape, input.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != input.shape:
            raise ValueError(
                f"{OP}: weight of shape {tuple(weight.shape)} is not broadcastable to input shape {tuple(input.shape)}"
            )
    if (labels is None) != (class_weights is None):
        given, missing = ("labels", "class_weights") if class_weights is None else ("class_weights", "labels")
        raise ValueError(f"{OP}: {given} was given without {missing}; pass both or neither")
    if labels is not None:
        _checks.integer_labels(OP, "labels", labels)
        expected = (input.shape[0], *input.shape[2:])
        if tuple(labels.shape) != expected:
            raise ValueError(f"{OP}: labels must have shape (N, *S) = {expected}, got {tuple(labels.shape)}")
        _checks.floating(OP, "class_weights", class_weights)
        if class_weights.dim() != 1 or class_weights.numel() == 0:
            raise ValueError(f"{OP}: class_weights must be a non-empty 1-D tensor, got shape {tuple(class_weights.shape)}")
    _checks.same_device(OP, input=input, target=target, weight=weight, labels=labels, class_weights=class_weights)


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
    check_args(input, target, weight, labels, class_weights, reduction, normalize)
    if labels is not None and torch.compiler.is_compiling():
        labels = _checks.labels_checked(OP, labels, class_weights.numel())
    elif labels is not None:
        _checks.labels_in_range(OP, labels, class_weights.numel())
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
