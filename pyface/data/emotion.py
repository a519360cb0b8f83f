"""Synthetic data for facial-emotion recognition with context (GLAMOR-Net's task): each
sample is a face crop whose expression follows its class, and a context image, the scene
with the face small in it and the face's box masked out. In the ambiguous samples (a share
of AMBIGUOUS_SHARE) the face barely shows its class or is half hidden, and the scene's
colour tells it (the cue the context branch is there to read). Deterministic per index."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pyface.contracts.faces import CONTEXT_SIZE, FACE_SIZE
from pyface.data.faces import draw_faces, random_parameters

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


# A share of the samples is ambiguous (GLAMOR-Net's case for reading the context): the face
# shows almost no expression, or its lower half is hidden behind an occluder, and the scene
# alone says which emotion it is. In the clear samples the scene's hue is random.
AMBIGUOUS_SHARE = 0.3
_NEUTRAL = _EXPRESSIONS[EMOTIONS.index("neutral")]


def _scene_tint(labels: Tensor, ambiguous: Tensor, generator: torch.Generator) -> Tensor:
    """(N, 3) background colours: for ambiguous samples a hue within +-0.03 of the class's
    own (classes lie 1/7 apart), for clear ones any hue."""
    n = labels.shape[0]
    class_hue = labels.float() / len(EMOTIONS) + 0.06 * (torch.rand(n, generator=generator) - 0.5)
    any_hue = torch.rand(n, generator=generator)
    hue = torch.where(ambiguous, class_hue, any_hue) % 1.0
    # three phase-shifted triangle waves of the hue: a colour wheel with RGB in [0.15, 0.85]
    phase = (hue.view(-1, 1) + torch.tensor([0.0, 1 / 3, 2 / 3])) % 1.0
    return 0.15 + 0.7 * (2 * (phase - 0.5).abs())


def draw_emotion_batch(labels: Tensor, generator: torch.Generator, expression_noise: float = 0.15,
                       ambiguous: Tensor | None = None) -> dict[str, Tensor]:
    """Faces (N, 3, 96, 96) and contexts (N, 3, 112, 112) for emotion labels (N,) in [0, 7);
    `ambiguous` (N,) bool marks the samples drawn ambiguous (default: none)."""
    n = labels.shape[0]
    ambiguous = torch.zeros(n, dtype=torch.bool) if ambiguous is None else ambiguous
    expression = _EXPRESSIONS[labels] + expression_noise * torch.randn(n, 4, generator=generator)
    # ambiguous faces: a tenth of the expression, or the whole one behind an occluder
    occluded = ambiguous & (torch.rand(n, generator=generator) < 0.5)
    weak = _NEUTRAL + 0.1 * (_EXPRESSIONS[labels] - _NEUTRAL) + expression_noise * torch.randn(n, 4, generator=generator)
    expression = torch.where((ambiguous & ~occluded).view(-1, 1), weak, expression)
    mouth_open, smile, eye_open, brow_tilt = expression.unbind(1)
    # the crop's background is a colour of its own: the scene's is for the context alone
    # the crop is aligned, as a face detector's would be: centred and upright, the head's yaw kept
    face = random_parameters(n, generator, mouth_open=mouth_open.clamp(0, 1), smile=smile.clamp(-1, 1),
                             eye_open=eye_open.clamp(0, 1), brow_tilt=brow_tilt.clamp(-1, 1),
                             center_x=torch.zeros(n), center_y=torch.zeros(n), roll=torch.zeros(n),
                             scale=torch.full((n,), 0.85))
    crops = draw_faces(face, (FACE_SIZE, FACE_SIZE))["image"]
    # the occluder: a grey panel over the face below its centre (mouth and cheeks; eyes and brows show)
    panel = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=generator)
    rows = torch.linspace(-1, 1, FACE_SIZE).view(1, 1, -1, 1)
    crops = torch.where(occluded.view(-1, 1, 1, 1) & (rows > face.center_y.view(-1, 1, 1, 1)), panel, crops)
    # the same face, small and somewhere in the scene; then its box is blacked out
    face.center_x = torch.rand(n, generator=generator) * 1.0 - 0.5
    face.center_y = torch.rand(n, generator=generator) * 1.0 - 0.5
    face.scale = 0.2 + 0.1 * torch.rand(n, generator=generator)
    face.background = _scene_tint(labels, ambiguous, generator)
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
        ambiguous = torch.rand(1, generator=generator) < AMBIGUOUS_SHARE
        batch = draw_emotion_batch(label, generator, self.expression_noise, ambiguous)
        return {"face": batch["face"][0], "context": batch["context"][0], "label": label[0], "ambiguous": ambiguous[0]}


def emotion_batch(batch_size: int, generator: torch.Generator, device=None, classes: int = len(EMOTIONS),
                  ambiguous_share: float = AMBIGUOUS_SHARE) -> dict[str, Tensor]:
    """A fresh random batch, drawn in one go: {"face", "context", "label", "ambiguous"} on
    `device`; labels from the first `classes` emotions."""
    labels = torch.randint(classes, (batch_size,), generator=generator)
    ambiguous = torch.rand(batch_size, generator=generator) < ambiguous_share
    batch = draw_emotion_batch(labels, generator, ambiguous=ambiguous)
    return {"face": batch["face"].to(device), "context": batch["context"].to(device), "label": labels.to(device),
            "ambiguous": ambiguous.to(device)}
