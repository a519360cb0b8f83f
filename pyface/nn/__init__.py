"""Modules built on pyface.ops."""
from pyface.nn.attention import GlobalLocalAttention
from pyface.nn.losses import (
    CELEBAMASK_HQ_CLASSES,
    DynamicPixelWiseLoss,
    LowerFaceL1Loss,
    StyleAwarePhotometricLoss,
)
from pyface.nn.motion import DenseMotion, Hourglass, KeypointWarp

__all__ = [
    "CELEBAMASK_HQ_CLASSES",
    "DenseMotion",
    "DynamicPixelWiseLoss",
    "GlobalLocalAttention",
    "Hourglass",
    "KeypointWarp",
    "LowerFaceL1Loss",
    "StyleAwarePhotometricLoss",
]
