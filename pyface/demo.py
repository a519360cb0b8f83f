"""`pyface demo speech-gan`: animate a still face from a real recording and write the
frames as an image grid (PNG).

    espeak-ng -w hello.wav "hello from pyface"
    pyface train speech-gan --synthetic --steps 200 --checkpoint runs/speech-gan.pt
    pyface demo speech-gan --wav hello.wav --checkpoint runs/speech-gan.pt --out hello.png
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pyface import audio
from pyface._usage import UsageError
from pyface.data import draw_faces, random_parameters
from pyface.train import _speech_gan, load_checkpoint

FPS, SAMPLE_RATE = 25, 16000
# Below this many training steps the demo says the checkpoint is barely trained: after 150
# steps on the synthetic data the frames are a blurred face with little mouth motion.
BARELY_TRAINED_STEPS = 1000


def _still_frame(image: Optional[str], size: tuple[int, int]) -> torch.Tensor:
    if image is None:  # a drawn face, mouth closed
        params = random_parameters(1, torch.Generator().manual_seed(0), mouth_open=torch.zeros(1))
        return draw_faces(params, size)["image"]
    from PIL import Image

    try:
        picture = Image.open(image).convert("RGB").resize((size[1], size[0]))
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {image} as an image ({error})") from error
    return torch.from_numpy(np.asarray(picture)).permute(2, 0, 1).unsqueeze(0).float() / 255


def warn(message: str) -> None:
    print(f"pyface demo: note: {message}", file=sys.stderr)


def speech_demo(wav: str, out: str, checkpoint: Optional[str] = None, image: Optional[str] = None,
                max_frames: int = 50, columns: int = 10) -> Path:
    """Generates frames for the recording (at most max_frames, 25 fps) and writes them as a
    grid of `columns` frames a row. Without a checkpoint the generator is untrained."""
    from PIL import Image

    if max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {max_frames}")
    state = None if checkpoint is None else load_checkpoint(checkpoint, "speech-gan")
    try:
        waveform, rate = audio.load(wav, sample_rate=SAMPLE_RATE)
        windows = audio.waveform_windows(waveform, rate, fps=FPS)[:max_frames]
    except (FileNotFoundError, ValueError) as error:  # missing, undecodable, silent or too short
        raise UsageError(str(error)) from error
    generator = _speech_gan(None, torch.device("cpu"), 2e-4).modules["generator"]
    if state is None:
        warn("no --checkpoint: the generator is untrained, so the frames are noise, not a face")
    else:
        generator.load_state_dict(state["modules"]["generator"])
        if state["step"] < BARELY_TRAINED_STEPS:
            warn(f"{checkpoint} is barely trained ({state['step']} steps, fewer than {BARELY_TRAINED_STEPS}): "
                 f"expect a blurred face with little mouth motion")
    generator.eval()
    still = _still_frame(image, generator.frame_size)
    with torch.no_grad():
        frames = generator(still, windows.unsqueeze(0))[0]  # (T, 3, H, W)
    t, _, h, w = frames.shape
    rows = -(-t // columns)
    grid = torch.ones(3, rows * h, min(t, columns) * w)
    for i in range(t):
        r, c = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = frames[i]
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid.permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    return path
