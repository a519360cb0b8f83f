"""Modules built on pyface.ops."""
from pyface.nn.losses import (
    CELEBAMASK_HQ_CLASSES,
    DynamicPixelWiseLoss,
    LowerFaceL1Loss,
    StyleAwarePhotometricLoss,
)

__all__ = ["CELEBAMASK_HQ_CLASSES", "DynamicPixelWiseLoss", "LowerFaceL1Loss", "StyleAwarePhotometricLoss"]
