"""What `pyface eval` measures: image similarity (PSNR, SSIM), landmark error normalised by
the inter-ocular distance, and a lip-sync score read from the frames and the audio alone.

The lip-sync score: for every frame, how open the mouth is (`mouth_opening`: the share of
mouth-interior-dark pixels in the lower middle of the face), and for every frame's span of
audio, how loud it is (`loudness`: the RMS of the samples the frame is on screen for); the
score is their Pearson correlation over the clip, averaged over clips. Speech opens the
mouth when it is loud and closes it in pauses, so frames in sync with their audio correlate
with its loudness; a still face scores 0 (a constant correlates with nothing) and the same
frames shifted in time score less, because the openings no longer fall on the loud spans.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# The part of the frame, in [-1, 1] image coordinates, where the drawn faces (and a centred
# portrait) have their mouth: below the nose, inside the cheeks.
MOUTH_REGION_X, MOUTH_REGION_Y = (-0.3, 0.3), (0.15, 0.75)
# Luminances at and below DARK count as mouth interior, at and above DARK + SOFTNESS as not;
# linear between, so that a blurred opening still counts in part.
DARK, SOFTNESS = 0.2, 0.15
# Red minus the mean of green and blue at and above LIP_REDNESS + SOFTNESS counts as lip
# (the drawn lips have 0.5, skin tones less than 0.3).
LIP_REDNESS = 0.3


def psnr(images: Tensor, targets: Tensor) -> Tensor:
    """Per image (the leading dims of (..., C, H, W)) PSNR in dB, for values in [0, 1]; inf
    for an exact copy."""
    return psnr_of_error(mean_squared_error(images, targets))


def psnr_of_error(mse: Tensor) -> Tensor:
    """PSNR in dB of a mean squared error, for values in [0, 1]."""
    return 10 * torch.log10(1.0 / mse)


def mean_squared_error(images: Tensor, targets: Tensor) -> Tensor:
    return (images.float() - targets.float()).pow(2).flatten(-3).mean(-1)


def _gaussian_window(size: int, sigma: float, device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = g / g.sum()
    return (g.view(-1, 1) * g.view(1, -1)).view(1, 1, size, size)


def ssim(images: Tensor, targets: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per image SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data
    range 1), averaged over channels and the valid window positions."""
    shape = images.shape[:-3]
    c, h, w = images.shape[-3:]
    window = min(window, h, w)
    x = images.float().reshape(-1, 1, h, w)
    y = targets.float().reshape(-1, 1, h, w)
    kernel = _gaussian_window(window, sigma, x.device)
    blur = lambda t: F.conv2d(t, kernel)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.view(-1, c, *value.shape[-2:]).mean(dim=(1, 2, 3)).view(shape)


def landmark_error(landmarks: Tensor, targets: Tensor, left_eye: int = 0, right_eye: int = 1) -> Tensor:
    """Mean point-to-point distance of (..., P, 2) landmarks, each set's divided by its
    target's inter-ocular distance; per leading index."""
    inter_ocular = (targets[..., left_eye, :] - targets[..., right_eye, :]).norm(dim=-1)
    return (landmarks - targets).norm(dim=-1).mean(-1) / inter_ocular


def mouth_region(frames: Tensor) -> Tensor:
    """(..., C, H, W) -> the crop of MOUTH_REGION_X, MOUTH_REGION_Y."""
    h, w = frames.shape[-2:]
    ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
    rows = ((ys >= MOUTH_REGION_Y[0]) & (ys <= MOUTH_REGION_Y[1])).nonzero().flatten()
    cols = ((xs >= MOUTH_REGION_X[0]) & (xs <= MOUTH_REGION_X[1])).nonzero().flatten()
    return frames[..., rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def mouth_opening(frames: Tensor) -> Tensor:
    """(..., 3, H, W) frames in [0, 1] -> (...) how much of the mouth region is dark (0-1)."""
    region = mouth_region(frames).float()
    luminance = 0.299 * region[..., 0, :, :] + 0.587 * region[..., 1, :, :] + 0.114 * region[..., 2, :, :]
    return ((DARK + SOFTNESS - luminance) / SOFTNESS).clamp(0, 1).flatten(-2).mean(-1)


def lip_curve(frames: Tensor) -> Tensor:
    """(..., 3, H, W) frames in [0, 1] -> (...) how far the lips' middle sits below their
    outer thirds, relative to the mouth's width: > 0 for a smile (corners up), < 0 for corners
    down, near 0 for straight lips whatever the opening (both lips bend alike; the pixels'
    rounding moves one frame's reading by a few hundredths, a clip's mean far less). Read in the
    mouth region from the lip-red pixels (red, neither dark like the mouth's inside nor pale
    like skin): per column their mean row; the mouth's centre and half-width from their
    columns' mean and spread (a band of half-width a has spread a / sqrt(3)). 0 where no lip shows."""
    region = mouth_region(frames).float()
    r, g, b = region[..., 0, :, :], region[..., 1, :, :], region[..., 2, :, :]
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    redness = r - (g + b) / 2
    lips = ((redness - LIP_REDNESS) / SOFTNESS).clamp(0, 1) * ((luminance - DARK) / SOFTNESS).clamp(0, 1)
    h, w = lips.shape[-2:]
    rows = torch.arange(h, dtype=lips.dtype, device=lips.device).view(h, 1)
    cols = torch.arange(w, dtype=lips.dtype, device=lips.device)
    per_column = lips.sum(-2)  # (..., W)
    total = per_column.sum(-1, keepdim=True).clamp_min(1e-6)
    centre = (cols * per_column).sum(-1, keepdim=True) / total
    half_width = (3 * ((cols - centre) ** 2 * per_column).sum(-1, keepdim=True) / total).sqrt().clamp_min(1e-6)
    row = (rows * lips).sum(-2) / per_column.clamp_min(1e-6)  # each column's mean lip row
    offset = (cols - centre).abs() / half_width
    middle, outer = per_column * (offset <= 1 / 3), per_column * (offset >= 2 / 3)
    mean_row = lambda weights: (row * weights).sum(-1) / weights.sum(-1).clamp_min(1e-6)  # noqa: E731
    curve = (mean_row(middle) - mean_row(outer)) / (2 * half_width.squeeze(-1))
    return torch.where((middle.sum(-1) > 0) & (outer.sum(-1) > 0), curve, torch.zeros_like(curve))


def loudness(waveform: Tensor, frames: int, sample_rate: int = 16000, fps: float = 25.0) -> Tensor:
    """(..., samples) -> (..., frames): the RMS of the samples of each frame's span
    [j / fps, (j + 1) / fps)."""
    per_frame = sample_rate / fps
    if not float(per_frame).is_integer():
        raise ValueError(f"loudness: sample_rate / fps must be whole, got {sample_rate} / {fps}")
    per_frame = int(per_frame)
    needed = frames * per_frame
    if waveform.shape[-1] < needed:
        waveform = F.pad(waveform, (0, needed - waveform.shape[-1]))
    spans = waveform[..., :needed].reshape(*waveform.shape[:-1], frames, per_frame).float()
    return spans.pow(2).mean(-1).sqrt()


def correlation(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Pearson correlation along the last dim; 0 where either side is constant."""
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    norm_a, norm_b = a.norm(dim=-1), b.norm(dim=-1)
    constant = (norm_a <= eps * math.sqrt(a.shape[-1])) | (norm_b <= eps * math.sqrt(b.shape[-1]))
    return torch.where(constant, torch.zeros_like(norm_a), (a * b).sum(-1) / (norm_a * norm_b).clamp_min(1e-30))


def lip_sync(frames: Tensor, waveform: Tensor, sample_rate: int = 16000, fps: float = 25.0) -> Tensor:
    """(N, T, 3, H, W) frames and (N, samples) audio starting with frame 0 -> (N,) the
    correlation of each clip's mouth opening with its loudness (see the module's text)."""
    if frames.dim() != 5 or waveform.dim() != 2 or frames.shape[0] != waveform.shape[0]:
        raise ValueError(f"lip_sync: frames must be (N, T, 3, H, W) and waveform (N, samples) with one N, "
                         f"got {tuple(frames.shape)} and {tuple(waveform.shape)}")
    return correlation(mouth_opening(frames), loudness(waveform, frames.shape[1], sample_rate, fps))


def scored(value: float, floor: float, ceiling: float | None, *, value_error: float | None = None,
           floor_error: float | None = None, floor_is: str = "", ceiling_is: str = "") -> dict:
    """One metric as `pyface eval` reports it: the value, its floor and ceiling, and the
    fraction of the floor-to-ceiling gap the value closed. A ceiling of None is an unbounded
    one (PSNR of the ground truth itself): there the gap is measured on the error behind the
    metric (value_error against floor_error, the ceiling's error being 0)."""
    if ceiling is None:
        gap = 1.0 - value_error / floor_error
    else:
        gap = (value - floor) / (ceiling - floor)
    return {"value": float(value), "floor": float(floor), "ceiling": None if ceiling is None else float(ceiling),
            "gap_closed": float(gap), "floor_is": floor_is, "ceiling_is": ceiling_is}
