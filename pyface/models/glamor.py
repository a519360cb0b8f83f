"""GLAMOR-Net (Le et al., "Global-local attention for emotion recognition"): a face encoder
and a context encoder, Global-Local Attention pooling the context map under the face's
guidance (pyface.nn.GlobalLocalAttention, one fused call in eval mode), and the adaptive
fusion of the two features before the classifier."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyface.contracts.faces import CONTEXT_SIZE, FACE_SIZE
from pyface.nn import GlobalLocalAttention

ENCODER_WIDTHS = (32, 64, 128, 256, 256)


def encoder(in_channels: int = 3) -> nn.Sequential:
    """Five Conv3x3-BN-ReLU blocks of 32/64/128/256/256 filters, 2x2 max-pooling after the
    first four: 96x96 -> 6x6, 112x112 -> 7x7."""
    layers: list[nn.Module] = []
    for i, width in enumerate(ENCODER_WIDTHS):
        layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        if i < len(ENCODER_WIDTHS) - 1:
            layers.append(nn.MaxPool2d(2))
        in_channels = width
    return nn.Sequential(*layers)


def _score_net(features: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))


class GLAMORNet(nn.Module):
    """forward(face (N, 3, 96, 96), context (N, 3, 112, 112) with the face box masked out,
    return_attention=False) -> logits (N, num_classes), or (logits, attention (N, 7, 7)).

    The face feature is the encoder's global average; the context feature is the 7x7x256
    context map pooled by Global-Local Attention (score net Linear-ReLU-BN-ReLU-Linear on
    [face ; cell], hidden 128). The fusion scores each feature with its own small net,
    softmaxes the two scores, reweights the features by them and classifies their
    concatenation with 128-ReLU-Dropout(0.5)-classes. `backend` picks the attention's
    kernels (pyface.ops), e.g. "reference" for the eager formulation."""

    def __init__(self, num_classes: int = 7, attention_hidden: int = 128, fusion_hidden: int = 128,
                 dropout: float = 0.5, backend: str | None = None):
        super().__init__()
        width = ENCODER_WIDTHS[-1]
        self.num_classes = num_classes
        self.face_encoder = encoder()
        self.context_encoder = encoder()
        self.attention = GlobalLocalAttention(width, width, hidden=attention_hidden, backend=backend)
        self.face_score = _score_net(width, fusion_hidden)
        self.context_score = _score_net(width, fusion_hidden)
        self.classifier = nn.Sequential(nn.Linear(2 * width, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(128, num_classes))

    @staticmethod
    def _check(face: Tensor, context: Tensor) -> None:
        for name, image, size in (("face", face, FACE_SIZE), ("context", context, CONTEXT_SIZE)):
            if not isinstance(image, Tensor) or image.dim() != 4:
                raise ValueError(f"GLAMORNet: {name} must be an (N, 3, {size}, {size}) image batch, "
                                 f"got {getattr(image, 'shape', type(image).__name__)}")
            if image.shape[1] != 3:
                raise ValueError(f"GLAMORNet: {name} must have 3 channels (RGB), got {image.shape[1]}")
            if tuple(image.shape[2:]) != (size, size):
                raise ValueError(f"GLAMORNet: {name} must be {size}x{size}, got {tuple(image.shape[2:])}")
        if face.shape[0] != context.shape[0]:
            raise ValueError(f"GLAMORNet: face batch {face.shape[0]} != context batch {context.shape[0]}")

    def forward(self, face: Tensor, context: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        self._check(face, context)
        face_feature = self.face_encoder(face).mean(dim=(2, 3))  # (N, 256)
        context_feature, attention = self.attention(face_feature, self.context_encoder(context))
        scores = torch.cat([self.face_score(face_feature), self.context_score(context_feature)], dim=1)
        weights = torch.softmax(scores, dim=1)
        fused = torch.cat([face_feature * weights[:, :1], context_feature * weights[:, 1:]], dim=1)
        logits = self.classifier(fused)
        return (logits, attention) if return_attention else logits
