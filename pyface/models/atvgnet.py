"""ATVGnet (Chen et al., "Hierarchical cross-modal talking face generation with dynamic
pixel-wise loss"): audio to landmarks (ATNet), landmarks to video (VGNet), and the
regression-based discriminator. VGNet's attention head feeds pyface.nn.DynamicPixelWiseLoss.

Landmarks are (N, T, P, 2) in [-1, 1] image coordinates; ATNet works in the coefficients of
a LandmarkPCA fitted to a landmark set. Frames are (N, T, 3, H, W) in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyface.models.facial_map import render_facial_map


class LandmarkPCA(nn.Module):
    """PCA of flattened landmarks (P * 2): fit() stores the mean and the leading components
    as buffers (saved with the model); transform / inverse map landmarks <-> coefficients."""

    def __init__(self, num_points: int, num_components: int):
        super().__init__()
        self.num_points, self.num_components = num_points, num_components
        self.register_buffer("mean", torch.zeros(num_points * 2))
        self.register_buffer("components", torch.zeros(num_components, num_points * 2))

    @torch.no_grad()
    def fit(self, landmarks: Tensor) -> LandmarkPCA:
        """landmarks (..., P, 2), at least num_components + 1 of them."""
        flat = landmarks.reshape(-1, self.num_points * 2).to(self.mean)
        if flat.shape[0] <= self.num_components:
            raise ValueError(f"LandmarkPCA.fit: need more than {self.num_components} landmark sets, got {flat.shape[0]}")
        self.mean.copy_(flat.mean(0))
        _, _, vh = torch.linalg.svd(flat - self.mean, full_matrices=False)
        self.components.copy_(vh[: self.num_components])
        return self

    def transform(self, landmarks: Tensor) -> Tensor:
        return (landmarks.flatten(-2) - self.mean) @ self.components.T

    def inverse(self, coefficients: Tensor) -> Tensor:
        return (coefficients @ self.components + self.mean).unflatten(-1, (self.num_points, 2))


class ATNet(nn.Module):
    """(MFCC windows (N, T, 28, 12), the example's landmarks (N, P, 2)) -> landmarks
    (N, T, P, 2): a conv encoder per audio window, a linear encoder of the example's PCA
    coefficients, a 3-layer LSTM over their concatenation, and a linear head back to PCA
    coefficients (added to the example's), decoded by the fitted LandmarkPCA."""

    def __init__(self, pca: LandmarkPCA, hidden: int = 256, mfcc_shape: tuple[int, int] = (28, 12)):
        super().__init__()
        self.pca, self.mfcc_shape = pca, mfcc_shape
        self.audio_encoder = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d((2, 1)),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, hidden), nn.ReLU(inplace=True))
        self.landmark_encoder = nn.Sequential(nn.Linear(pca.num_components, hidden), nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(2 * hidden, hidden, num_layers=3, batch_first=True)
        self.head = nn.Linear(hidden, pca.num_components)

    def forward(self, mfcc: Tensor, example_landmarks: Tensor) -> Tensor:
        if mfcc.dim() != 4 or tuple(mfcc.shape[2:]) != self.mfcc_shape:
            raise ValueError(f"ATNet: mfcc must be (N, T, {self.mfcc_shape[0]}, {self.mfcc_shape[1]}), "
                             f"got {tuple(mfcc.shape)}")
        if example_landmarks.shape != (mfcc.shape[0], self.pca.num_points, 2):
            raise ValueError(f"ATNet: example_landmarks must be (N, {self.pca.num_points}, 2), "
                             f"got {tuple(example_landmarks.shape)}")
        n, t = mfcc.shape[:2]
        audio = self.audio_encoder(mfcc.reshape(n * t, 1, *self.mfcc_shape)).view(n, t, -1)
        example = self.pca.transform(example_landmarks)
        identity = self.landmark_encoder(example).unsqueeze(1).expand(n, t, -1)
        hidden, _ = self.lstm(torch.cat([audio, identity], dim=2))
        return self.pca.inverse(example.unsqueeze(1) + self.head(hidden))


class ConvGRUCell(nn.Module):
    """A GRU whose gates are 3x3 convolutions over (N, C, H, W) feature maps."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(channels + hidden, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(channels + hidden, hidden, 3, padding=1)

    def forward(self, x: Tensor, state: Tensor | None) -> Tensor:
        if state is None:
            state = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
        update, reset = torch.sigmoid(self.gates(torch.cat([x, state], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * state], dim=1)))
        return (1 - update) * state + update * candidate


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class VGNet(nn.Module):
    """(example image (N, 3, H, W), example landmarks (N, P, 2), landmarks (N, T, P, 2)) ->
    {"frames", "colour": (N, T, 3, H, W), "attention": (N, T, 1, H, W)}.

    Landmarks are drawn as maps (render_facial_map); image and landmark encoders share their
    shape; feature-level attention weighs the image features by how the frame's landmark
    features differ from the example's; a convolutional GRU carries them over time; a
    residual decoder ends in a colour head and an attention head, and
    frame = attention * colour + (1 - attention) * example image. H, W multiples of 8."""

    def __init__(self, connections, width: int = 32):
        super().__init__()
        self.connections = connections
        self.image_encoder = nn.Sequential(_down(3, width), _down(width, 2 * width), _down(2 * width, 4 * width))
        self.landmark_encoder = nn.Sequential(_down(1, width), _down(width, 2 * width), _down(2 * width, 4 * width))
        self.attention_gate = nn.Conv2d(8 * width, 4 * width, 3, padding=1)
        self.temporal = ConvGRUCell(8 * width, 4 * width)
        self.decoder = nn.Sequential(_Residual(4 * width), _Residual(4 * width), _up(4 * width, 2 * width),
                                     _up(2 * width, width), _up(width, width))
        self.colour_head = nn.Conv2d(width, 3, 7, padding=3)
        self.attention_head = nn.Conv2d(width, 1, 7, padding=3)

    def forward(self, example_image: Tensor, example_landmarks: Tensor, landmarks: Tensor) -> dict[str, Tensor]:
        if example_image.dim() != 4 or example_image.shape[1] != 3:
            raise ValueError(f"VGNet: example_image must be (N, 3, H, W), got {tuple(example_image.shape)}")
        n, _, h, w = example_image.shape
        if h % 8 or w % 8:
            raise ValueError(f"VGNet: image height and width must be multiples of 8, got {(h, w)}")
        if landmarks.dim() != 4 or landmarks.shape[0] != n or landmarks.shape[2:] != example_landmarks.shape[1:]:
            raise ValueError(f"VGNet: landmarks must be (N, T, P, 2) like example_landmarks {tuple(example_landmarks.shape)}, "
                             f"got {tuple(landmarks.shape)}")
        t = landmarks.shape[1]
        maps = render_facial_map(landmarks.flatten(0, 1), self.connections, (h, w)).view(n, t, 1, h, w)
        example_map = render_facial_map(example_landmarks, self.connections, (h, w))
        image_features = self.image_encoder(example_image)
        example_features = self.landmark_encoder(example_map)
        state, frames, colours, attentions = None, [], [], []
        for step in range(t):
            frame_features = self.landmark_encoder(maps[:, step])
            gate = torch.sigmoid(self.attention_gate(torch.cat([frame_features - example_features, image_features], 1)))
            state = self.temporal(torch.cat([gate * image_features, frame_features], 1), state)
            decoded = self.decoder(state)
            colour = torch.sigmoid(self.colour_head(decoded))
            attention = torch.sigmoid(self.attention_head(decoded))
            frames.append(attention * colour + (1 - attention) * example_image)
            colours.append(colour)
            attentions.append(attention)
        return {"frames": torch.stack(frames, 1), "colour": torch.stack(colours, 1),
                "attention": torch.stack(attentions, 1)}


class RegressionDiscriminator(nn.Module):
    """ATVGnet's regression-based discriminator: frames (N, T, 3, H, W) -> (realness
    (N, T), landmark PCA coefficients (N, T, num_components)): a conv encoder per frame, an
    LSTM over time, one head scoring each frame and one regressing its landmarks, so the
    generator is pushed towards frames whose mouth matches the landmarks it was given."""

    def __init__(self, num_components: int, width: int = 32, hidden: int = 256):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.lstm = nn.LSTM(4 * width, hidden, batch_first=True)
        self.score = nn.Linear(hidden, 1)
        self.landmarks = nn.Linear(hidden, num_components)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"RegressionDiscriminator: frames must be (N, T, 3, H, W), got {tuple(frames.shape)}")
        n, t = frames.shape[:2]
        hidden, _ = self.lstm(self.encoder(frames.flatten(0, 1)).view(n, t, -1))
        return self.score(hidden).squeeze(-1), self.landmarks(hidden)
