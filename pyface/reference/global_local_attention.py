"""GLAMOR-Net's Global-Local Attention in plain PyTorch, written the way the anchor writes it:
the face vector is repeated for every context cell and concatenated with it, and a small
score net runs on the concatenation (SPEC section 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyface import _checks

OP = "global_local_attention"


def check_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift) -> None:
    """Everything about the arguments that can be checked without reading tensor data."""
    named = {"face": face, "context": context, "w1": w1, "b1": b1, "w2": w2, "b2": b2,
             "hidden_scale": hidden_scale, "hidden_shift": hidden_shift}
    for name, value in named.items():
        if value is not None:
            _checks.floating(OP, name, value)
            if value.dtype != face.dtype:
                raise TypeError(f"{OP}: {name} must have face's dtype {face.dtype}, got {value.dtype}")
    if face.dim() != 2:
        raise ValueError(f"{OP}: face must be (N, Df), got shape {tuple(face.shape)}")
    if not 3 <= context.dim() <= 5:
        raise ValueError(f"{OP}: context must be (N, Dc, *S) with 1 to 3 spatial dims, got shape {tuple(context.shape)}")
    if context.shape[0] != face.shape[0]:
        raise ValueError(f"{OP}: face and context must have one batch size, got {face.shape[0]} and {context.shape[0]}")
    face_dim, context_dim = face.shape[1], context.shape[1]
    if w1.dim() != 2 or w1.shape[1] != face_dim + context_dim:
        raise ValueError(
            f"{OP}: w1 must be (hidden, Df + Dc) = (hidden, {face_dim + context_dim}), got shape {tuple(w1.shape)}"
        )
    hidden = w1.shape[0]
    for name in ("b1", "w2", "hidden_scale", "hidden_shift"):
        value = named[name]
        if value is not None and tuple(value.shape) != (hidden,):
            raise ValueError(f"{OP}: {name} must have shape (hidden,) = ({hidden},), got {tuple(value.shape)}")
    if b2.numel() != 1 or b2.dim() > 1:
        raise ValueError(f"{OP}: b2 must be a scalar or of shape (1,), got shape {tuple(b2.shape)}")
    if (hidden_scale is None) != (hidden_shift is None):
        given, missing = ("hidden_scale", "hidden_shift") if hidden_shift is None else ("hidden_shift", "hidden_scale")
        raise ValueError(f"{OP}: {given} was given without {missing}; pass both or neither")
    _checks.same_device(OP, **named)


def global_local_attention(
    face, context, w1, b1, w2, b2, *, hidden_scale=None, hidden_shift=None, return_attention=False, backend=None
) -> Tensor | tuple[Tensor, Tensor]:
    """h = relu(w1 [face ; cell] + b1), then h = relu(hidden_scale * h + hidden_shift) when given;
    score = w2 . h + b2; a = softmax over the cells; pooled (N, Dc) = sum a * cell. Returns
    pooled, or (pooled, a) with a of shape (N, *S). `backend` is ignored (signature parity)."""
    check_args(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
    n, spatial = context.shape[0], context.shape[2:]
    cells = context.flatten(2).transpose(1, 2)  # (N, P, Dc)
    repeated_face = face.unsqueeze(1).repeat(1, cells.shape[1], 1)  # (N, P, Df)
    concatenated = torch.cat([repeated_face, cells], dim=2)  # (N, P, Df + Dc)
    hidden = torch.relu(F.linear(concatenated, w1, b1))
    if hidden_scale is not None:
        hidden = torch.relu(hidden * hidden_scale + hidden_shift)
    scores = F.linear(hidden, w2.unsqueeze(0), b2.reshape(1)).squeeze(2)  # (N, P)
    attention = torch.softmax(scores, dim=1)
    pooled = (cells * attention.unsqueeze(2)).sum(dim=1)
    return (pooled, attention.view(n, *spatial)) if return_attention else pooled
