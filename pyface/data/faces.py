"""Procedurally drawn cartoon faces with exact face-parsing labels and landmarks, batched in
torch on any device: the synthetic data the examples and tests train on without downloads.

A face is a skin ellipse with hair, brows, eyes, a nose and a mouth whose shape follows a
few expression parameters (mouth opening, smile, eye opening, brow tilt) and a head pose
(position, scale, roll, and a yaw that turns the features sideways). Labels use the
CelebAMask-HQ classes of pyface.contracts.faces.CELEBAMASK_HQ_CLASSES."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from pyface.contracts.faces import CELEBAMASK_HQ_CLASSES, LABEL, LANDMARKS  # noqa: F401  (pyface.data's names)


@dataclass
class FaceParameters:
    """One value per face (tensors of shape (N,), colours (N, 3) in [0, 1])."""
    center_x: Tensor      # face centre in the image, [-1, 1]
    center_y: Tensor
    scale: Tensor         # face half-height in image units
    roll: Tensor          # radians
    yaw: Tensor           # [-1, 1]: features shift sideways, the face narrows
    mouth_open: Tensor    # [0, 1]
    smile: Tensor         # [-1, 1]: corners up (+) or down (-)
    eye_open: Tensor      # [0, 1]
    brow_tilt: Tensor     # [-1, 1]: inner ends down (+, angry) or up (-, sad)
    skin: Tensor
    hair: Tensor
    background: Tensor

    def to(self, device) -> FaceParameters:
        return FaceParameters(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def random_parameters(n: int, generator: torch.Generator, **fixed: Tensor) -> FaceParameters:
    """Faces with random pose and colours and a mild random expression; `fixed` overrides
    any field."""
    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(n, *shape, generator=generator)

    values = {
        "center_x": uniform(-0.1, 0.1), "center_y": uniform(-0.1, 0.1), "scale": uniform(0.75, 0.9),
        "roll": uniform(-0.2, 0.2), "yaw": uniform(-0.4, 0.4),
        "mouth_open": uniform(0.0, 0.3), "smile": uniform(-0.3, 0.3), "eye_open": uniform(0.5, 0.9),
        "brow_tilt": uniform(-0.3, 0.3),
        "skin": torch.tensor([0.85, 0.65, 0.5]) * uniform(0.6, 1.1, 1),
        "hair": uniform(0.05, 0.5, 3), "background": uniform(0.1, 0.9, 3),
    }
    values.update(fixed)
    return FaceParameters(**values)


def _face_frame(params: FaceParameters, size: tuple[int, int], device) -> tuple[Tensor, Tensor]:
    """(N, H, W) coordinates of every pixel in each face's own frame: centred, unrolled and in
    units of the face's half-height."""
    h, w = size
    ys = torch.linspace(-1, 1, h, device=device).view(1, h, 1)
    xs = torch.linspace(-1, 1, w, device=device).view(1, 1, w)
    view = lambda t: t.view(-1, 1, 1)  # noqa: E731
    dx, dy = xs - view(params.center_x), ys - view(params.center_y)
    cos, sin = view(params.roll.cos()), view(params.roll.sin())
    return (cos * dx + sin * dy) / view(params.scale), (-sin * dx + cos * dy) / view(params.scale)


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def draw_faces(params: FaceParameters, size: tuple[int, int], device=None) -> dict[str, Tensor]:
    """-> {"image": (N, 3, H, W) in [0, 1], "parsing": (N, H, W) uint8, "landmarks": (N, 9, 2)}."""
    device = device or params.skin.device
    params = params.to(device)
    x, y = _face_frame(params, size, device)
    view = lambda t: t.view(-1, 1, 1)  # noqa: E731
    yaw = view(params.yaw)
    width = 0.72 * (1 - 0.25 * yaw.abs())
    shift = 0.18 * yaw  # the features move towards the side the head turns to
    labels = torch.zeros(x.shape, dtype=torch.uint8, device=device)

    def paint(region, name):
        labels.masked_fill_(region, LABEL[name])

    head = _ellipse(x, y, shift * 0.3, 0.0, width, 1.0)
    paint(_ellipse(x, y, shift * 0.3, -0.15, width * 1.08, 0.95) & (y < -0.45), "hair")
    paint(head & ~(y < -0.62), "skin")
    for side, eye, brow in ((-1, "l_eye", "l_brow"), (1, "r_eye", "r_brow")):
        ex = shift + side * 0.3 * width / 0.72
        paint(_ellipse(x, y, ex, -0.2, 0.13, 0.015 + 0.07 * view(params.eye_open)), eye)
        # the brow: a short thick segment; positive tilt lowers its inner end
        along = (x - ex) * side  # > 0 towards the outside of the face
        brow_y = -0.42 + 0.12 * view(params.brow_tilt) * (0.5 - (along + 0.15) / 0.3)
        paint((along.abs() <= 0.15) & ((y - brow_y).abs() <= 0.035), brow)
    paint(_ellipse(x, y, shift * 1.1, 0.08, 0.07, 0.14), "nose")
    # the mouth: lips are bands around two parabolas, the opening between them
    mx = x - shift
    bend = -0.35 * view(params.smile) * mx**2 / 0.25**2 * 0.25
    upper = 0.45 + bend
    lower = upper + 0.02 + 0.22 * view(params.mouth_open)
    across = mx.abs() <= 0.25
    paint(across & (y > upper) & (y < lower), "mouth")
    paint(across & ((y - upper).abs() <= 0.035), "u_lip")
    paint(across & ((y - lower).abs() <= 0.035), "l_lip")

    palette = torch.zeros(labels.shape[0], len(CELEBAMASK_HQ_CLASSES), 3, device=device)
    palette[:] = params.background.view(-1, 1, 3)
    dark = torch.tensor([0.12, 0.08, 0.06], device=device)
    for name, colour in (("skin", params.skin), ("hair", params.hair), ("nose", params.skin * 0.85),
                         ("l_brow", params.hair * 0.7), ("r_brow", params.hair * 0.7)):
        palette[:, LABEL[name]] = colour
    for name in ("l_eye", "r_eye"):
        palette[:, LABEL[name]] = dark
    palette[:, LABEL["mouth"]] = torch.tensor([0.3, 0.05, 0.05], device=device)
    palette[:, LABEL["u_lip"]] = palette[:, LABEL["l_lip"]] = torch.tensor([0.75, 0.25, 0.25], device=device)
    index = labels.long().flatten(1).unsqueeze(-1).expand(-1, -1, 3)
    image = torch.gather(palette, 1, index).view(*labels.shape, 3).permute(0, 3, 1, 2).contiguous()

    return {"image": image, "parsing": labels, "landmarks": face_landmarks(params)}


def face_landmarks(params: FaceParameters) -> Tensor:
    """(N, 9, 2) landmarks in LANDMARKS order, (x, y) in the image's [-1, 1] coordinates,
    where draw_faces puts those parts."""
    # in the face frame, then back to image coordinates
    n = params.scale.shape[0]
    s, m_open = 0.18 * params.yaw, params.mouth_open  # the features' sideways shift, as drawn
    eye_dx = 0.3 * (1 - 0.25 * params.yaw.abs())
    upper_mid = torch.full_like(s, 0.45)
    face_points = torch.stack([
        torch.stack([s - eye_dx, torch.full_like(s, -0.2)], -1),
        torch.stack([s + eye_dx, torch.full_like(s, -0.2)], -1),
        torch.stack([s * 1.1, torch.full_like(s, 0.08)], -1),
        torch.stack([s - 0.25, upper_mid - 0.35 * params.smile * 0.25], -1),
        torch.stack([s + 0.25, upper_mid - 0.35 * params.smile * 0.25], -1),
        torch.stack([s, upper_mid], -1),
        torch.stack([s, upper_mid + 0.02 + 0.22 * m_open], -1),
        torch.stack([s - eye_dx, torch.full_like(s, -0.42)], -1),
        torch.stack([s + eye_dx, torch.full_like(s, -0.42)], -1),
    ], dim=1) * params.scale.view(n, 1, 1)
    cos, sin = params.roll.cos().view(n, 1), params.roll.sin().view(n, 1)
    fx, fy = face_points[..., 0], face_points[..., 1]
    landmarks = torch.stack([cos * fx - sin * fy + params.center_x.view(n, 1),
                             sin * fx + cos * fy + params.center_y.view(n, 1)], dim=-1)
    return landmarks
