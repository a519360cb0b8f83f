"""The style-aware generator's facial map: keypoints projected by a camera and, within each
semantic group (jaw, brows, eyes, nose, lips), consecutive keypoints joined by lines,
rasterised on the keypoints' device with anti-aliased edges."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# pyface.data.LANDMARKS's groups: brows and eyes alone, nose alone, the mouth's outline
DRAWN_FACE_CONNECTIONS = ((7,), (8,), (0,), (1,), (2,), (3, 5, 4, 6, 3))


def project(keypoints: Tensor, camera: Tensor | None = None) -> Tensor:
    """(N, K, 3) keypoints -> (N, K, 2) image points: camera (3, 4) or (N, 3, 4) maps
    homogeneous [x, y, z, 1] to [u w, v w, w]; without one, orthographic (drop z).
    (N, K, 2) keypoints are returned as they are."""
    if keypoints.shape[-1] == 2:
        return keypoints
    if camera is None:
        return keypoints[..., :2]
    if camera.shape[-2:] != (3, 4):
        raise ValueError(f"render_facial_map: camera must be (3, 4) or (N, 3, 4), got {tuple(camera.shape)}")
    homogeneous = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], dim=-1)
    projected = homogeneous @ camera.to(keypoints).transpose(-1, -2)
    return projected[..., :2] / projected[..., 2:].clamp_min(1e-6)


def render_facial_map(keypoints: Tensor, connections: Sequence[Sequence[int]], size: tuple[int, int],
                      camera: Tensor | None = None, thickness: float = 1.0) -> Tensor:
    """keypoints (N, K, 2 or 3) in [-1, 1] image coordinates (x right, y down) -> (N, 1, H, W)
    in [0, 1]: the polylines through each group of keypoint indices, `thickness` pixels
    wide; a group of one index is drawn as a dot."""
    if keypoints.dim() != 3 or keypoints.shape[-1] not in (2, 3):
        raise ValueError(f"render_facial_map: keypoints must be (N, K, 2 or 3), got {tuple(keypoints.shape)}")
    k = keypoints.shape[1]
    if any(not 0 <= i < k for group in connections for i in group):
        raise ValueError(f"render_facial_map: connections name keypoints outside [0, {k})")
    points = project(keypoints, camera)
    h, w = size
    scale = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=points.dtype, device=points.device)
    pixels = (points + 1) * scale  # in pixel units
    ys, xs = torch.meshgrid(torch.arange(h, dtype=points.dtype, device=points.device),
                            torch.arange(w, dtype=points.dtype, device=points.device), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1).view(1, h * w, 2)
    segments = [(group[i], group[min(i + 1, len(group) - 1)]) for group in connections
                for i in range(max(1, len(group) - 1))]
    canvas = torch.zeros(points.shape[0], h * w, dtype=points.dtype, device=points.device)
    for a, b in segments:  # distance of every pixel to the segment a-b
        start, end = pixels[:, a].unsqueeze(1), pixels[:, b].unsqueeze(1)
        direction = end - start
        length2 = (direction**2).sum(-1, keepdim=True).clamp_min(1e-12)
        t = (((grid - start) * direction).sum(-1, keepdim=True) / length2).clamp(0, 1)
        distance = (grid - start - t * direction).norm(dim=-1)
        canvas = torch.maximum(canvas, (thickness / 2 + 0.5 - distance).clamp(0, 1))
    return canvas.view(-1, 1, h, w)
