"""Synthetic data for the talking-head models: pairs of one drawn identity, once neutral and
frontal, once with another expression and head pose (the style-mapping task: render the
second from the first's appearance), with the second's face parsing; and talking sequences
whose mouth follows a speech envelope, with audio-like features that carry it."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from pyface import audio
from pyface.data.faces import draw_faces, face_landmarks, random_parameters


def style_pair_batch(batch_size: int, generator: torch.Generator, size: int = 64, device=None) -> dict[str, Tensor]:
    """{"neutral", "reference": (N, 3, size, size) in [0, 1], "parsing": (N, size, size) uint8
    of the reference}."""
    n = batch_size

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, generator=generator)

    identity = random_parameters(n, generator)
    neutral = replace(identity, roll=torch.zeros(n), yaw=torch.zeros(n), mouth_open=torch.full((n,), 0.05),
                      smile=torch.zeros(n), eye_open=torch.full((n,), 0.75), brow_tilt=torch.zeros(n))
    reference = replace(identity, roll=uniform(-0.25, 0.25), yaw=uniform(-0.5, 0.5), mouth_open=uniform(0, 1),
                        smile=uniform(-1, 1), eye_open=uniform(0.2, 1), brow_tilt=uniform(-0.6, 0.6))
    drawn_neutral = draw_faces(neutral, (size, size))
    drawn_reference = draw_faces(reference, (size, size))
    return {"neutral": drawn_neutral["image"].to(device), "reference": drawn_reference["image"].to(device),
            "parsing": drawn_reference["parsing"].to(device)}


def speech_envelope(batch_size: int, frames: int, generator: torch.Generator) -> Tensor:
    """(N, T) in [0, 1]: a syllable-like opening signal, a few random sinusoids at speech
    rates (2-6 Hz at 25 fps) through a soft rectifier, with pauses."""
    t = torch.arange(frames, dtype=torch.float32).view(1, 1, frames) / 25.0
    rates = 2 + 4 * torch.rand(batch_size, 3, 1, generator=generator)
    phases = 2 * torch.pi * torch.rand(batch_size, 3, 1, generator=generator)
    wave = torch.sin(2 * torch.pi * rates * t + phases).mean(dim=1)
    return torch.sigmoid(4 * wave - 0.5)


def speech_waveform(envelope: Tensor, generator: torch.Generator, fps: float = 25.0,
                    sample_rate: int = 16000) -> Tensor:
    """(N, T) envelopes -> (N, T * sample_rate / fps) waveforms: a voiced sound (eight
    harmonics of a pitch drawn per speaker, 100-220 Hz) whose loudness follows the envelope,
    plus faint noise. The opening also brightens the voice (the upper harmonics grow with
    it, as an open vowel's formants rise), so the spectrum's shape follows the mouth as well
    as its level: features that discard the level (MFCCs without coefficient 0) still hear it."""
    n, frames = envelope.shape
    samples = int(frames * sample_rate / fps)
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    pitch = 100 + 120 * torch.rand(n, 1, 1, generator=generator, dtype=torch.float64)
    harmonics = torch.arange(1, 9, dtype=torch.float64).view(1, -1, 1)
    opening = torch.nn.functional.interpolate(envelope.unsqueeze(1), size=samples, mode="linear",
                                              align_corners=False).squeeze(1)
    brightness = torch.exp(-(harmonics.float() - 1) * (1.2 - opening.unsqueeze(1)))  # (N, 8, samples)
    voice = (torch.sin(2 * torch.pi * pitch * harmonics * t).float() / harmonics.float() * brightness).sum(1)
    return 0.3 * opening * voice + 0.003 * torch.randn(n, samples, generator=generator)


def talking_sequence_batch(batch_size: int, frames: int, generator: torch.Generator, audio_dim: int = 16,
                           size: int = 64, render: bool = False, waveform: bool = False, frame_size=None,
                           features: tuple[str, ...] = (), device=None) -> dict[str, Tensor]:
    """Talking faces whose mouth opening follows a speech envelope, which blink once a second
    and sway their heads slowly, with matching audio-like
    features: {"audio": (N, T, audio_dim) band energies driven by the envelope, each speaker
    with their own band gains, plus noise; "envelope": (N, T); "landmarks": (N, T, 9, 2);
    "motion": (N, T, 9, 2) the landmarks less the first frame's; with render, "frames":
    (N, T, 3, size, size) (or frame_size = (H, W)) and "parsing"; with waveform, "waveform":
    (N, T * 640) speech-like audio at 16 kHz whose loudness follows the envelope (25 fps);
    features names the model inputs computed from that waveform (it implies waveform),
    aligned to the frames by pyface.audio: "mfcc" (N, T, 28, 12), ATVGnet's windows, and
    "windows" (N, T, 3200), the temporal GAN's raw 0.2 s windows}."""
    n = batch_size
    envelope = speech_envelope(n, frames, generator)
    gains = 0.5 + torch.rand(n, 1, audio_dim, generator=generator)
    band_energies = gains * envelope.unsqueeze(-1) + 0.05 * torch.randn(n, frames, audio_dim, generator=generator)
    identity = random_parameters(n, generator)
    per_frame = {name: getattr(identity, name).repeat_interleave(frames, dim=0)
                 for name in ("center_x", "center_y", "scale", "roll", "yaw", "smile", "eye_open", "brow_tilt",
                              "skin", "hair", "background")}
    sway = 0.05 * torch.sin(torch.linspace(0, 3, frames)).repeat(n)  # a slow head movement
    per_frame["roll"] = per_frame["roll"] + sway
    blink = (torch.rand(n, 1, generator=generator) * 25 + torch.arange(frames)) % 25 < 2  # a blink a second
    per_frame["eye_open"] = per_frame["eye_open"] * (~blink).float().flatten().clamp_min(0.1)
    params = replace(identity, **per_frame, mouth_open=envelope.flatten())
    landmarks = face_landmarks(params).view(n, frames, -1, 2)
    out = {"audio": band_energies, "envelope": envelope, "landmarks": landmarks, "motion": landmarks - landmarks[:, :1]}
    if render:
        h, w = frame_size or (size, size)
        drawn = draw_faces(params, (h, w))
        out["frames"] = drawn["image"].view(n, frames, 3, h, w)
        out["parsing"] = drawn["parsing"].view(n, frames, h, w)
    if waveform or features:
        out["waveform"] = speech_waveform(envelope, generator)
    per_clip = {"mfcc": audio.mfcc_windows, "windows": audio.waveform_windows}
    for name in features:
        if name not in per_clip:
            raise ValueError(f"talking_sequence_batch: unknown feature {name!r}; expected some of {tuple(per_clip)}")
        out[name] = torch.stack([per_clip[name](clip, 16000, fps=25)[:frames] for clip in out["waveform"]])
    return {name: value.to(device) for name, value in out.items()}
