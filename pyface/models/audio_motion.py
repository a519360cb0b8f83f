"""Audio to motion for the style-aware talking head: per-frame audio features -> per-frame
landmark offsets, with the seed's manifold projection of the audio features onto a
speaker's own feature database (each feature replaced by its locally-linear reconstruction
from its k nearest neighbours there, as in locally linear embedding)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def manifold_projection(features: Tensor, database: Tensor, k: int = 10, regularization: float = 1e-3) -> Tensor:
    """features (..., F), database (M, F) -> (..., F): each feature's reconstruction
    sum_j w_j d_j from its k nearest database entries d_j, with the weights that minimise
    |x - sum_j w_j d_j|^2 subject to sum_j w_j = 1 (the local Gram system, regularised by
    `regularization` times its trace). Batched on the features' device; differentiable in
    both arguments."""
    if features.dim() < 1 or database.dim() != 2 or features.shape[-1] != database.shape[1]:
        raise ValueError(f"manifold_projection: features (..., F) and database (M, F) must share F, got "
                         f"{tuple(features.shape)} and {tuple(database.shape)}")
    if not 1 <= k <= database.shape[0]:
        raise ValueError(f"manifold_projection: k must be in [1, {database.shape[0]}] (the database size), got {k}")
    if features.device != database.device or features.dtype != database.dtype:
        raise ValueError("manifold_projection: features and database must share device and dtype")
    flat = features.reshape(-1, features.shape[-1])
    nearest = torch.cdist(flat, database).topk(k, dim=1, largest=False).indices  # (B, k)
    neighbours = database[nearest]  # (B, k, F)
    offsets = neighbours - flat.unsqueeze(1)
    gram = offsets @ offsets.transpose(1, 2)  # (B, k, k)
    trace = gram.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-12).view(-1, 1, 1)
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    weights = torch.linalg.solve(gram + regularization * trace * eye, torch.ones_like(gram[..., :1]))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return (weights * neighbours).sum(dim=1).view(features.shape)


class AudioMotionGenerator(nn.Module):
    """audio (N, T, audio_dim) -> motion (N, T, num_points, 2): a per-frame encoder, an
    optional manifold projection onto a speaker's database of encoded features, a 2-layer
    GRU over time and a linear head. `encode` gives the features a database is built from."""

    def __init__(self, audio_dim: int, num_points: int, hidden: int = 128, feature_dim: int = 64):
        super().__init__()
        self.audio_dim, self.num_points = audio_dim, num_points
        self.encoder = nn.Sequential(nn.Linear(audio_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, feature_dim))
        self.temporal = nn.GRU(feature_dim, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, num_points * 2)

    def encode(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3 or audio.shape[2] != self.audio_dim:
            raise ValueError(f"AudioMotionGenerator: audio must be (N, T, {self.audio_dim}), got {tuple(audio.shape)}")
        return self.encoder(audio)

    def forward(self, audio: Tensor, database: Tensor | None = None, k: int = 10) -> Tensor:
        features = self.encode(audio)
        if database is not None:
            features = manifold_projection(features, database, k)
        hidden, _ = self.temporal(features)
        n, t, _ = hidden.shape
        return self.head(hidden).view(n, t, self.num_points, 2)
