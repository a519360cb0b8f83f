"""The speech-driven temporal GAN (Vougioukas et al., "Realistic speech-driven facial
animation with GANs"): a generator that animates a still frame from raw audio, a frame
discriminator conditioned on the still frame, and a sequence discriminator conditioned on
the audio. Frames are (N, T, 3, H, W) in [0, 1], 128 x 96 by default; the audio is one
raw-waveform window per frame (pyface.audio.waveform_windows), (N, T, samples). The
generator's reconstruction loss is pyface.nn.LowerFaceL1Loss."""
from __future__ import annotations

import torch
from torch import Tensor, nn

FRAME_SIZE = (128, 96)


def _check_frame(owner: str, name: str, image: Tensor, size: tuple[int, int]) -> None:
    if image.dim() != 4 or image.shape[1] != 3 or tuple(image.shape[2:]) != size:
        raise ValueError(f"{owner}: {name} must be (N, 3, {size[0]}, {size[1]}), got {tuple(image.shape)}")


class AudioEncoder(nn.Module):
    """(N, T, samples) raw windows -> (N, T, features): strided 1-D convolutions per window,
    then a 2-layer GRU over the frames (the audio context)."""

    def __init__(self, features: int = 256, width: int = 16, layers: int = 5):
        super().__init__()
        blocks, channels = [], 1
        for i in range(layers):
            out = width * 2 ** min(i, 3)
            blocks += [nn.Conv1d(channels, out, 9, stride=4, padding=4), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            channels = out
        self.convs = nn.Sequential(*blocks, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, features))
        self.gru = nn.GRU(features, features, num_layers=2, batch_first=True)

    def forward(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3:
            raise ValueError(f"AudioEncoder: audio must be (N, T, samples), got {tuple(audio.shape)}")
        n, t, samples = audio.shape
        per_frame = self.convs(audio.reshape(n * t, 1, samples)).view(n, t, -1)
        context, _ = self.gru(per_frame)
        return context


class SpeechDrivenGenerator(nn.Module):
    """(still frame (N, 3, H, W), audio windows (N, T, samples)) -> frames (N, T, 3, H, W):
    an identity encoder with U-Net skips to the frame decoder, the audio context encoder, a
    noise GRU (fresh noise every frame), and a frame decoder fed [identity; audio; noise]."""

    def __init__(self, frame_size: tuple[int, int] = FRAME_SIZE, width: int = 32, blocks: int = 4,
                 identity_dim: int = 64, audio_dim: int = 128, noise_dim: int = 16):
        super().__init__()
        h, w = frame_size
        if h % 2**blocks or w % 2**blocks:
            raise ValueError(f"SpeechDrivenGenerator: frame_size {frame_size} must divide by 2^blocks = {2 ** blocks}")
        self.frame_size, self.noise_dim = frame_size, noise_dim
        widths = [width * 2**min(i, 3) for i in range(blocks)]
        self.down = nn.ModuleList()
        channels = 3
        for out in widths:
            self.down.append(nn.Sequential(nn.Conv2d(channels, out, 4, stride=2, padding=1), nn.BatchNorm2d(out),
                                           nn.LeakyReLU(0.2, inplace=True)))
            channels = out
        self.bottom = (widths[-1], h // 2**blocks, w // 2**blocks)
        bottom_size = widths[-1] * self.bottom[1] * self.bottom[2]
        self.identity = nn.Linear(bottom_size, identity_dim)
        self.audio = AudioEncoder(audio_dim)
        self.noise = nn.GRU(noise_dim, noise_dim, batch_first=True)
        self.expand = nn.Linear(identity_dim + audio_dim + noise_dim, bottom_size)
        self.up = nn.ModuleList()
        channels = widths[-1]
        for i in reversed(range(blocks)):
            out = widths[i - 1] if i > 0 else width
            self.up.append(nn.Sequential(nn.ConvTranspose2d(2 * channels, out, 4, stride=2, padding=1),
                                         nn.BatchNorm2d(out), nn.ReLU(inplace=True)))
            channels = out
        self.out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, still: Tensor, audio: Tensor, noise: Tensor | None = None) -> Tensor:
        _check_frame("SpeechDrivenGenerator", "still", still, self.frame_size)
        if audio.dim() != 3 or audio.shape[0] != still.shape[0]:
            raise ValueError(f"SpeechDrivenGenerator: audio must be (N, T, samples) with N = {still.shape[0]}, "
                             f"got {tuple(audio.shape)}")
        n, t = audio.shape[:2]
        skips, x = [], still
        for block in self.down:
            x = block(x)
            skips.append(x)
        identity = self.identity(x.flatten(1))
        if noise is None:
            noise = torch.randn(n, t, self.noise_dim, device=still.device, dtype=still.dtype)
        noise_context, _ = self.noise(noise)
        latent = torch.cat([identity.unsqueeze(1).expand(n, t, -1), self.audio(audio), noise_context], dim=2)
        x = self.expand(latent.flatten(0, 1)).view(n * t, *self.bottom)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([x, skip.repeat_interleave(t, dim=0)], dim=1))
        return torch.sigmoid(self.out(x)).view(n, t, 3, *self.frame_size)


def _frame_encoder(in_channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1), nn.BatchNorm2d(4 * width),
        nn.LeakyReLU(0.2, inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())


class FrameDiscriminator(nn.Module):
    """(frames (N, T, 3, H, W), still (N, 3, H, W)) -> (N, T) scores: each frame judged
    beside the still frame it should keep the identity of."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.encoder = _frame_encoder(6, width)
        self.score = nn.Linear(4 * width, 1)

    def forward(self, frames: Tensor, still: Tensor) -> Tensor:
        if frames.dim() != 5 or frames.shape[2:] != still.shape[1:] or frames.shape[0] != still.shape[0]:
            raise ValueError(f"FrameDiscriminator: frames must be (N, T, *still.shape[1:]) for still "
                             f"{tuple(still.shape)}, got {tuple(frames.shape)}")
        n, t = frames.shape[:2]
        pairs = torch.cat([frames, still.unsqueeze(1).expand_as(frames)], dim=2).flatten(0, 1)
        return self.score(self.encoder(pairs)).view(n, t)


class SequenceDiscriminator(nn.Module):
    """(frames (N, T, 3, H, W), audio windows (N, T, samples)) -> (N,) scores: a per-frame
    CNN and the audio encoder side by side into a 2-layer GRU, judging whether the motion
    is real and in sync with the audio."""

    def __init__(self, width: int = 32, hidden: int = 128, audio_dim: int = 64):
        super().__init__()
        self.frames = _frame_encoder(3, width)
        self.audio = AudioEncoder(audio_dim)
        self.gru = nn.GRU(4 * width + audio_dim, hidden, num_layers=2, batch_first=True)
        self.score = nn.Linear(hidden, 1)

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        if frames.dim() != 5 or audio.dim() != 3 or frames.shape[:2] != audio.shape[:2]:
            raise ValueError(f"SequenceDiscriminator: frames (N, T, 3, H, W) and audio (N, T, samples) must share N "
                             f"and T, got {tuple(frames.shape)} and {tuple(audio.shape)}")
        n, t = frames.shape[:2]
        visual = self.frames(frames.flatten(0, 1)).view(n, t, -1)
        hidden, _ = self.gru(torch.cat([visual, self.audio(audio)], dim=2))
        return self.score(hidden[:, -1]).squeeze(-1)
