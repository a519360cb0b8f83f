"""Building blocks the image models share: the input check and the conv blocks of their
encoders and decoders."""
from __future__ import annotations

from torch import Tensor, nn


def check_images(owner: str, **images: Tensor) -> None:
    """Each image an (N, 3, H, W) RGB batch, all of one shape; errors name `owner`."""
    shapes = set()
    for name, image in images.items():
        if not isinstance(image, Tensor) or image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"{owner}: {name} must be an (N, 3, H, W) RGB batch, "
                             f"got {tuple(getattr(image, 'shape', ()))}")
        shapes.add(tuple(image.shape))
    if len(shapes) > 1:
        raise ValueError(f"{owner}: the images must have one shape, got {sorted(shapes)}")


def down_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3x3 - BatchNorm - ReLU, then half the size (average pooling)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True), nn.AvgPool2d(2))


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """twice the size (nearest), then conv 3x3 - BatchNorm - ReLU."""
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
