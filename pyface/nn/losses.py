"""The loss modules of the talking-head models, each one call of pyface.ops.weighted_l1_loss."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from pyface.contracts.faces import CELEBAMASK_HQ_CLASSES
from pyface.ops import weighted_l1_loss

# The style-aware photometric loss weights: mouth and lips 5, eyes 3, skin 1, all else 0.
STYLE_AWARE_WEIGHTS = {"mouth": 5.0, "u_lip": 5.0, "l_lip": 5.0, "l_eye": 3.0, "r_eye": 3.0, "skin": 1.0}


class StyleAwarePhotometricLoss(nn.Module):
    """Region-weighted L1 between a generated frame and its style pattern image, weighted by
    face-parsing labels (N, *S) in CelebAMask-HQ order.

    weights: overrides by class name, e.g. {"nose": 1.0}; classes not named keep the defaults
    (mouth and lips 5, eyes 3, skin 1, all else 0)."""

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        reduction: str = "mean",
        normalize: str = "elements",
        backend: str | None = None,
    ):
        super().__init__()
        table = dict(STYLE_AWARE_WEIGHTS)
        for name, value in (weights or {}).items():
            if name not in CELEBAMASK_HQ_CLASSES:
                raise ValueError(f"StyleAwarePhotometricLoss: unknown class {name!r}; expected one of {CELEBAMASK_HQ_CLASSES}")
            table[name] = float(value)
        self.register_buffer(
            "class_weights", torch.tensor([table.get(name, 0.0) for name in CELEBAMASK_HQ_CLASSES]), persistent=False
        )
        self.reduction, self.normalize, self.backend = reduction, normalize, backend

    def forward(self, input: Tensor, target: Tensor, labels: Tensor) -> Tensor:
        return weighted_l1_loss(
            input, target, labels=labels, class_weights=self.class_weights,
            reduction=self.reduction, normalize=self.normalize, backend=self.backend,
        )


class DynamicPixelWiseLoss(nn.Module):
    """ATVGnet's dynamic pixel-wise loss: mean(|x - y| * (att.detach() + beta)), with att
    (N, 1, *S) or (N, T, 1, H, W) broadcast over channels and D = input.numel()."""

    def __init__(self, beta: float = 0.5, *, backend: str | None = None):
        super().__init__()
        self.beta, self.backend = beta, backend

    def forward(self, input: Tensor, target: Tensor, attention: Tensor) -> Tensor:
        return weighted_l1_loss(input, target, attention.detach() + self.beta, backend=self.backend)


class LowerFaceL1Loss(nn.Module):
    """The temporal GAN's L1 on the lower half of the face: mean(|x - y|[..., H//2:, :]),
    D counting only the lower half. Frames (N, C, H, W) or (N, T, C, H, W)."""

    def __init__(self, *, backend: str | None = None):
        super().__init__()
        self.backend = backend

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        if input.dim() < 4:
            raise ValueError(f"LowerFaceL1Loss: input must be (N, C, H, W) or (N, T, C, H, W), got {tuple(input.shape)}")
        half = input.shape[-2] // 2
        return weighted_l1_loss(input[..., half:, :], target[..., half:, :], backend=self.backend)
