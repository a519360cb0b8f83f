"""The audio front-end of the speech-driven models: load a clip (wav / flac through
soundfile; the audio track of a video or compressed file through PyAV), resample it, and
compute the features the models eat, aligned to video frames at a given fps:

- mfcc_windows: ATVGnet's input, per video frame a window of 28 MFCC frames (10 ms hop,
  25 ms window) of 12 coefficients (13 computed, coefficient 0 dropped), centred on the frame
- log_mel_frames: one log-mel vector per video frame (hop = one frame)
- waveform_windows: the temporal GAN's raw-waveform windows, one per video frame, centred on it

Transforms are batched torch on the waveform's device (STFT, mel filterbank, DCT-II); the
filterbank is the HTK mel scale with triangular filters, the DCT orthonormal."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

SILENCE = 1e-4  # peak amplitude below which a clip counts as silent


def load(path: str | Path, sample_rate: int | None = None) -> tuple[Tensor, int]:
    """-> (mono float32 waveform (T,), sample rate): channels are averaged; resampled to
    sample_rate when given. Raises for a missing or undecodable file and for a silent clip."""
    try:
        import soundfile
    except ImportError as error:
        raise ImportError("pyface.audio.load decodes with soundfile: pip install soundfile") from error
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pyface.audio.load: no such file {path}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        waveform = torch.from_numpy(data).mean(dim=1)
    except Exception as error:  # soundfile raises its own LibsndfileError, a RuntimeError
        # not a plain audio file: a video or another container, whose audio track PyAV decodes
        waveform, rate = _load_audio_track(path, error)
    check_waveform(waveform, rate)
    if sample_rate is not None and sample_rate != rate:
        waveform, rate = resample(waveform, rate, sample_rate), sample_rate
    return waveform, rate


def _load_audio_track(path: Path, soundfile_error: Exception) -> tuple[Tensor, int]:
    """The first audio stream of any file FFmpeg reads (mp4, mkv, mp3, ...), mono float32."""
    try:
        import av
    except ImportError:
        raise ValueError(f"pyface.audio.load: cannot decode {path} as audio ({soundfile_error}); "
                         "for video files and compressed audio, pip install av") from soundfile_error
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"pyface.audio.load: {path} has no audio track")
            stream = container.streams.audio[0]
            # one planar float layout whatever the source's, so that the chunks concatenate
            resampler = av.AudioResampler(format="fltp", layout="mono", rate=stream.rate)
            chunks = [torch.from_numpy(out.to_ndarray()[0].copy()) for frame in container.decode(stream)
                      for out in resampler.resample(frame)]
            chunks += [torch.from_numpy(out.to_ndarray()[0].copy()) for out in resampler.resample(None)]
            rate = stream.rate
    except av.FFmpegError as error:
        raise ValueError(f"pyface.audio.load: cannot decode {path} as audio or video ({error})") from error
    if not chunks:
        raise ValueError(f"pyface.audio.load: {path} has an empty audio track")
    return torch.cat(chunks).float(), rate


def check_waveform(waveform: Tensor, sample_rate: int, min_seconds: float = 0.0) -> None:
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample rate must be a positive int, got {sample_rate!r}")
    if waveform.dim() != 1 or not waveform.is_floating_point():
        raise ValueError(f"waveform must be a 1-D float tensor, got {tuple(waveform.shape)} {waveform.dtype}")
    if waveform.numel() == 0 or waveform.numel() < min_seconds * sample_rate:
        raise ValueError(f"clip too short: {waveform.numel() / sample_rate:.3f} s, need at least {min_seconds:.3f} s")
    if waveform.abs().max() < SILENCE:
        raise ValueError(f"clip is silent (peak amplitude {waveform.abs().max().item():.2e} < {SILENCE})")


def resample(waveform: Tensor, orig_rate: int, new_rate: int, zero_crossings: int = 16, rolloff: float = 0.95) -> Tensor:
    """Band-limited resampling of (..., T) waveforms by a Hann-windowed sinc, evaluated as a
    polyphase filter bank in one strided convolution (any rational ratio)."""
    for name, rate in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"resample: {name} must be a positive int, got {rate!r}")
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g  # output phase i reads input around (i / up) * down
    cutoff = min(up, down) * rolloff  # in units of the finer grid, below both Nyquists
    width = math.ceil(zero_crossings * down / cutoff)
    taps = torch.arange(-width, width + down, dtype=torch.float64)
    phase = -torch.arange(up, dtype=torch.float64).view(up, 1) / up * down  # each output phase's offset
    t = (taps.view(1, -1) + phase) * cutoff / down  # in units of the cut-off's period
    window = torch.cos(torch.clamp(t / zero_crossings, -1, 1) * math.pi / 2) ** 2
    kernels = torch.special.sinc(t) * window * cutoff / down
    shape = waveform.shape
    flat = waveform.reshape(-1, 1, shape[-1])
    padded = F.pad(flat, (width, width + down))
    out = F.conv1d(padded, kernels.to(waveform).unsqueeze(1), stride=down)  # (B, up, frames)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    length = math.ceil(shape[-1] * up / down)
    return out[:, :length].reshape(*shape[:-1], length)


def _hz_to_mel(hz):
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, sample_rate: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None,
                   device=None) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, centres equally spaced on the HTK mel scale."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"mel_filterbank: need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = _mel_to_hz(torch.linspace(_hz_to_mel(torch.tensor(f_min)), _hz_to_mel(torch.tensor(f_max)), n_mels + 2,
                                      dtype=torch.float64))
    low, centre, high = edges[:-2].view(-1, 1), edges[1:-1].view(-1, 1), edges[2:].view(-1, 1)
    rising = (bins - low) / (centre - low)
    falling = (high - bins) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float().to(device)


def log_mel_spectrogram(waveform: Tensor, sample_rate: int, n_mels: int = 40, win_seconds: float = 0.025,
                        hop_seconds: float = 0.010, n_fft: int | None = None) -> Tensor:
    """(T,) -> (frames, n_mels): log of the mel-filtered power spectrum of Hann-windowed
    frames, frame i centred at i * hop (the clip padded by reflection)."""
    win = round(win_seconds * sample_rate)
    hop = round(hop_seconds * sample_rate)
    n_fft = n_fft or 2 ** math.ceil(math.log2(win))
    spectrum = torch.stft(waveform, n_fft, hop_length=hop, win_length=win,
                          window=torch.hann_window(win, device=waveform.device), center=True,
                          pad_mode="reflect", return_complex=True)
    power = spectrum.abs() ** 2  # (n_fft // 2 + 1, frames)
    mel = mel_filterbank(n_fft, sample_rate, n_mels, device=waveform.device) @ power
    return torch.log(mel + 1e-10).T


def mfcc(waveform: Tensor, sample_rate: int, n_mfcc: int = 13, n_mels: int = 40, **spectrogram) -> Tensor:
    """(T,) -> (frames, n_mfcc): the orthonormal DCT-II of the log-mel spectrogram."""
    log_mel = log_mel_spectrogram(waveform, sample_rate, n_mels=n_mels, **spectrogram)
    k = torch.arange(n_mfcc, dtype=torch.float64).view(-1, 1)
    m = torch.arange(n_mels, dtype=torch.float64).view(1, -1)
    dct = torch.cos(math.pi / n_mels * (m + 0.5) * k) * math.sqrt(2.0 / n_mels)
    dct[0] /= math.sqrt(2.0)
    return log_mel @ dct.T.to(log_mel)


def video_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """How many whole video frames at `fps` the clip covers."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return int(num_samples * fps // sample_rate)


def _frame_windows(features: Tensor, rate: float, fps: float, frames: int, window: int) -> Tensor:
    """(F, D) features at `rate` per second -> (frames, window, D): for video frame j, the
    `window` feature frames centred on its time j / fps (edges repeat the first / last)."""
    centres = torch.round(torch.arange(frames, dtype=torch.float64) / fps * rate).long()
    offsets = torch.arange(window) - window // 2
    index = (centres.view(-1, 1) + offsets.view(1, -1)).clamp(0, features.shape[0] - 1).to(features.device)
    return features[index]


def mfcc_windows(waveform: Tensor, sample_rate: int, fps: float = 25.0, window: int = 28, n_mfcc: int = 13,
                 drop_first: bool = True) -> Tensor:
    """ATVGnet's audio input: (T,) -> (frames, window, n_mfcc - 1) (or n_mfcc), 100 MFCC
    frames a second, window of them per video frame centred on it."""
    check_waveform(waveform, sample_rate, min_seconds=1.0 / fps)
    coefficients = mfcc(waveform, sample_rate, n_mfcc=n_mfcc)
    if drop_first:
        coefficients = coefficients[:, 1:]
    return _frame_windows(coefficients, 100.0, fps, video_frames(waveform.numel(), sample_rate, fps), window)


def log_mel_frames(waveform: Tensor, sample_rate: int, fps: float = 25.0, n_mels: int = 80) -> Tensor:
    """(T,) -> (frames, n_mels): the log-mel spectrum of a window of one video frame's
    length centred on each frame."""
    check_waveform(waveform, sample_rate, min_seconds=1.0 / fps)
    frames = video_frames(waveform.numel(), sample_rate, fps)
    spectrum = log_mel_spectrogram(waveform, sample_rate, n_mels=n_mels, win_seconds=1.0 / fps,
                                   hop_seconds=1.0 / fps)
    return spectrum[:frames]


def waveform_windows(waveform: Tensor, sample_rate: int, fps: float = 25.0, window_seconds: float = 0.2) -> Tensor:
    """(T,) -> (frames, window samples): the raw waveform around each video frame's time
    (zero-padded at the clip's ends), as the temporal GAN's audio encoder reads it."""
    check_waveform(waveform, sample_rate, min_seconds=1.0 / fps)
    frames = video_frames(waveform.numel(), sample_rate, fps)
    length = round(window_seconds * sample_rate)
    padded = F.pad(waveform, (length, length))
    starts = torch.round(torch.arange(frames, dtype=torch.float64) / fps * sample_rate).long() + length - length // 2
    index = starts.view(-1, 1) + torch.arange(length).view(1, -1)
    return padded[index.to(waveform.device)]
