"""pyface.audio: decoding, resampling, features at known values, frame alignment, bad input."""
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from pyface import audio

soundfile = pytest.importorskip("soundfile")
SR = 16000


def tone(hz, seconds=1.0, sr=SR):
    t = torch.arange(int(seconds * sr), dtype=torch.float64) / sr
    return torch.sin(2 * math.pi * hz * t).float()


@pytest.mark.parametrize("hz", [300, 1000, 3000])
def test_pure_tone_peaks_in_its_mel_band(hz):
    spectrum = audio.log_mel_spectrogram(tone(hz), SR, n_mels=40).mean(0)
    bank = audio.mel_filterbank(512, SR, 40)
    # the band whose filter weighs this frequency the most
    expected = bank[:, round(hz / (SR / 2) * 256)].argmax()
    assert spectrum.argmax() == expected


def test_mfcc_of_a_tone_is_constant_over_time_and_differs_between_tones():
    low, high = audio.mfcc(tone(500), SR), audio.mfcc(tone(2500), SR)
    assert low.shape[1] == 13
    steady = low[5:-5]
    assert (steady - steady.mean(0)).abs().max() < 1e-2 * steady.abs().max()
    assert (low[5:-5].mean(0) - high[5:-5].mean(0)).abs().max() > 1.0


def test_resample_keeps_a_tone_and_round_trips():
    up = audio.resample(tone(1000), SR, 22050)
    assert up.shape == (22050,) and torch.fft.rfft(up).abs().argmax() == 1000  # 1 s: bin k is k Hz
    back = audio.resample(up, 22050, SR)
    torch.testing.assert_close(back[500:-500], tone(1000)[500:-500], atol=1e-3, rtol=0)


@pytest.mark.parametrize("fps", [25, 30])
def test_features_align_to_video_frames(fps):
    clip = tone(440, seconds=2.0)
    assert audio.mfcc_windows(clip, SR, fps=fps).shape == (2 * fps, 28, 12)
    assert audio.log_mel_frames(clip, SR, fps=fps).shape == (2 * fps, 80)
    windows = audio.waveform_windows(clip, SR, fps=fps, window_seconds=0.2)
    assert windows.shape == (2 * fps, 3200)
    # window j is centred on frame j's time: its middle sample is the clip's sample at j / fps
    for j in (1, fps, 2 * fps - 2):
        assert torch.equal(windows[j, 1600], clip[round(j / fps * SR)])


def test_a_click_lands_in_its_frame():
    clip = 0.01 * torch.randn(2 * SR, generator=torch.Generator().manual_seed(0))
    clip[int(1.2 * SR):int(1.2 * SR) + 80] += 1.0  # a loud click at 1.2 s
    loudest = audio.log_mel_frames(clip, SR, fps=25).mean(1).argmax()
    assert loudest == 30  # frame 30 is centred on 1.2 s


def test_load_wav_and_flac(tmp_path):
    data = np.stack([tone(440).numpy(), 0.5 * tone(440).numpy()], 1)  # stereo at 16 kHz
    for name in ("clip.wav", "clip.flac"):
        soundfile.write(tmp_path / name, data, SR)
        waveform, rate = audio.load(tmp_path / name)
        assert rate == SR and waveform.shape == (SR,)
        torch.testing.assert_close(waveform, 0.75 * tone(440), atol=1e-3, rtol=0)
    waveform, rate = audio.load(tmp_path / "clip.wav", sample_rate=8000)
    assert rate == 8000 and waveform.shape == (8000,)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_real_speech_from_espeak(tmp_path):
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "pyface makes faces talk"], check=True, timeout=60)
    waveform, rate = audio.load(path, sample_rate=SR)
    frames = audio.mfcc_windows(waveform, rate, fps=25)
    assert frames.shape[1:] == (28, 12) and frames.shape[0] == audio.video_frames(waveform.numel(), rate, 25)
    energy = audio.log_mel_frames(waveform, rate).mean(1)
    assert energy.max() - energy.min() > 5  # speech and pauses differ by far more than noise


def test_bad_audio(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        audio.load(tmp_path / "missing.wav")
    (tmp_path / "noise.wav").write_bytes(b"this is not a wav file")
    with pytest.raises(ValueError, match="cannot decode"):
        audio.load(tmp_path / "noise.wav")
    soundfile.write(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="silent"):
        audio.load(tmp_path / "silent.wav")
    with pytest.raises(ValueError, match="too short"):
        audio.mfcc_windows(tone(440, seconds=0.01), SR, fps=25)
    with pytest.raises(ValueError, match="sample rate must be a positive int"):
        audio.mfcc_windows(tone(440), -16000)
    with pytest.raises(ValueError, match="new_rate must be a positive int"):
        audio.resample(tone(440), SR, 0)
