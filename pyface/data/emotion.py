"""Synthetic data for facial-emotion recognition with context (GLAMOR-Net's task): each
sample is a face crop whose expression follows its class, and a context image, the scene
with the face small in it and the face's box masked out, whose colours also depend on the
class (the cue the context branch is there to read). Deterministic per index."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pyface.data.faces import draw_faces, random_parameters
from pyface.models.glamor import CONTEXT_SIZE, FACE_SIZE

# The seven classes of FER-2013 / CAER-S and the expression each is drawn with:
# (mouth_open, smile, eye_open, brow_tilt).
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_EXPRESSIONS = torch.tensor([
    [0.10, -0.30, 0.60, 0.80],
    [0.20, -0.60, 0.35, 0.40],
    [0.50, -0.20, 1.00, -0.60],
    [0.30, 0.90, 0.60, 0.00],
    [0.00, -0.70, 0.50, -0.80],
    [0.90, 0.00, 1.00, -0.40],
    [0.05, 0.00, 0.70, 0.00],
])


def draw_emotion_batch(labels: Tensor, generator: torch.Generator, expression_noise: float = 0.15) -> dict[str, Tensor]:
    """Faces (N, 3, 96, 96) and contexts (N, 3, 112, 112) for emotion labels (N,) in [0, 7)."""
    n = labels.shape[0]
    expression = _EXPRESSIONS[labels] + expression_noise * torch.randn(n, 4, generator=generator)
    mouth_open, smile, eye_open, brow_tilt = expression.unbind(1)
    # the scene's tint depends on the class, loosely: a hue drawn around the class's own
    tint = torch.stack([(labels.float() / 7 + 0.3 * torch.rand(n, generator=generator)) % 1.0 for _ in range(3)], 1)
    tint = 0.25 + 0.5 * (tint + torch.tensor([0.0, 0.33, 0.66])) % 1.0
    face = random_parameters(n, generator, mouth_open=mouth_open.clamp(0, 1), smile=smile.clamp(-1, 1),
                             eye_open=eye_open.clamp(0, 1), brow_tilt=brow_tilt.clamp(-1, 1), background=tint)
    crops = draw_faces(face, (FACE_SIZE, FACE_SIZE))["image"]
    # the same face, small and somewhere in the scene; then its box is blacked out
    face.center_x = torch.rand(n, generator=generator) * 1.0 - 0.5
    face.center_y = torch.rand(n, generator=generator) * 1.0 - 0.5
    face.scale = 0.2 + 0.1 * torch.rand(n, generator=generator)
    scene = draw_faces(face, (CONTEXT_SIZE, CONTEXT_SIZE))["image"]
    coords = torch.linspace(-1, 1, CONTEXT_SIZE)
    inside_x = (coords.view(1, -1) - face.center_x.view(-1, 1)).abs() <= face.scale.view(-1, 1) * 0.8
    inside_y = (coords.view(1, -1) - face.center_y.view(-1, 1)).abs() <= face.scale.view(-1, 1) * 1.1
    box = inside_y.unsqueeze(2) & inside_x.unsqueeze(1)
    context = scene.masked_fill(box.unsqueeze(1), 0.0)
    noise = lambda t: (t + 0.03 * torch.randn(t.shape, generator=generator)).clamp(0, 1)  # noqa: E731
    return {"face": noise(crops), "context": noise(context)}


class SyntheticEmotionFaces(Dataset):
    """`length` samples, item i = {"face", "context", "label"}, the same for the same seed and i."""

    def __init__(self, length: int, seed: int = 0, expression_noise: float = 0.15):
        self.length, self.seed, self.expression_noise = length, seed, expression_noise

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} outside [0, {self.length})")
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = torch.randint(len(EMOTIONS), (1,), generator=generator)
        batch = draw_emotion_batch(label, generator, self.expression_noise)
        return {"face": batch["face"][0], "context": batch["context"][0], "label": label[0]}


def emotion_batch(batch_size: int, generator: torch.Generator, device=None) -> dict[str, Tensor]:
    """A fresh random batch, drawn in one go: {"face", "context", "label"} on `device`."""
    labels = torch.randint(len(EMOTIONS), (batch_size,), generator=generator)
    batch = draw_emotion_batch(labels, generator)
    return {"face": batch["face"].to(device), "context": batch["context"].to(device), "label": labels.to(device)}
