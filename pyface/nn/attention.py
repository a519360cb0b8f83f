"""GLAMOR-Net's Global-Local Attention as a module, on pyface.ops.global_local_attention."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyface.distributed import GlobalBatchNorm, global_batch_statistics, update_running_statistics
from pyface.ops import global_local_attention


class GlobalLocalAttention(nn.Module):
    """Pools a context map (N, context_dim, *S) under the guidance of a face vector
    (N, face_dim) with GLAMOR-Net's score net, Linear-ReLU-BatchNorm-ReLU-Linear on
    [face ; cell]. Returns (pooled (N, context_dim), attention (N, *S)).

    In eval mode the BatchNorm is folded into a per-unit scale and shift and the module is
    one fused call. In training mode the BatchNorm normalises with the statistics of the
    batch over every cell, as nn.BatchNorm1d does on the (N * cells, hidden) activations,
    and updates its running statistics: a first pass computes the first layer's activations
    for those statistics (still without the concatenation), the fused call does the rest.
    """

    def __init__(self, face_dim: int, context_dim: int, hidden: int = 128, batchnorm: bool = True,
                 backend: str | None = None):
        super().__init__()
        self.face_dim, self.context_dim, self.hidden, self.backend = face_dim, context_dim, hidden, backend
        self.linear1 = nn.Linear(face_dim + context_dim, hidden)
        self.batchnorm = nn.BatchNorm1d(hidden) if batchnorm else None
        self.linear2 = nn.Linear(hidden, 1)

    def forward(self, face: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        scale = shift = None
        if self.batchnorm is not None:
            mean, var = self._batchnorm_statistics(face, context)
            scale = self.batchnorm.weight * torch.rsqrt(var + self.batchnorm.eps)
            shift = self.batchnorm.bias - mean * scale
        return global_local_attention(
            face, context, self.linear1.weight, self.linear1.bias, self.linear2.weight.view(-1), self.linear2.bias,
            hidden_scale=scale, hidden_shift=shift, return_attention=True, backend=self.backend,
        )

    def _batchnorm_statistics(self, face: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        bn = self.batchnorm
        if not (self.training or bn.running_mean is None):
            return bn.running_mean, bn.running_var
        weight, bias = self.linear1.weight, self.linear1.bias
        face_term = torch.addmm(bias, face, weight[:, : self.face_dim].t())  # (N, Hd)
        cells = context.flatten(2)  # (N, Dc, P)
        hidden = torch.relu(torch.matmul(weight[:, self.face_dim:], cells) + face_term.unsqueeze(2))  # (N, Hd, P)
        if isinstance(bn, GlobalBatchNorm):  # --sync-bn: the statistics of every rank's shard together
            mean, var, count = global_batch_statistics(hidden, (0, 2))
        else:
            var, mean = torch.var_mean(hidden, dim=(0, 2), correction=0)
            count = hidden.shape[0] * hidden.shape[2]
        if self.training and bn.track_running_stats:
            update_running_statistics(bn, mean, var, count)
        return mean, var

    def extra_repr(self) -> str:
        return f"face_dim={self.face_dim}, context_dim={self.context_dim}, hidden={self.hidden}, " \
               f"batchnorm={self.batchnorm is not None}"


__all__ = ["GlobalLocalAttention"]
