"""Modules built on pyface.ops."""
from pyface.nn.attention import GlobalLocalAttention
from pyface.nn.losses import (
    CELEBAMASK_HQ_CLASSES,
    DynamicPixelWiseLoss,
    LowerFaceL1Loss,
    StyleAwarePhotometricLoss,
)

__all__ = [
    "CELEBAMASK_HQ_CLASSES",
    "DynamicPixelWiseLoss",
    "GlobalLocalAttention",
    "LowerFaceL1Loss",
    "StyleAwarePhotometricLoss",
]
