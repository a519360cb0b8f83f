"""A small landmark detector: image -> pyface.data.LANDMARKS. The style-aware pipeline reads
with it what it cannot be told: the landmarks of the face to animate, and the mouth of every
frame of the style source (to pick the style references by the key motion templates); its
evaluation reads the speaking style of generated frames with it, frozen."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyface._modes import eval_mode
from pyface.contracts.faces import LANDMARKS
from pyface.contracts.grid import make_coordinate_grid
from pyface.models.blocks import check_images, down_block, up_block


class FaceReader(nn.Module):
    """(N, 3, H, W) in [0, 1] -> {"landmarks": (N, 9, 2) in [-1, 1] image coordinates (x
    right, y down), "mouth": (N, 2) the mouth's descriptor (pyface.models.mouth_descriptor:
    opening and corner lift, relative to the mouth's width)}. A small U-Net (its input given
    the pixel coordinates as two more channels, so that left and right tell apart) predicts
    one heatmap per landmark at half resolution, each landmark its heatmap's softmax-weighted
    mean position (soft-argmax); the descriptor is regressed from the pooled bottleneck: the
    corners' lift, a pixel or two at 64 x 64, is read in the lip's curve, where the corner
    landmarks' errors (about a pixel) left it unread. Images are size x size (64 by
    default), size a multiple of 8."""

    def __init__(self, size: int = 64, width: int = 16):
        super().__init__()
        if size % 8:
            raise ValueError(f"FaceReader: size must be a multiple of 8, got {size}")
        self.size = size
        self.stem = nn.Sequential(nn.Conv2d(5, width, 3, padding=1), nn.ReLU(inplace=True))
        self.down = nn.ModuleList([down_block(width, 2 * width), down_block(2 * width, 4 * width),
                                   down_block(4 * width, 8 * width)])
        self.up = nn.ModuleList([up_block(8 * width, 4 * width), up_block(8 * width, 2 * width)])
        self.heatmaps = nn.Conv2d(4 * width, len(LANDMARKS), 3, padding=1)
        self.mouth = nn.Sequential(nn.Linear(8 * width, 64), nn.ReLU(inplace=True), nn.Linear(64, 2))

    def forward(self, image: Tensor) -> Tensor:
        check_images("FaceReader", image=image)
        if tuple(image.shape[2:]) != (self.size, self.size):
            raise ValueError(f"FaceReader: images must be {self.size} x {self.size}, got {tuple(image.shape[2:])}")
        n = image.shape[0]
        # make_coordinate_grid gives (x, y) in [-1, 1] in the last dim
        coordinates = make_coordinate_grid((self.size, self.size), image.dtype, image.device)
        x = self.stem(torch.cat([image, coordinates.permute(2, 0, 1).expand(n, -1, -1, -1)], dim=1))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()
        mouth = self.mouth(x.mean(dim=(2, 3)))
        for block in self.up:
            x = torch.cat([block(x), skips.pop()], dim=1)
        heat = self.heatmaps(x)  # (N, 9, size / 2, size / 2)
        weights = torch.softmax(heat.flatten(2), dim=2).unsqueeze(-1)
        grid = make_coordinate_grid(tuple(heat.shape[2:]), heat.dtype, heat.device).view(1, 1, -1, 2)
        return {"landmarks": (weights * grid).sum(dim=2), "mouth": mouth}

    @torch.no_grad()
    def read(self, images: Tensor, batch: int = 64) -> dict[str, Tensor]:
        """The reading of any number of images, in batches, in eval mode."""
        with eval_mode(self):
            readings = [self(images[i:i + batch]) for i in range(0, images.shape[0], batch)]
        return {name: torch.cat([reading[name] for reading in readings]) for name in readings[0]}
