"""A small landmark regressor: image -> pyface.data.LANDMARKS. The style-aware pipeline reads
with it what it cannot be told: the landmarks of the face to animate, and the mouth of every
frame of the style source (to pick the style references by the key motion templates); its
evaluation reads the speaking style of generated frames with it, frozen."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyface.data.faces import LANDMARKS
from pyface.models.style_aware import _check_images, _down


class FaceReader(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N, 9, 2) landmarks in [-1, 1] image coordinates: strided
    conv blocks and a linear head on the flattened (not pooled: where a part is matters) map.
    Images are size x size (64 by default), size a multiple of 2**blocks."""

    def __init__(self, size: int = 64, width: int = 16, blocks: int = 4):
        super().__init__()
        self.size = size
        widths = [width * 2**i for i in range(blocks)]
        self.encoder = nn.Sequential(*[_down(c_in, c_out) for c_in, c_out in zip([3, *widths], widths)])
        cells = (size // 2**blocks) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * cells, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, len(LANDMARKS) * 2))

    def forward(self, image: Tensor) -> Tensor:
        _check_images("FaceReader", image=image)
        if tuple(image.shape[2:]) != (self.size, self.size):
            raise ValueError(f"FaceReader: images must be {self.size} x {self.size}, got {tuple(image.shape[2:])}")
        return self.head(self.encoder(image)).view(-1, len(LANDMARKS), 2)

    @torch.no_grad()
    def read(self, images: Tensor, batch: int = 64) -> Tensor:
        """Landmarks of any number of images, in batches, in eval mode."""
        mode = self.training
        self.eval()
        try:
            return torch.cat([self(images[i:i + batch]) for i in range(0, images.shape[0], batch)])
        finally:
            self.train(mode)
