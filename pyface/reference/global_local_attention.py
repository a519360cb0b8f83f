"""GLAMOR-Net's Global-Local Attention in plain PyTorch, written the way the anchor writes it:
the face vector is repeated for every context cell and concatenated with it, and a small
score net runs on the concatenation (docs/ops.md, global_local_attention)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyface.contracts import checks


def global_local_attention(
    face, context, w1, b1, w2, b2, *, hidden_scale=None, hidden_shift=None, return_attention=False, backend=None
) -> Tensor | tuple[Tensor, Tensor]:
    """h = relu(w1 [face ; cell] + b1), then h = relu(hidden_scale * h + hidden_shift) when given;
    score = w2 . h + b2; a = softmax over the cells; pooled (N, Dc) = sum a * cell. Returns
    pooled, or (pooled, a) with a of shape (N, *S). `backend` is ignored (signature parity)."""
    checks.check_global_local_attention(face, context, w1, b1, w2, b2, hidden_scale, hidden_shift)
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
