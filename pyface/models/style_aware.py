"""The style-aware talking-head generator's motion half, as separate modules that compose
(face-vid2vid's keypoint formulation, which the style-aware seed builds on):

- KeypointExtractor: image -> K canonical 3-D keypoints c_k (soft-argmax over a heat volume)
- PoseExpressionNet: image -> head pose (yaw / pitch / roll in 66 bins), translation tau and
  expression offsets eps_k; with pyface.geometry, C_k = c_k R + tau + eps_k
- StyleMapping: (neutral image, style reference image) -> the Intermediate Style Pattern
  image: the neutral image's appearance volume warped to the reference's pose and
  expression (the neutral image's c_k with the reference's pose and expression, the seed's
  eq. 2) through pyface.nn.DenseMotion and the fused keypoint_warp, then decoded.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface import geometry, ops
from pyface._modes import eval_mode
from pyface.contracts.grid import make_coordinate_grid
from pyface.models.blocks import check_images, down_block, up_block
from pyface.nn import DenseMotion, Hourglass, StyleAwarePhotometricLoss

ANGLES = ("yaw", "pitch", "roll")  # PoseExpressionNet's head-pose outputs, in rotation_matrix's order


class KeypointExtractor(nn.Module):
    """image (N, 3, H, W) -> canonical keypoints (N, K, 3), (x, y, z) in [-1, 1]: an
    hourglass at half resolution predicts K heat volumes of `depth` slices, and each
    keypoint is the softmax-weighted mean of the grid (soft-argmax, temperature 0.1)."""

    def __init__(self, num_keypoints: int = 15, depth: int = 16, block_expansion: int = 32, num_blocks: int = 3,
                 max_features: int = 256, temperature: float = 0.1):
        super().__init__()
        self.num_keypoints, self.depth, self.temperature = num_keypoints, depth, temperature
        self.hourglass = Hourglass(2, 3, block_expansion, num_blocks, max_features)
        self.heat = nn.Conv2d(self.hourglass.out_channels, num_keypoints * depth, 7, padding=3)

    def forward(self, image: Tensor) -> Tensor:
        check_images("KeypointExtractor", image=image)
        features = self.hourglass(F.avg_pool2d(image, 2))
        n, _, h, w = features.shape
        heat = self.heat(features).view(n, self.num_keypoints, -1) / self.temperature
        weights = torch.softmax(heat, dim=2).view(n, self.num_keypoints, self.depth * h * w, 1)
        grid = make_coordinate_grid((self.depth, h, w), weights.dtype, weights.device).view(1, 1, -1, 3)
        return (weights * grid).sum(dim=2)


class PoseExpressionNet(nn.Module):
    """image -> {"yaw", "pitch", "roll": (N, 66) bin logits, "translation": (N, 3),
    "expression": (N, K, 3)}: a strided conv encoder, global pooling and linear heads."""

    def __init__(self, num_keypoints: int = 15, width: int = 32, blocks: int = 4):
        super().__init__()
        self.num_keypoints = num_keypoints
        widths = [width * 2**i for i in range(blocks)]
        self.encoder = nn.Sequential(*[down_block(c_in, c_out) for c_in, c_out in zip([3, *widths], widths)])
        features = widths[-1]
        self.angles = nn.ModuleDict({name: nn.Linear(features, geometry.POSE_BINS) for name in ANGLES})
        self.translation = nn.Linear(features, 3)
        self.expression = nn.Linear(features, num_keypoints * 3)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        check_images("PoseExpressionNet", image=image)
        features = self.encoder(image).mean(dim=(2, 3))
        out = {name: head(features) for name, head in self.angles.items()}
        out["translation"] = self.translation(features)
        out["expression"] = self.expression(features).view(-1, self.num_keypoints, 3)
        return out

    @staticmethod
    def keypoints(canonical: Tensor, pose: dict[str, Tensor]) -> Tensor:
        """C_k = c_k R + eps_k + tau from canonical keypoints and this net's output."""
        rotation = geometry.rotation_matrix(*(geometry.bins_to_degrees(pose[name]) for name in ANGLES))
        return geometry.transform_keypoints(canonical, rotation, pose["translation"], pose["expression"])


class StyleMapping(nn.Module):
    """(neutral (N, 3, H, W), reference (N, 3, H, W)) -> {"image": the Intermediate Style
    Pattern image (N, 3, H, W), "kp_source", "kp_driving", "occlusion", "deformation"}.

    The neutral image's appearance becomes a (C, D, H/4, W/4) feature volume; its canonical
    keypoints under its own pose and expression are the source keypoints, the same canonical
    keypoints under the reference's pose and expression the driving ones. DenseMotion warps
    the volume (fused heatmaps, sparse motions and keypoint_warp), its occlusion map gates
    the result, and a decoder renders the image. H and W must be multiples of 4.

    residual=True: the decoder renders the change to the neutral image from a last layer
    that starts at 0 (an untrained mapping copies the neutral face: sharp, in its own
    colours, and learns only what the expression changes), clamped to [0, 1] with the
    gradient passed straight through; the style-aware pipeline's mapping is built so. (Adam
    moves each of the last layer's weights by the learning rate on its first step: the
    preset's rate is 2e-4 for that reason.)"""

    def __init__(self, num_keypoints: int = 15, feature_channels: int = 16, depth: int = 8, width: int = 32,
                 backend: str | None = None, residual: bool = False):
        super().__init__()
        self.feature_channels, self.depth, self.residual = feature_channels, depth, residual
        self.appearance = nn.Sequential(
            nn.Conv2d(3, width, 7, padding=3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            down_block(width, 2 * width), down_block(2 * width, 4 * width), nn.Conv2d(4 * width, feature_channels * depth, 1))
        self.keypoint_extractor = KeypointExtractor(num_keypoints, depth=depth, block_expansion=width // 2,
                                                    num_blocks=3, max_features=8 * width)
        self.pose_expression = PoseExpressionNet(num_keypoints, width=width // 2)
        self.dense_motion = DenseMotion(feature_channels, num_keypoints, dims=3, depth=depth,
                                        block_expansion=width // 2, num_blocks=2, max_features=4 * width,
                                        backend=backend)
        self.decoder = nn.Sequential(
            nn.Conv2d(feature_channels * depth, 4 * width, 3, padding=1), nn.ReLU(inplace=True),
            up_block(4 * width, 2 * width), up_block(2 * width, width), nn.Conv2d(width, 3, 7, padding=3))
        if residual:
            nn.init.zeros_(self.decoder[-1].weight)
            nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, neutral: Tensor, reference: Tensor) -> dict[str, Tensor]:
        check_images("StyleMapping", neutral=neutral, reference=reference)
        if neutral.shape[2] % 4 or neutral.shape[3] % 4:
            raise ValueError(
                f"StyleMapping: image height and width must be multiples of 4, got {tuple(neutral.shape[2:])}")
        n, _, h, w = neutral.shape
        volume = self.appearance(neutral).view(n, self.feature_channels, self.depth, h // 4, w // 4)
        canonical = self.keypoint_extractor(neutral)
        kp_source = PoseExpressionNet.keypoints(canonical, self.pose_expression(neutral))
        kp_driving = PoseExpressionNet.keypoints(canonical, self.pose_expression(reference))  # the seed's eq. 2
        motion = self.dense_motion(volume, kp_source, kp_driving)
        warped = motion["deformed"].flatten(1, 2) * motion["occlusion"]
        if self.residual:
            image = neutral + self.decoder(warped)
            image = image + (image.clamp(0, 1) - image).detach()
        else:
            image = torch.sigmoid(self.decoder(warped))
        return {"image": image, "kp_source": kp_source, "kp_driving": kp_driving, "occlusion": motion["occlusion"],
                "deformation": motion["deformation"]}

    @torch.no_grad()
    def patterns(self, faces: Tensor, references: Tensor) -> Tensor:
        """faces (N, 3, H, W), references (N, P, 3, H, W) -> (N, P, 3, H, W): each face's
        Intermediate Style Pattern for each of its references, as a trained, frozen stage makes
        them (eval mode, no gradient; the mode is restored)."""
        if references.dim() != 5 or references.shape[0] != faces.shape[0]:
            raise ValueError(f"StyleMapping.patterns: references must be (N, P, 3, H, W) with the faces' N, "
                             f"got {tuple(references.shape)} for faces {tuple(faces.shape)}")
        p = references.shape[1]
        with eval_mode(self):
            return self(faces.repeat_interleave(p, 0), references.flatten(0, 1))["image"].view(references.shape)


def landmark_warp(image: Tensor, kp_source: Tensor, kp_driving: Tensor, sigma: float = 0.08,
                  background: float = -4.0, backend: str | None = None) -> Tensor:
    """image (N, C, H, W), keypoints (N, K, 2) in [-1, 1] image coordinates (x right, y down)
    -> the image warped so that what sits at each source keypoint moves to its driving one:
    pyface.ops.keypoint_warp (border padding) with each keypoint's translation weighted, near
    its driving position, by a Gaussian of width `sigma`, against a still background whose
    logit is `background` (softmax over the K + 1 logits)."""
    n, k = kp_driving.shape[:2]
    h, w = image.shape[-2:]
    grid = make_coordinate_grid((h, w), image.dtype, image.device).view(1, 1, h, w, 2)
    logits = -((grid - kp_driving.to(image).view(n, k, 1, 1, 2)) ** 2).sum(-1) / (2 * sigma**2)
    logits = torch.cat([logits.new_full((n, 1, h, w), background), logits], dim=1)
    return ops.keypoint_warp(image, kp_source.to(image), kp_driving.to(image), logits, mask_logits=True,
                             align_corners=True, padding_mode="border", backend=backend)


class StyleAwareGenerator(nn.Module):
    """(source (N, 3, H, W), facial_map (N, 1, H, W), style_patterns (N, 4, 3, H, W): the
    ISP images of the four templates) -> frame (N, 3, H, W): a U-Net over their channels
    predicts the change to the source; its last layer starts at 0, so an untrained generator
    copies the source and training learns only what speech and style change (a gate on the
    source instead closed on the first steps, the mouth being a few percent of the pixels).
    The frame is clamped to [0, 1] with the gradient passed straight through.
    Trained with StyleAwareGeneratorLoss. H, W multiples of 8.

    warp_sigma: the source is first warped by the motion of its landmarks (landmark_warp,
    Gaussians of that width; forward then needs `source_landmarks` and the frame's
    `landmarks`, (N, K, 2)); the U-Net sees the warped source too and predicts the change to
    it. The warp bends the source's own sharp lips where the corners rise or fall; the U-Net,
    painting them from the map alone in 600 steps, drew straight, blurred lips whatever the
    smile (measured on the synthetic speakers).

    The stem is normalised (conv - BatchNorm - ReLU) like every other block: its inputs are
    images, all positive, so Adam's first steps moved all of a channel's weights one way, and
    without the normalisation every stem ReLU was dead within 30 steps at the recipe's
    learning rate (the U-Net's output constant, the frames the warped source)."""

    def __init__(self, width: int = 32, references: int = 4, warp_sigma: float | None = None,
                 backend: str | None = None):
        super().__init__()
        self.references, self.warp_sigma, self.backend = references, warp_sigma, backend
        in_channels = 3 + 1 + 3 * references + (3 if warp_sigma is not None else 0)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, padding=3, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.down = nn.ModuleList([down_block(width, 2 * width), down_block(2 * width, 4 * width),
                                   down_block(4 * width, 8 * width)])
        self.up = nn.ModuleList([up_block(8 * width, 4 * width), up_block(8 * width, 2 * width), up_block(4 * width, width)])
        self.out = nn.Conv2d(2 * width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, source: Tensor, facial_map: Tensor, style_patterns: Tensor, source_landmarks: Tensor | None = None,
                landmarks: Tensor | None = None) -> Tensor:
        check_images("StyleAwareGenerator", source=source)
        n, _, h, w = source.shape
        if facial_map.shape != (n, 1, h, w):
            raise ValueError(f"StyleAwareGenerator: facial_map must be {(n, 1, h, w)}, got {tuple(facial_map.shape)}")
        if style_patterns.shape != (n, self.references, 3, h, w):
            raise ValueError(f"StyleAwareGenerator: style_patterns must be {(n, self.references, 3, h, w)}, "
                             f"got {tuple(style_patterns.shape)}")
        if h % 8 or w % 8:
            raise ValueError(f"StyleAwareGenerator: height and width must be multiples of 8, got {(h, w)}")
        inputs, base = [source, facial_map, style_patterns.flatten(1, 2)], source
        if self.warp_sigma is not None:
            if source_landmarks is None or landmarks is None or source_landmarks.shape != landmarks.shape \
                    or landmarks.dim() != 3 or landmarks.shape[0] != n or landmarks.shape[2] != 2:
                raise ValueError("StyleAwareGenerator: built with warp_sigma, it needs source_landmarks and landmarks, "
                                 f"both (N={n}, K, 2); got {None if source_landmarks is None else tuple(source_landmarks.shape)} "
                                 f"and {None if landmarks is None else tuple(landmarks.shape)}")
            base = landmark_warp(source, source_landmarks, landmarks, self.warp_sigma, backend=self.backend)
            inputs.append(base)
        x = self.stem(torch.cat(inputs, dim=1))
        skips = [x]
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = torch.cat([block(x), skips.pop()], dim=1)
        frame = base + self.out(x)
        return frame + (frame.clamp(0, 1) - frame).detach()


class StyleAwareGeneratorLoss(nn.Module):
    """The style-aware generator's objective: L1 to the target frame plus the style-aware
    photometric loss (mouth and lips 5, eyes 3, skin 1, on the frame's face parsing) to the
    matched style pattern image, the ISP image of the template the frame's mouth is closest to."""

    def __init__(self, photometric_weight: float = 1.0, backend: str | None = None):
        super().__init__()
        self.photometric = StyleAwarePhotometricLoss(backend=backend)
        self.photometric_weight = photometric_weight

    def forward(self, frame: Tensor, target: Tensor, matched_pattern: Tensor, parsing: Tensor) -> Tensor:
        return F.l1_loss(frame, target) + self.photometric_weight * self.photometric(frame, matched_pattern, parsing)


class StyleMappingLoss(StyleAwareGeneratorLoss):
    """Reconstruction of the reference: the generator's objective with the reference as both
    the target and the style pattern (L1 plus the style-aware photometric loss on the
    reference's face parsing)."""

    def forward(self, isp: Tensor, reference: Tensor, parsing: Tensor) -> Tensor:
        return super().forward(isp, reference, reference, parsing)
