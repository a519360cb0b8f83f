"""The coordinate convention of the keypoint ops, shared by the reference, the models and
the kernels (csrc/coordinate_grid.h): coordinates in [-1, 1], the last dim ordered (x, y[, z]),
i.e. (W, H[, D]), as grid_sample reads them."""
from __future__ import annotations

import torch


def make_coordinate_grid(spatial_size, dtype, device) -> torch.Tensor:
    """(*spatial_size, d): the identity grid, each axis torch.linspace(-1, 1, size), the last
    dim ordered (x, y[, z])."""
    axes = [torch.linspace(-1, 1, size, dtype=dtype, device=device) for size in spatial_size]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh[::-1], dim=-1)
